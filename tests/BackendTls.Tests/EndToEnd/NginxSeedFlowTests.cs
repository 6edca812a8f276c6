using System.Net;
using System.Text;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Shared;

namespace BackendTls.Tests.EndToEnd;

/// <summary>
/// The seed tutorial's flow with real processes on loopback: nginx as the plain-HTTP gateway, the sidecar
/// as its own process (rendered config, --resolve for the Service name), and nginx as the TLS backend
/// echoing the SNI it received.
/// </summary>
public sealed class NginxSeedFlowTests
{
    private static readonly string SidecarDll = Path.Combine(AppContext.BaseDirectory, "backendtls-sidecar.dll");

    private sealed class Flow : IAsyncDisposable
    {
        public required Nginx Backend { get; init; }

        public required ExternalProcess Sidecar { get; init; }

        public required Nginx Gateway { get; init; }

        public required int GatewayPort { get; init; }

        public required int AdminPort { get; init; }

        public required string Work { get; init; }

        public async ValueTask DisposeAsync()
        {
            await Gateway.DisposeAsync();
            await Sidecar.DisposeAsync();
            await Backend.DisposeAsync();
            Directory.Delete(Work, recursive: true);
        }
    }

    private static string TutorialManifests(string rootPem) => $"""
        apiVersion: v1
        kind: Service
        metadata: {"{"}name: httpbin, namespace: httpbin{"}"}
        spec:
          ports: [{"{"}name: http, port: 8000, targetPort: 8080{"}"}]
        ---
        apiVersion: v1
        kind: Secret
        metadata: {"{"}name: httpbin-root-ca, namespace: httpbin{"}"}
        data:
          ca.crt: {Convert.ToBase64String(Encoding.UTF8.GetBytes(rootPem))}
        ---
        apiVersion: gateway.networking.k8s.io/v1alpha3
        kind: BackendTLSPolicy
        metadata:
          name: httpbin-backend-tls
          namespace: httpbin
          labels:
            app: httpbin
        spec:
          targetRefs:
          - group: ''
            kind: Service
            name: httpbin
          validation:
            caCertificateRefs:
            - name: httpbin-root-ca
              group: ''
              kind: Secret
            hostname: www.example.com
        """;

    private static async Task<Flow> StartAsync(string certificates)
    {
        var work = Directory.CreateTempSubdirectory("e2e-").FullName;
        var backendPort = ExternalProcess.FreePort();
        var sidecarPort = ExternalProcess.FreePort();
        var adminPort = ExternalProcess.FreePort();
        var gatewayPort = ExternalProcess.FreePort();

        var backend = await Nginx.StartAsync($$"""
              server {
                listen 127.0.0.1:{{backendPort}} ssl;
                ssl_certificate {{certificates}}/httpbin.crt;
                ssl_certificate_key {{certificates}}/httpbin.key;
                location / { return 200 "sni=$ssl_server_name host=$host uri=$request_uri\n"; }
              }
            """, backendPort);

        File.WriteAllText(Path.Combine(work, "tutorial.yaml"), TutorialManifests(File.ReadAllText(Path.Combine(certificates, "root.crt"))));
        var (code, output) = await ExternalProcess.RunAsync("dotnet", [SidecarDll, "render", "-f", Path.Combine(work, "tutorial.yaml"), "-o", Path.Combine(work, "config")]);
        Assert.True(code == 0, output);

        var sidecar = ExternalProcess.Start("dotnet",
        [
            SidecarDll, "--config-dir", Path.Combine(work, "config"), "--listen", $"127.0.0.1:{sidecarPort}", "--admin", $"127.0.0.1:{adminPort}",
            "--resolve", $"httpbin.httpbin.svc.cluster.local:8000:127.0.0.1:{backendPort}", "--log-format", "json",
        ]);
        await sidecar.WaitForHttpOkAsync($"http://127.0.0.1:{adminPort}/healthz/ready");

        var gateway = await Nginx.StartAsync($$"""
              server {
                listen 127.0.0.1:{{gatewayPort}};
                location / {
                  proxy_pass http://127.0.0.1:{{sidecarPort}};
                  proxy_set_header Host www.example.com;
                  proxy_http_version 1.1;
                  proxy_set_header Connection "";
                }
              }
            """, gatewayPort);
        return new Flow { Backend = backend, Sidecar = sidecar, Gateway = gateway, GatewayPort = gatewayPort, AdminPort = adminPort, Work = work };
    }

