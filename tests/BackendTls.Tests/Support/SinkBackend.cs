using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace BackendTls.Tests.Support;

/// <summary>
/// A TLS backend for bulk transfers: <c>POST</c> bodies (Content-Length) are read and dropped, and it answers
/// with the count; <c>GET /download?bytes=N</c> sends N zero bytes. Nothing is held, so the sidecar's memory
/// is the only memory a transfer test sees grow.
/// </summary>
internal sealed class SinkBackend : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly X509Certificate2 _certificate;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public SinkBackend(X509Certificate2 certificate)
    {
        _certificate = certificate;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                _ = ServeAsync(client);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                await using var ssl = new SslStream(client.GetStream());
                await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = _certificate, ApplicationProtocols = [SslApplicationProtocol.Http11] }, _stop.Token);
                var buffer = new byte[1 << 16];
                var filled = 0;
                while (true)
                {
                    int end;
                    while ((end = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8)) < 0)
                    {
                        var read = await ssl.ReadAsync(buffer.AsMemory(filled), _stop.Token);
                        if (read == 0)
                        {
                            return;
                        }

                        filled += read;
                    }

                    var head = Encoding.ASCII.GetString(buffer, 0, end);
                    var rest = filled - (end + 4);
                    Array.Copy(buffer, end + 4, buffer, 0, rest);
                    filled = rest;
                    var line = head[..head.IndexOf('\r', StringComparison.Ordinal)];
                    var length = head.Split("\r\n").Where(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                        .Select(l => long.Parse(l[15..].Trim(), System.Globalization.CultureInfo.InvariantCulture)).FirstOrDefault();
                    var left = length - filled;
                    filled = Math.Max(0, (int)-left);
                    while (left > 0)
                    {
                        var read = await ssl.ReadAsync(buffer, _stop.Token);
                        if (read == 0)
                        {
                            return;
                        }

                        left -= read;
                    }

                    if (line.StartsWith("GET /download?bytes=", StringComparison.Ordinal))
                    {
                        var size = long.Parse(line[20..line.IndexOf(' ', 4)], System.Globalization.CultureInfo.InvariantCulture);
                        await ssl.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n"), _stop.Token);
                        var zeros = new byte[1 << 16];
                        for (var sent = 0L; sent < size; sent += zeros.Length)
                        {
                            await ssl.WriteAsync(zeros.AsMemory(0, (int)Math.Min(zeros.Length, size - sent)), _stop.Token);
                        }
                    }
                    else
                    {
                        var body = $"received={length}";
                        await ssl.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\n\r\n{body}"), _stop.Token);
                    }
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or System.Security.Authentication.AuthenticationException)
            {
                // The sidecar closed the connection.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        _stop.Dispose();
    }
}
