using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Support;

namespace BackendTls.Tests.Functional;

public class LifecycleTests
{
    private const string Hostname = "abc.example.com";

    [Fact]
    public async Task Shutdown_FinishesInFlightRequest_ThenRefusesConnections()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        await using var sidecar = new SidecarFixture { DrainTimeout = TimeSpan.FromSeconds(10) };
        await sidecar.StartForBackendAsync(backend.Port, ca.CertificatePem, Hostname);

        var slow = sidecar.GetAsync(Hostname, "/slow?delayMs=1500");
        await SidecarFixture.EventuallyAsync(async () => (await sidecar.MetricsAsync()).Contains("backendtls_upstream_connections_open{target=\"default/svc:8443\"} 1", StringComparison.Ordinal),
            "the slow request reached the backend");
        var stopwatch = Stopwatch.StartNew();
        await sidecar.StopAsync();

        using var response = await slow;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(stopwatch.Elapsed > TimeSpan.FromMilliseconds(500), "shutdown waited for the in-flight request");
        await Assert.ThrowsAsync<HttpRequestException>(() => sidecar.GetAsync(Hostname));
    }

    [Fact]
    public async Task SlowBackend_504UpstreamTimeout()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        // 1.5 s: short next to the slow backend's 4 s, long enough for a fast request on a busy CI machine.
        await using var sidecar = new SidecarFixture { ResponseTimeout = TimeSpan.FromMilliseconds(1500) };
        await sidecar.StartForBackendAsync(backend.Port, ca.CertificatePem, Hostname);

        using var slow = await sidecar.GetAsync(Hostname, "/slow?delayMs=4000");
        using var fast = await sidecar.GetAsync(Hostname, "/fast");

        Assert.Equal(HttpStatusCode.GatewayTimeout, slow.StatusCode);
        Assert.Equal("upstream_timeout", slow.Headers.GetValues("x-backendtls-error").Single());
        Assert.Equal(HttpStatusCode.OK, fast.StatusCode);
    }

    [Fact]
    public async Task SlowHeaders_ConnectionClosedAfterRequestHeadersTimeout()
    {
        await using var sidecar = new SidecarFixture { RequestHeadersTimeout = TimeSpan.FromMilliseconds(500) };
        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "backendtls.yaml"), "apiVersion: backendtls.io/v1\nkind: SidecarConfig\ntargets: []\n");
        await sidecar.StartAsync();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, sidecar.ListenPort);
        var stream = client.GetStream();
        await stream.WriteAsync("GET / HTTP/1.1\r\nHost: abc"u8.ToArray()); // never finishes the headers

        var buffer = new byte[1024];
        using var guard = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var total = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer.AsMemory(total), guard.Token)) > 0)
        {
            total += read;
        }

        // Kestrel answers 408 and closes; reaching end-of-stream before the guard proves the close.
        Assert.Contains("408", System.Text.Encoding.ASCII.GetString(buffer, 0, total), StringComparison.Ordinal);
    }

    [Fact]
    public async Task DedicatedListenPort_RoutesWhateverTheHost()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        await using var sidecar = new SidecarFixture();
        var dedicated = SidecarFixture.FreePort();
        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "ca.crt"), ca.CertificatePem);
        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "backendtls.yaml"), $"""
            apiVersion: backendtls.io/v1
            kind: SidecarConfig
            targets:
            - service: {"{"}namespace: default, name: svc, port: 8443{"}"}
              hostname: {Hostname}
              caCertificates: [{"{"}file: ca.crt{"}"}]
              address: 127.0.0.1:{backend.Port}
              listenPort: {dedicated}
            """);
        await sidecar.StartAsync();

        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{dedicated}/x");
        request.Headers.Host = "anything.local";
        using var response = await sidecar.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains($"\"sni\": \"{Hostname}\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