    [SkippableFact]
    public async Task SeedFlow_WithSanCertificate_200_BackendSawSni_MetricsCountVerifiedHandshake()
    {
        Skip.IfNot(Nginx.Available, "nginx is not installed (apt-get install nginx-light)");
        var certificates = await OpenSsl.TutorialCertificatesAsync(subjectAltName: "DNS:www.example.com");
        await using var flow = await StartAsync(certificates);
        using var client = new HttpClient();

        var body = await client.GetStringAsync($"http://127.0.0.1:{flow.GatewayPort}/headers");

        Assert.Equal("sni=www.example.com host=www.example.com uri=/headers\n", body);
        var metrics = await client.GetStringAsync($"http://127.0.0.1:{flow.AdminPort}/metrics");
        Assert.Contains("backendtls_upstream_handshakes_total{target=\"httpbin/httpbin:8000\",result=\"ok\",reason=\"verified\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("backendtls_requests_total{target=\"httpbin/httpbin:8000\",code=\"200\"} 1", metrics, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task SeedFlow_TutorialsOwnCertificate_GatewayGets502_WithTheReasonAndTheFix()
    {
        Skip.IfNot(Nginx.Available, "nginx is not installed (apt-get install nginx-light)");
        var certificates = await OpenSsl.TutorialCertificatesAsync();
        Assert.Contains("Version: 1 (0x0)", await OpenSsl.Run(certificates, "x509", "-in", "httpbin.crt", "-noout", "-text"), StringComparison.Ordinal);
        await using var flow = await StartAsync(certificates);
        using var client = new HttpClient();

        using var response = await client.GetAsync($"http://127.0.0.1:{flow.GatewayPort}/headers");

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("no_san", response.Headers.GetValues("x-backendtls-error").Single());
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("X.509 v1", body, StringComparison.Ordinal);
        Assert.Contains("subjectAltName=DNS:www.example.com", body, StringComparison.Ordinal);
        Assert.Contains("\"EventId\":300", flow.Sidecar.Output, StringComparison.Ordinal); // the structured log line
    }

    [Fact]
    public async Task Sigterm_DrainsInFlightRequest_ThenExitsZero()
    {
        using var ca = CertificateAuthority.Create("CN=Drain Root");
        using var leaf = ca.Issue("CN=httpbin", dnsNames: ["www.example.com"]);
        await using var slowBackend = await EchoBackend.StartAsync(leaf); // answers ?delayMs=N after N ms
        var work = Directory.CreateTempSubdirectory("drain-").FullName;
        File.WriteAllText(Path.Combine(work, "t.yaml"), TutorialManifests(ca.CertificatePem));
        var (code, output) = await ExternalProcess.RunAsync("dotnet", [SidecarDll, "render", "-f", Path.Combine(work, "t.yaml"), "-o", Path.Combine(work, "config")]);
        Assert.True(code == 0, output);
        var listen = ExternalProcess.FreePort();
        var admin = ExternalProcess.FreePort();
        await using var sidecar = ExternalProcess.Start("dotnet",
        [
            SidecarDll, "--config-dir", Path.Combine(work, "config"), "--listen", $"127.0.0.1:{listen}", "--admin", $"127.0.0.1:{admin}",
            "--resolve", $"httpbin.httpbin.svc.cluster.local:8000:127.0.0.1:{slowBackend.Port}", "--drain-timeout", "10",
        ]);
        await sidecar.WaitForHttpOkAsync($"http://127.0.0.1:{admin}/healthz/ready");
        using var client = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{listen}/slow?delayMs=1500");
        request.Headers.Host = "www.example.com";
        var inFlight = client.SendAsync(request);
        await WaitUntilAsync(async () => (await client.GetStringAsync($"http://127.0.0.1:{admin}/metrics"))
            .Contains("backendtls_upstream_connections_open{target=\"httpbin/httpbin:8000\"} 1", StringComparison.Ordinal));

        sidecar.Terminate();

        using var response = await inFlight;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(0, await sidecar.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        Assert.Contains("draining in-flight requests", sidecar.Output, StringComparison.Ordinal);
        Directory.Delete(work, true);
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline && !await condition())
        {
            await Task.Delay(25);
        }
    }
}
