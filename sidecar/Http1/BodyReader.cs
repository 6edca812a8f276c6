namespace BackendTls.Sidecar.Http1;

/// <summary>A message body that does not follow its framing (RFC 9112 §6, §7.1), or that ended too early.</summary>
internal sealed class HttpBodyException(string detail) : Exception(detail)
{
    public string Detail { get; } = detail;
}

/// <summary>
/// Reads one message body from an <see cref="InputBuffer"/> by its framing and hands out the payload as
/// slices of the buffer, so bodies stream through without being held. Chunked framing is decoded and
/// checked strictly (the sender re-frames it); trailer fields are kept as raw lines for the other side.
/// A reader reads exactly its body: bytes after it (a pipelined request) stay in the buffer.
/// </summary>
internal sealed class BodyReader : IDisposable
{
    private const int MaxChunkLine = 4096;
    private const int MaxTrailerBytes = 16 * 1024;

    private InputBuffer? _input;
    private BodyFraming _framing;
    private long _remaining;
    private int _pending;
    private State _state;
    private string _who = "the message";
    private readonly OutputBuffer _trailers = new();

    private enum State
    {
        ChunkSize,
        ChunkData,
        ChunkDataEnd,
        Trailers,
        Done,
    }

    public bool IsComplete => _state == State.Done;

    public BodyFraming Framing => _framing;

    /// <summary>Trailer field lines (each ending in CRLF) of a chunked body, once it is complete.</summary>
    public ReadOnlyMemory<byte> Trailers => _trailers.Memory;

    /// <summary>Bytes of payload handed out so far.</summary>
    public long Transferred { get; private set; }

    /// <param name="input">Where the body's bytes are.</param>
    /// <param name="framing">How the body is delimited.</param>
    /// <param name="contentLength">The length for <see cref="BodyFraming.ContentLength"/>.</param>
    /// <param name="who">"the request" or "the backend's response", for messages.</param>
    public void Start(InputBuffer input, BodyFraming framing, long contentLength, string who)
    {
        _input = input;
        _framing = framing;
        _remaining = framing == BodyFraming.ContentLength ? contentLength : 0;
        _pending = 0;
        _who = who;
        _trailers.Clear();
        Transferred = 0;
        _state = framing switch
        {
            BodyFraming.None => State.Done,
            BodyFraming.ContentLength when contentLength == 0 => State.Done,
            BodyFraming.Chunked => State.ChunkSize,
            _ => State.ChunkData,
        };
    }

    /// <summary>
    /// The next slice of payload, valid until the next call; empty once the body is complete.
    /// </summary>
    /// <exception cref="HttpBodyException">The framing is broken or the stream ended inside the body.</exception>
    public async ValueTask<ReadOnlyMemory<byte>> ReadAsync(CancellationToken cancellationToken)
    {
        var input = _input!;
        if (_pending > 0)
        {
            input.Consume(_pending);
            Transferred += _pending;
            if (_framing != BodyFraming.UntilClose)
            {
                _remaining -= _pending;
            }

            _pending = 0;
            if (_remaining == 0 && _framing != BodyFraming.UntilClose)
            {
                _state = _framing == BodyFraming.Chunked ? State.ChunkDataEnd : State.Done;
            }
        }

        while (true)
        {
            switch (_state)
            {
                case State.Done:
                    return ReadOnlyMemory<byte>.Empty;
                case State.ChunkData:
                    if (input.Available == 0 && !await input.FillAsync(InputBuffer.BlockSize, cancellationToken))
                    {
                        if (_framing == BodyFraming.UntilClose)
                        {
                            _state = State.Done;
                            return ReadOnlyMemory<byte>.Empty;
                        }

                        throw new HttpBodyException(_framing == BodyFraming.Chunked
                            ? $"{_who} ended inside a chunk"
                            : $"{_who} ended {_remaining} bytes before its Content-Length");
                    }

                    _pending = _framing == BodyFraming.UntilClose ? input.Available : (int)Math.Min(_remaining, input.Available);
                    return input.Memory[.._pending];
                case State.ChunkDataEnd:
                    if (!await EnsureAsync(2, cancellationToken))
                    {
                        throw new HttpBodyException($"{_who} ended inside a chunk");
                    }

                    if (input.Span[0] != '\r' || input.Span[1] != '\n')
                    {
                        throw new HttpBodyException($"{_who} has chunk data longer than its chunk size (no CRLF after the data)");
                    }

                    input.Consume(2);
                    _state = State.ChunkSize;
                    break;
                case State.ChunkSize:
                    var line = await LineAsync(cancellationToken);
                    _remaining = ParseChunkSize(input.Span[..line]);
                    input.Consume(line + 2);
                    _state = _remaining == 0 ? State.Trailers : State.ChunkData;
                    break;
                case State.Trailers:
                    var length = await LineAsync(cancellationToken);
                    if (length == 0)
                    {
                        input.Consume(2);
                        _state = State.Done;
                        break;
                    }

                    CheckTrailer(input.Span[..length]);
                    _trailers.Write(input.Span[..(length + 2)]);
                    input.Consume(length + 2);
                    break;
            }
        }
    }

