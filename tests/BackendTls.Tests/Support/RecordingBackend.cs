using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace BackendTls.Tests.Support;

/// <summary>A request exactly as it reached the backend: the head's bytes as text, and the body's bytes as framed.</summary>
internal sealed record RecordedRequest(string Head, byte[] RawBody, int Connection, int IndexOnConnection)
{
    public string RequestLine => Head[..Head.IndexOf("\r\n", StringComparison.Ordinal)];

    public IEnumerable<string> FieldNames => Head.Split("\r\n").Skip(1).Where(l => l.Length > 0).Select(l => l[..l.IndexOf(':', StringComparison.Ordinal)]);

    public string? Field(string name) => Head.Split("\r\n").Skip(1)
        .Where(l => l.StartsWith(name + ":", StringComparison.OrdinalIgnoreCase))
        .Select(l => l[(name.Length + 1)..].Trim()).FirstOrDefault();
}

/// <summary>
/// A TLS backend written on SslStream, so tests see the bytes the sidecar puts on the wire (a framework
/// server would parse and normalise them first). It records every request and answers with what the
/// test's responder returns: bytes to send, or null to close the connection without an answer.
/// </summary>
internal sealed class RecordingBackend : IAsyncDisposable
{
    public static readonly byte[] Ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"u8.ToArray();

    /// <summary>A responder's answer meaning: keep the connection open and never answer.</summary>
    public static readonly byte[] Never = [];

    private readonly TcpListener _listener;
    private readonly X509Certificate2 _certificate;
    private readonly Func<RecordedRequest, byte[]?> _respond;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _tasks = [];
    private int _connections;

    private RecordingBackend(X509Certificate2 certificate, Func<RecordedRequest, byte[]?> respond)
    {
        _certificate = certificate;
        _respond = respond;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _tasks.Add(AcceptAsync());
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public ConcurrentQueue<RecordedRequest> Requests { get; } = new();

    public int Connections => Volatile.Read(ref _connections);

    public static RecordingBackend Start(X509Certificate2 certificate, Func<RecordedRequest, byte[]?>? respond = null) =>
        new(certificate, respond ?? (_ => Ok));

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            var number = Interlocked.Increment(ref _connections);
            lock (_tasks)
            {
                _tasks.Add(ServeAsync(client, number));
            }
        }
    }

    private async Task ServeAsync(TcpClient client, int connection)
    {
        using (client)
        {
            try
            {
                await using var ssl = new SslStream(client.GetStream());
                await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificate = _certificate,
                    ApplicationProtocols = [SslApplicationProtocol.Http11],
                }, _stop.Token);
                var buffer = new List<byte>();
                for (var index = 0; ; index++)
                {
                    var head = await ReadHeadAsync(ssl, buffer);
                    if (head is null)
                    {
                        return;
                    }

                    var body = await ReadBodyAsync(ssl, buffer, head);
                    var request = new RecordedRequest(head, body, connection, index);
                    Requests.Enqueue(request);
                    var response = _respond(request);
                    if (response is null)
                    {
                        return;
                    }

                    if (ReferenceEquals(response, Never))
                    {
                        await Task.Delay(Timeout.Infinite, _stop.Token);
                    }

                    await ssl.WriteAsync(response, _stop.Token);
                    if (System.Text.Encoding.Latin1.GetString(response).Split("\r\n\r\n")[0].Contains("\r\nConnection: close", StringComparison.OrdinalIgnoreCase))
                    {
                        return;
                    }
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or System.Security.Authentication.AuthenticationException)
            {
                // The sidecar closed the connection: that is part of what tests look at.
            }
        }
    }

    private async Task<string?> ReadHeadAsync(SslStream ssl, List<byte> buffer)
    {
        while (true)
        {
            var end = IndexOf(buffer, "\r\n\r\n"u8);
            if (end >= 0)
            {
                var head = Encoding.Latin1.GetString(buffer.GetRange(0, end + 4).ToArray());
                buffer.RemoveRange(0, end + 4);
                return head;
            }

            if (!await FillAsync(ssl, buffer))
            {
                return null;
            }
        }
    }

    private async Task<byte[]> ReadBodyAsync(SslStream ssl, List<byte> buffer, string head)
    {
        var request = new RecordedRequest(head, [], 0, 0);
        if (request.Field("Content-Length") is { } length)
        {
            var count = int.Parse(length, System.Globalization.CultureInfo.InvariantCulture);
            while (buffer.Count < count && await FillAsync(ssl, buffer))
            {
            }

            return Take(buffer, Math.Min(count, buffer.Count));
        }

        if (string.Equals(request.Field("Transfer-Encoding"), "chunked", StringComparison.OrdinalIgnoreCase))
        {
            // Raw chunked framing up to and including the empty line after the last chunk's trailers.
            var raw = new List<byte>();
            while (true)
            {
                var lineEnd = IndexOf(buffer, "\r\n"u8);
                while (lineEnd < 0)
                {
                    if (!await FillAsync(ssl, buffer))
                    {
                        return [.. raw];
                    }

                    lineEnd = IndexOf(buffer, "\r\n"u8);
                }

                var line = Encoding.ASCII.GetString(buffer.GetRange(0, lineEnd).ToArray());
                raw.AddRange(Take(buffer, lineEnd + 2));
                var size = Convert.ToInt32(line.Split(';')[0], 16);
                if (size == 0)
                {
                    // trailers until an empty line
                    while (true)
                    {
                        var trailerEnd = IndexOf(buffer, "\r\n"u8);
                        while (trailerEnd < 0 && await FillAsync(ssl, buffer))
                        {
                            trailerEnd = IndexOf(buffer, "\r\n"u8);
                        }

                        raw.AddRange(Take(buffer, trailerEnd + 2));
                        if (trailerEnd == 0)
                        {
                            return [.. raw];
                        }
                    }
                }

                while (buffer.Count < size + 2 && await FillAsync(ssl, buffer))
                {
                }

                raw.AddRange(Take(buffer, size + 2));
            }
        }

        return [];
    }

    private async Task<bool> FillAsync(SslStream ssl, List<byte> buffer)
    {
        var chunk = new byte[16384];
        var read = await ssl.ReadAsync(chunk, _stop.Token);
        buffer.AddRange(chunk.AsSpan(0, read).ToArray());
        return read > 0;
    }

    private static byte[] Take(List<byte> buffer, int count)
    {
        var taken = buffer.GetRange(0, count).ToArray();
        buffer.RemoveRange(0, count);
        return taken;
    }

    private static int IndexOf(List<byte> buffer, ReadOnlySpan<byte> pattern)
    {
        for (var i = 0; i + pattern.Length <= buffer.Count; i++)
        {
            var match = true;
            for (var j = 0; j < pattern.Length && match; j++)
            {
                match = buffer[i + j] == pattern[j];
            }

            if (match)
            {
                return i;
            }
        }

        return -1;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        Task[] tasks;
        lock (_tasks)
        {
            tasks = [.. _tasks];
        }

        await Task.WhenAll(tasks);
        _stop.Dispose();
    }
}
