using System.Net.WebSockets;
using System.Security.Cryptography;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Shared;
using BackendTls.Tests.Support;

namespace BackendTls.Tests.Functional;

/// <summary>
/// WebSocket through the sidecar to a real TLS WebSocket server (Kestrel): the upgrade goes over verified
/// TLS with the policy's SNI, messages flow both ways, either side may close, a refused upgrade and a
/// failed verification reach the client as HTTP answers before any 101.
/// </summary>
public sealed class WebSocketTests
{
    private const string Hostname = "abc.example.com";
    private static readonly Uri Echo = new($"ws://{Hostname}/echo");

    private static async Task<(CertificateAuthority Ca, WebSocketBackend Backend, SidecarFixture Sidecar)> StartAsync(string[]? sans = null)
    {
        var ca = CertificateAuthority.Create("CN=Test Root");
        var backend = await WebSocketBackend.StartAsync(ca.Issue("CN=backend", dnsNames: sans ?? [Hostname]));
        var sidecar = new SidecarFixture();
        await sidecar.StartForBackendAsync(backend.Port, ca.CertificatePem, Hostname);
        return (ca, backend, sidecar);
    }

    [Fact]
    public async Task Upgrade_VerifiedTlsWithPolicySni_MessagesBothWays_16MiB_ClientCloses()
    {
        var (ca, backend, sidecar) = await StartAsync();
        await using (backend)
        await using (sidecar)
        using (ca)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            using var socket = await WebSocketBackend.ConnectThroughAsync(sidecar.ListenPort, Echo, timeout.Token);
            Assert.Equal(Hostname, Assert.Single(backend.Snis));

            await socket.SendAsync("hello"u8.ToArray(), WebSocketMessageType.Text, true, timeout.Token);
            var (type, echoed) = await WebSocketBackend.ReceiveAsync(socket, timeout.Token);
            Assert.Equal((WebSocketMessageType.Text, "hello"), (type, System.Text.Encoding.UTF8.GetString(echoed)));

            var large = RandomNumberGenerator.GetBytes(16 * 1024 * 1024);
            var send = socket.SendAsync(large, WebSocketMessageType.Binary, true, timeout.Token);
            var (largeType, largeEcho) = await WebSocketBackend.ReceiveAsync(socket, timeout.Token);
            await send;
            Assert.Equal(WebSocketMessageType.Binary, largeType);
            Assert.True(large.AsSpan().SequenceEqual(largeEcho), "the 16 MiB message came back changed");

            var metrics = await sidecar.MetricsAsync();
            Assert.Contains("backendtls_requests_total{target=\"default/svc:8443\",code=\"101\"} 1", metrics, StringComparison.Ordinal);
            Assert.Contains("backendtls_upgraded_connections_open 1", metrics, StringComparison.Ordinal);

            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "client done", timeout.Token);
            Assert.Equal(WebSocketState.Closed, socket.State);
            Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
            await Eventually.HoldsAsync(async () =>
            {
                var after = await sidecar.MetricsAsync();
                return (after.Contains("backendtls_upgraded_connections_open 0", StringComparison.Ordinal), "upgraded connection still open");
            }, "the tunnel ended after both sides closed");
        }
    }

    [Fact]
    public async Task ServerInitiatedClose_ReachesTheClient()
    {
        var (ca, backend, sidecar) = await StartAsync();
        await using (backend)
        await using (sidecar)
        using (ca)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            using var socket = await WebSocketBackend.ConnectThroughAsync(sidecar.ListenPort, new Uri($"ws://{Hostname}/server-closes"), timeout.Token);
            var (type, bye) = await WebSocketBackend.ReceiveAsync(socket, timeout.Token);
            Assert.Equal("bye", System.Text.Encoding.UTF8.GetString(bye));
            (type, _) = await WebSocketBackend.ReceiveAsync(socket, timeout.Token);
            Assert.Equal(WebSocketMessageType.Close, type);
            Assert.Equal((WebSocketCloseStatus.NormalClosure, "server done"), (socket.CloseStatus, socket.CloseStatusDescription));
        }
    }

    [Fact]
    public async Task BackendRefusesTheUpgrade_ClientGetsItsAnswer_NotA101()
    {
        var (ca, backend, sidecar) = await StartAsync();
        await using (backend)
        await using (sidecar)
        using (ca)
        {
            var response = await RawConnection.ExchangeAsync(sidecar.ListenPort, UpgradeRequest("/refuse"));
            Assert.Equal(403, response.Status);
            Assert.Equal("no websocket here", response.Body);
            Assert.Contains("backendtls_requests_total{target=\"default/svc:8443\",code=\"403\"} 1", await sidecar.MetricsAsync(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task VerificationFails_502WithTheReason_BeforeAny101()
    {
        var (ca, backend, sidecar) = await StartAsync(sans: ["other.example.com"]);
        await using (backend)
        await using (sidecar)
        using (ca)
        {
            var response = await RawConnection.ExchangeAsync(sidecar.ListenPort, UpgradeRequest("/echo"));
            Assert.Equal(502, response.Status);
            Assert.Equal("hostname_mismatch", response.Field("x-backendtls-error"));
            Assert.Empty(backend.Snis);
        }
    }

    [Fact]
    public async Task H2cUpgrade_Refused501_SayingWhy()
    {
        var (ca, backend, sidecar) = await StartAsync();
        await using (backend)
        await using (sidecar)
        using (ca)
        {
            var response = await RawConnection.ExchangeAsync(sidecar.ListenPort,
                $"GET / HTTP/1.1\r\nHost: {Hostname}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n");
            Assert.Equal(501, response.Status);
            Assert.Equal("upgrade_not_supported", response.Field("x-backendtls-error"));
            Assert.Contains("h2c", response.Body, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AThousandConcurrentSockets_OneMessageEachWay_AllClosed()
    {
        var (ca, backend, sidecar) = await StartAsync();
        await using (backend)
        await using (sidecar)
        using (ca)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            using var gate = new SemaphoreSlim(100); // opening is bounded; all 1,000 are open at once before any closes
            var opened = 0;
            using var allOpen = new SemaphoreSlim(0);
            var sockets = Enumerable.Range(0, 1000).Select(async i =>
            {
                ClientWebSocket socket;
                await gate.WaitAsync(timeout.Token);
                try
                {
                    socket = await WebSocketBackend.ConnectThroughAsync(sidecar.ListenPort, Echo, timeout.Token);
                }
                finally
                {
                    gate.Release();
                }

                using (socket)
                {
                    var message = System.Text.Encoding.UTF8.GetBytes($"message {i}");
                    await socket.SendAsync(message, WebSocketMessageType.Text, true, timeout.Token);
                    var (_, echoed) = await WebSocketBackend.ReceiveAsync(socket, timeout.Token);
                    Assert.Equal(message, echoed);
                    Interlocked.Increment(ref opened);
                    await allOpen.WaitAsync(timeout.Token); // closed only once the test saw all 1,000 open
                    await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, timeout.Token);
                }
            }).ToList();
            await Eventually.HoldsAsync(async () =>
            {
                var metrics = await sidecar.MetricsAsync();
                return (metrics.Contains("backendtls_upgraded_connections_open 1000", StringComparison.Ordinal), $"{Volatile.Read(ref opened)} echoed");
            }, "1,000 upgraded connections open at once", TimeSpan.FromSeconds(60));
            allOpen.Release(1000);
            await Task.WhenAll(sockets);
            Assert.Contains("backendtls_requests_total{target=\"default/svc:8443\",code=\"101\"} 1000", await sidecar.MetricsAsync(), StringComparison.Ordinal);
        }
    }

    [SkippableFact]
    public async Task NginxGatewayWithItsUsualWebSocketConfig_InFront_MessagesBothWays()
    {
        Skip.IfNot(Nginx.Available, "nginx is not installed (apt-get install nginx-light)");
        var (ca, backend, sidecar) = await StartAsync();
        await using (backend)
        await using (sidecar)
        using (ca)
        {
            var port = ExternalProcess.FreePort();
            // The configuration nginx's own WebSocket proxying guide gives, pointed at the sidecar.
            await using var gateway = await Nginx.StartAsync($$"""
                map $http_upgrade $connection_upgrade { default upgrade; '' close; }
                server {
                  listen 127.0.0.1:{{port}};
                  location / {
                    proxy_pass http://127.0.0.1:{{sidecar.ListenPort}};
                    proxy_http_version 1.1;
                    proxy_set_header Upgrade $http_upgrade;
                    proxy_set_header Connection $connection_upgrade;
                    proxy_set_header Host {{Hostname}};
                    proxy_read_timeout 3600s;
                  }
                }
                """, port);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            using var socket = await WebSocketBackend.ConnectThroughAsync(port, Echo, timeout.Token);
            foreach (var text in new[] { "one", "two", new string('x', 300_000) })
            {
                await socket.SendAsync(System.Text.Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, timeout.Token);
                var (_, echoed) = await WebSocketBackend.ReceiveAsync(socket, timeout.Token);
                Assert.Equal(text, System.Text.Encoding.UTF8.GetString(echoed));
            }

            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", timeout.Token);
            Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
            Assert.Equal(Hostname, Assert.Single(backend.Snis));
        }
    }

    private static string UpgradeRequest(string path) =>
        $"GET {path} HTTP/1.1\r\nHost: {Hostname}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
}