    /// <summary>Reads the rest of the body and drops it (to keep a connection usable).</summary>
    public async ValueTask DiscardAsync(CancellationToken cancellationToken)
    {
        while (!(await ReadAsync(cancellationToken)).IsEmpty)
        {
        }
    }

    private async ValueTask<bool> EnsureAsync(int count, CancellationToken cancellationToken)
    {
        while (_input!.Available < count)
        {
            if (!await _input.FillAsync(InputBuffer.BlockSize, cancellationToken))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The length of the next line (without CRLF) once it is wholly buffered.</summary>
    private async ValueTask<int> LineAsync(CancellationToken cancellationToken)
    {
        var input = _input!;
        while (true)
        {
            var lf = input.Span.IndexOf((byte)'\n');
            if (lf >= 0)
            {
                if (lf == 0 || input.Span[lf - 1] != '\r')
                {
                    throw new HttpBodyException($"{_who} has a chunk line ending in a bare LF");
                }

                return lf - 1;
            }

            if (input.Available > (_state == State.Trailers ? MaxTrailerBytes : MaxChunkLine))
            {
                throw new HttpBodyException($"{_who} has a chunk-size or trailer line that is too long");
            }

            if (!await input.FillAsync(MaxTrailerBytes + InputBuffer.BlockSize, cancellationToken))
            {
                throw new HttpBodyException($"{_who} ended before its last chunk");
            }
        }
    }

    private long ParseChunkSize(ReadOnlySpan<byte> line)
    {
        var end = line.IndexOf((byte)';');
        var digits = end < 0 ? line : line[..end];
        // BWS before a chunk extension is tolerated (RFC 9112 §7.1.1); nothing else is.
        digits = digits.TrimEnd(" \t"u8);
        if (digits.IsEmpty || digits.Length > 15)
        {
            throw new HttpBodyException($"{_who} has an invalid chunk size");
        }

        long size = 0;
        foreach (var b in digits)
        {
            var value = b switch
            {
                >= (byte)'0' and <= (byte)'9' => b - '0',
                >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
                >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
                _ => -1,
            };
            if (value < 0)
            {
                throw new HttpBodyException($"{_who} has an invalid chunk size \"{System.Text.Encoding.ASCII.GetString(digits)}\"");
            }

            size = (size << 4) | (uint)value;
        }

        if (end >= 0)
        {
            foreach (var b in line[end..])
            {
                if (!HttpSyntax.IsFieldValueChar(b))
                {
                    throw new HttpBodyException($"{_who} has a control character in a chunk extension");
                }
            }
        }

        return size;
    }

    private void CheckTrailer(ReadOnlySpan<byte> line)
    {
        var colon = line.IndexOf((byte)':');
        if (line[0] is (byte)' ' or (byte)'\t' || colon <= 0 || !HttpSyntax.IsToken(line[..colon]))
        {
            throw new HttpBodyException($"{_who} has an invalid trailer field");
        }

        foreach (var b in line[(colon + 1)..])
        {
            if (!HttpSyntax.IsFieldValueChar(b))
            {
                throw new HttpBodyException($"{_who} has a control character in a trailer field");
            }
        }

        if (_trailers.Length + line.Length > MaxTrailerBytes)
        {
            throw new HttpBodyException($"{_who} has more than {MaxTrailerBytes / 1024} KiB of trailer fields");
        }
    }

    /// <summary>Returns pooled memory; the reader can be started again.</summary>
    public void Dispose() => _trailers.Dispose();
}
