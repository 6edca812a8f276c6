using System.Buffers;

namespace BackendTls.Sidecar.Http1;

/// <summary>
/// Bytes read from a stream and not yet consumed, in one contiguous pooled array, so heads parse in place
/// and bodies are forwarded from it without another copy. An idle connection holds no array: it waits with a
/// zero-byte read and rents one when data arrives (10,000 idle keep-alive connections cost no buffers).
/// </summary>
internal sealed class InputBuffer(Stream stream) : IDisposable
{
    public const int BlockSize = 16 * 1024; // one TLS record's worth

    private byte[]? _array;
    private int _start;
    private int _end;

    public Stream Stream { get; } = stream;

    public int Available => _end - _start;

    /// <summary>The array behind <see cref="Span"/>; valid until the next <see cref="FillAsync"/>.</summary>
    public byte[] Array => _array ?? [];

    public int Start => _start;

    public ReadOnlySpan<byte> Span => _array.AsSpan(_start, _end - _start);

    public ReadOnlyMemory<byte> Memory => _array.AsMemory(_start, _end - _start);

    public void Consume(int count)
    {
        _start += count;
        if (_start == _end)
        {
            _start = _end = 0;
        }
    }

    /// <summary>Waits until the stream has data (or ends) without holding a buffer.</summary>
    public async ValueTask WaitForDataAsync(CancellationToken cancellationToken)
    {
        if (Available == 0)
        {
            Release();
#pragma warning disable CA2022 // a zero-byte read waits for readability; it reads nothing by design
            await Stream.ReadAsync(Memory<byte>.Empty, cancellationToken);
#pragma warning restore CA2022
        }
    }

    /// <summary>Reads more bytes, keeping the unconsumed ones; false at the end of the stream.</summary>
    /// <param name="maxBuffered">How large the buffer may grow to hold one unconsumed message head.</param>
    /// <param name="cancellationToken">Aborts the read.</param>
    public async ValueTask<bool> FillAsync(int maxBuffered, CancellationToken cancellationToken)
    {
        _array ??= ArrayPool<byte>.Shared.Rent(BlockSize);
        if (_end == _array.Length)
        {
            if (_start > 0)
            {
                _array.AsSpan(_start, _end - _start).CopyTo(_array);
                _end -= _start;
                _start = 0;
            }
            else
            {
                var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_array.Length * 2, Math.Min(maxBuffered, BlockSize * 8)));
                _array.AsSpan(0, _end).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_array);
                _array = larger;
            }
        }

        var read = await Stream.ReadAsync(_array.AsMemory(_end), cancellationToken);
        if (read == 0)
        {
            return false;
        }

        _end += read;
        return true;
    }

    /// <summary>Returns the array to the pool when nothing is buffered.</summary>
    public void Release()
    {
        if (_array is not null && _start == _end)
        {
            ArrayPool<byte>.Shared.Return(_array);
            _array = null;
            _start = _end = 0;
        }
    }

    public void Dispose()
    {
        if (_array is not null)
        {
            ArrayPool<byte>.Shared.Return(_array);
            _array = null;
        }

        _start = _end = 0;
    }
}
