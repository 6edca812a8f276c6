using System.Net;
using System.Net.Sockets;
using System.Text;

namespace BackendTls.Tests.Support;

/// <summary>A response as the gateway received it.</summary>
internal sealed record RawResponse(int Status, string Head, string Body)
{
    public string? Field(string name) => Head.Split("\r\n").Skip(1)
        .Where(l => l.StartsWith(name + ":", StringComparison.OrdinalIgnoreCase))
        .Select(l => l[(name.Length + 1)..].Trim()).FirstOrDefault();

    public IEnumerable<string> FieldNames => Head.Split("\r\n").Skip(1).Where(l => l.Length > 0).Select(l => l[..l.IndexOf(':', StringComparison.Ordinal)]);
}

/// <summary>
/// A gateway connection that writes exactly the bytes a test gives it (HttpClient would fix them first)
/// and reads responses off the wire.
/// </summary>
internal sealed class RawConnection : IAsyncDisposable
{
    private readonly TcpClient _client = new();
    private readonly List<byte> _buffer = [];
    private NetworkStream _stream = null!;

    public static async Task<RawConnection> OpenAsync(int port)
    {
        var connection = new RawConnection();
        await connection._client.ConnectAsync(IPAddress.Loopback, port);
        connection._stream = connection._client.GetStream();
        return connection;
    }

    /// <summary>Sends one request and reads its response.</summary>
    public static async Task<RawResponse> ExchangeAsync(int port, string request, bool headRequest = false)
    {
        await using var connection = await OpenAsync(port);
        await connection.SendAsync(request);
        return await connection.ReadResponseAsync(headRequest);
    }

    public Task SendAsync(string text) => SendAsync(Encoding.Latin1.GetBytes(text));

    public async Task SendAsync(byte[] bytes) => await _stream.WriteAsync(bytes);

    /// <summary>True once the sidecar has closed the connection (reads end).</summary>
    public async Task<bool> ClosedAsync(TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        var chunk = new byte[4096];
        try
        {
            while (true)
            {
                var read = await _stream.ReadAsync(chunk, timeout.Token);
                if (read == 0)
                {
                    return true;
                }

                _buffer.AddRange(chunk.AsSpan(0, read).ToArray());
            }
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException)
        {
            return true; // reset
        }
    }

    /// <summary>Reads one response (interim 1xx ones included, each a response of its own).</summary>
    public async Task<RawResponse> ReadResponseAsync(bool headRequest = false, TimeSpan? timeout = null)
    {
        using var guard = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        var headEnd = await FindAsync("\r\n\r\n"u8.ToArray(), guard.Token);
        if (headEnd < 0)
        {
            throw new IOException("the connection closed before a response head: " + Encoding.Latin1.GetString([.. _buffer]));
        }

        var head = Encoding.Latin1.GetString(_buffer.GetRange(0, headEnd + 4).ToArray());
        _buffer.RemoveRange(0, headEnd + 4);
        var status = int.Parse(head.AsSpan(9, 3), System.Globalization.CultureInfo.InvariantCulture);
        var response = new RawResponse(status, head, string.Empty);
        if (headRequest || status is < 200 or 204 or 304)
        {
            return response;
        }

        if (response.Field("Content-Length") is { } length)
        {
            var count = int.Parse(length, System.Globalization.CultureInfo.InvariantCulture);
            while (_buffer.Count < count && await FillAsync(guard.Token))
            {
            }

            return response with { Body = Take(count) };
        }

        if (string.Equals(response.Field("Transfer-Encoding"), "chunked", StringComparison.OrdinalIgnoreCase))
        {
            var body = new StringBuilder();
            while (true)
            {
                var lineEnd = await FindAsync("\r\n"u8.ToArray(), guard.Token);
                var size = Convert.ToInt32(Take(lineEnd + 2).Trim(), 16);
                if (size == 0)
                {
                    var trailersEnd = await FindAsync("\r\n"u8.ToArray(), guard.Token);
                    var trailers = new StringBuilder();
                    while (trailersEnd > 0)
                    {
                        trailers.Append(Take(trailersEnd + 2));
                        trailersEnd = await FindAsync("\r\n"u8.ToArray(), guard.Token);
                    }

                    Take(2);
                    return response with { Body = body.ToString(), Head = head + trailers };
                }

                while (_buffer.Count < size + 2 && await FillAsync(guard.Token))
                {
                }

                body.Append(Take(size));
                Take(2);
            }
        }

        while (await FillAsync(guard.Token))
        {
        }

        return response with { Body = Take(_buffer.Count) };
    }

    private async Task<int> FindAsync(byte[] pattern, CancellationToken token)
    {
        while (true)
        {
            for (var i = 0; i + pattern.Length <= _buffer.Count; i++)
            {
                if (_buffer.Skip(i).Take(pattern.Length).SequenceEqual(pattern))
                {
                    return i;
                }
            }

            if (!await FillAsync(token))
            {
                return -1;
            }
        }
    }

    private async Task<bool> FillAsync(CancellationToken token)
    {
        var chunk = new byte[16384];
        int read;
        try
        {
            read = await _stream.ReadAsync(chunk, token);
        }
        catch (IOException)
        {
            return false;
        }

        _buffer.AddRange(chunk.AsSpan(0, read).ToArray());
        return read > 0;
    }

    private string Take(int count)
    {
        var text = Encoding.Latin1.GetString(_buffer.GetRange(0, count).ToArray());
        _buffer.RemoveRange(0, count);
        return text;
    }

    public ValueTask DisposeAsync()
    {
        _client.Dispose();
        return ValueTask.CompletedTask;
    }
}
