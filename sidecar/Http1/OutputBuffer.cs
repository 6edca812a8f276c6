using System.Buffers;
using System.Buffers.Text;
using System.Text;

namespace BackendTls.Sidecar.Http1;

/// <summary>
/// Composes what goes out on a connection (a head, a chunk and its framing) in one pooled array, so it
/// leaves in one write: one send on the gateway's socket, one TLS record to the backend.
/// </summary>
internal sealed class OutputBuffer : IDisposable
{
    private byte[] _array = [];
    private int _length;

    public int Length => _length;

    public ReadOnlyMemory<byte> Memory => _array.AsMemory(0, _length);

    public void Clear() => _length = 0;

    public OutputBuffer Write(ReadOnlySpan<byte> bytes)
    {
        Reserve(bytes.Length);
        bytes.CopyTo(_array.AsSpan(_length));
        _length += bytes.Length;
        return this;
    }

    /// <summary>Writes a string of ASCII (or Latin-1 obs-text) characters as bytes.</summary>
    public OutputBuffer WriteLatin1(string text)
    {
        Reserve(text.Length);
        _length += Encoding.Latin1.GetBytes(text, _array.AsSpan(_length));
        return this;
    }

    public OutputBuffer WriteNumber(long value)
    {
        Reserve(20);
        Utf8Formatter.TryFormat(value, _array.AsSpan(_length), out var written);
        _length += written;
        return this;
    }

    public OutputBuffer WriteHex(long value)
    {
        Reserve(16);
        Utf8Formatter.TryFormat(value, _array.AsSpan(_length), out var written, new StandardFormat('x'));
        _length += written;
        return this;
    }

    /// <summary>A header line: name, ": ", value, CRLF.</summary>
    public OutputBuffer Field(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => Write(name).Write(": "u8).Write(value).Write("\r\n"u8);

    /// <summary>Writes what was composed and starts over; the array is not reused before the write completes.</summary>
    public ValueTask FlushToAsync(Stream stream, CancellationToken cancellationToken)
    {
        var memory = Memory;
        _length = 0;
        return stream.WriteAsync(memory, cancellationToken);
    }

    private void Reserve(int count)
    {
        if (_length + count <= _array.Length)
        {
            return;
        }

        var larger = ArrayPool<byte>.Shared.Rent(Math.Max(Math.Max(_array.Length * 2, _length + count), 4096));
        _array.AsSpan(0, _length).CopyTo(larger);
        if (_array.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_array);
        }

        _array = larger;
    }

    /// <summary>Returns the array to the pool (an idle connection holds none); the next write rents again.</summary>
    public void Dispose()
    {
        if (_array.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_array);
        }

        _array = [];
        _length = 0;
    }
}
