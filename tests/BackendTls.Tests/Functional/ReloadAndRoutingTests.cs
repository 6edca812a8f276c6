using BackendTls.Tests.Shared;
using System.Net;
using System.Text.Json;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Support;

namespace BackendTls.Tests.Functional;

/// <summary>Live reload, readiness, routing and fail-closed behaviour of a running sidecar.</summary>
public class ReloadAndRoutingTests
{
    private const string Hostname = "abc.example.com";

    private static string Inputs(string caPem, string hostname = Hostname) =>
        Manifests.Service("svc") + Manifests.CaConfigMap("root-ca", caPem) + Manifests.Policy("p", "svc", hostname);

    private static async Task<SidecarFixture> StartAsync(EchoBackend backend, string caPem)
    {
        var sidecar = new SidecarFixture();
        await sidecar.StartForBackendAsync(backend.Port, caPem, Hostname);
        return sidecar;
    }

    [Fact]
    public async Task KubeletStyleDataSwap_IsAppliedLive()
    {
        using var oldCa = CertificateAuthority.Create("CN=Old Root");
        using var newCa = CertificateAuthority.Create("CN=New Root");
        using var leaf = newCa.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        await using var sidecar = new SidecarFixture();
        sidecar.Resolve["svc.default.svc.cluster.local:8443"] = $"127.0.0.1:{backend.Port}";
        KubeletVolume.Publish(sidecar.ConfigDir, PolicyFiles(oldCa.CertificatePem));
        await sidecar.StartAsync();
        Assert.Equal(HttpStatusCode.BadGateway, (await sidecar.GetAsync(Hostname)).StatusCode); // old CA does not trust the leaf

        KubeletVolume.Publish(sidecar.ConfigDir, PolicyFiles(newCa.CertificatePem));

        await SidecarFixture.EventuallyAsync(async () => (await sidecar.GetAsync(Hostname)).StatusCode == HttpStatusCode.OK,
            "the swapped ..data with the new CA is applied", TimeSpan.FromSeconds(2.5));
        Assert.Contains("backendtls_config_reloads_total{result=\"success\"} 2", await sidecar.MetricsAsync(), StringComparison.Ordinal);
    }

    private static IReadOnlyDictionary<string, string> PolicyFiles(string caPem) =>
        BackendTls.Policy.Rendering.PolicyRenderer.RenderYaml([("in.yaml", Inputs(caPem))]).Files;

    [Fact]
    public async Task BrokenUpdate_KeepsLastGood_AndReportsIt()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        await using var sidecar = await StartAsync(backend, ca.CertificatePem);

        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "backendtls.yaml"), "apiVersion: backendtls.io/v1\nkind: SidecarConfig\ntargets:\n- service: {namespace: default, name: svc, port: 8443}\n  hostname: NOT_A_HOST\n");

        await SidecarFixture.EventuallyAsync(async () => (await sidecar.MetricsAsync()).Contains("backendtls_config_valid 0", StringComparison.Ordinal),
            "the broken config is noticed");
        Assert.Equal(HttpStatusCode.OK, (await sidecar.GetAsync(Hostname)).StatusCode); // still the last good config
        using var ready = await sidecar.Client.GetAsync(sidecar.AdminUrl + "/healthz/ready");
        var body = JsonDocument.Parse(await ready.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.False(body.GetProperty("lastLoad").GetProperty("succeeded").GetBoolean());
        Assert.Contains("targets[0] (default/svc:8443): hostname: \"NOT_A_HOST\" is not a valid hostname",
            body.GetProperty("lastLoad").GetProperty("errors")[0].GetString(), StringComparison.Ordinal);
        Assert.Contains("backendtls_config_reloads_total{result=\"failure\"} 1", await sidecar.MetricsAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task InvalidAtStart_NotReady_WithPreciseError_ThenReadyWhenFixed()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        await using var sidecar = new SidecarFixture();
        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "backendtls.yaml"), "apiVersion: backendtls.io/v1\nkind: SidecarConfig\ntargets:\n- service: {namespace: default, name: svc, port: 8443}\n  hostname: abc.example.com\n  caCertificates: [{file: missing.crt}]\n");
        await sidecar.StartAsync();

        using var notReady = await sidecar.Client.GetAsync(sidecar.AdminUrl + "/healthz/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, notReady.StatusCode);
        Assert.Contains("caCertificates[0].file: cannot read \\u0022missing.crt\\u0022", await notReady.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var proxied = await sidecar.GetAsync(Hostname);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, proxied.StatusCode);
        Assert.Equal("not_ready", proxied.Headers.GetValues("x-backendtls-error").Single());

        sidecar.Render(Inputs(ca.CertificatePem));
        await SidecarFixture.EventuallyAsync(async () => (await sidecar.Client.GetAsync(sidecar.AdminUrl + "/healthz/ready")).IsSuccessStatusCode,
            "ready after the config is fixed");
    }

    [Fact]
    public async Task CaRotation_WhileRequestsFlow_NoRequestFails()
    {
        using var oldCa = CertificateAuthority.Create("CN=Old Root");
        using var newCa = CertificateAuthority.Create("CN=New Root");
        using var oldLeaf = oldCa.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(oldLeaf);
        await using var sidecar = await StartAsync(backend, oldCa.CertificatePem);
        using var stop = new CancellationTokenSource();
        var failures = new List<string>();
        var completed = 0;

        async Task Load()
        {
            while (!stop.IsCancellationRequested)
            {
                using var response = await sidecar.GetAsync(Hostname);
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    var body = await response.Content.ReadAsStringAsync();
                    lock (failures)
                    {
                        failures.Add($"{(int)response.StatusCode} {body}");
                    }
                }

                Interlocked.Increment(ref completed);
            }
        }

        var load = Enumerable.Range(0, 4).Select(_ => Task.Run(Load)).ToArray();
        // Rotation step 1: trust both CAs (the bundle carries old and new), step 2: only the new one.
        sidecar.Render(Inputs(oldCa.CertificatePem + newCa.CertificatePem));
        await SidecarFixture.EventuallyAsync(async () => (await sidecar.MetricsAsync()).Contains("reloads_total{result=\"success\"} 2", StringComparison.Ordinal), "bundle with both CAs applied");
        var before = Volatile.Read(ref completed);
        await SidecarFixture.EventuallyAsync(() => Task.FromResult(Volatile.Read(ref completed) > before + 50), "requests keep flowing");
        stop.Cancel();
        await Task.WhenAll(load);

        Assert.Empty(failures);
        Assert.True(completed > 50, $"only {completed} requests ran");

        // Step 2: only the new CA. The backend still serves the old CA's certificate, so once the reload
        // applies (a changed target gets a new pool) it is refused: the old trust is really gone.
        sidecar.Render(Inputs(newCa.CertificatePem));
        await SidecarFixture.EventuallyAsync(async () =>
        {
            using var response = await sidecar.GetAsync(Hostname);
            return response.StatusCode == HttpStatusCode.BadGateway && response.Headers.GetValues("x-backendtls-error").Single() == "untrusted_root";
        }, "only the new CA trusted: the old certificate refused");
    }

    [Fact]
    public async Task Routing_ServiceNamesAndAbsoluteForm_UnknownHost404_NotForwarded()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        await using var sidecar = await StartAsync(backend, ca.CertificatePem);

        foreach (var host in new[] { "svc", "svc.default", "svc.default.svc", "svc.default.svc.cluster.local", "svc.default:8443", "abc.example.com:8080", "ABC.Example.com" })
        {
            using var response = await sidecar.GetAsync(host);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"Host {host}: {(int)response.StatusCode}");
        }

        using (var absolute = await RawRequestAsync(sidecar.ListenPort, "GET http://svc.default:8443/abs HTTP/1.1\r\nHost: svc.default:8443\r\nConnection: close\r\n\r\n"))
        {
            Assert.StartsWith("HTTP/1.1 200", absolute.Status, StringComparison.Ordinal);
        }

        using var unknown = await sidecar.GetAsync("evil.example.org", "/steal");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("no_policy", unknown.Headers.GetValues("x-backendtls-error").Single());
        Assert.Contains("evil.example.org", await unknown.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task GatewayHost_AlwaysReachesTheBackend_SniAlwaysThePolicyHostname()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf); // offers h2 and http/1.1
        await using var sidecar = await StartAsync(backend, ca.CertificatePem);

        var byServiceName = JsonDocument.Parse(await (await sidecar.GetAsync("svc.default", "/a")).Content.ReadAsStringAsync()).RootElement;
        var byPolicyHostname = JsonDocument.Parse(await (await sidecar.GetAsync(Hostname, "/b")).Content.ReadAsStringAsync()).RootElement;

        Assert.Equal(("svc.default", Hostname, "HTTP/1.1"),
            (byServiceName.GetProperty("host").GetString(), byServiceName.GetProperty("sni").GetString(), byServiceName.GetProperty("httpProtocol").GetString()));
        Assert.Equal((Hostname, Hostname, "HTTP/2"),
            (byPolicyHostname.GetProperty("host").GetString(), byPolicyHostname.GetProperty("sni").GetString(), byPolicyHostname.GetProperty("httpProtocol").GetString()));
    }

    [Fact]
    public async Task FailClosedTarget_503_NeverForwarded()
    {
        await using var sidecar = new SidecarFixture();
        sidecar.Render(Manifests.Service("svc") + Manifests.Policy("p", "svc", Hostname, caRefs: "[{group: \"\", kind: ConfigMap, name: missing-ca}]"));
        await sidecar.StartAsync();

        using var response = await sidecar.GetAsync(Hostname);

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("invalid_ca_ref", response.Headers.GetValues("x-backendtls-error").Single());
        Assert.Contains("ConfigMap default/missing-ca not found", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Contains("backendtls_targets{state=\"fail_closed\"} 1", await sidecar.MetricsAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConnectionRefused_502WithReason()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        await using var sidecar = new SidecarFixture();
        await sidecar.StartForBackendAsync(SidecarFixture.FreePort(), ca.CertificatePem, Hostname);

        using var response = await sidecar.GetAsync(Hostname);

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("connection_refused", response.Headers.GetValues("x-backendtls-error").Single());
    }

    [Fact]
    public async Task SilentBackend_HandshakeTimeout()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var silent = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0); // accepts TCP, never speaks TLS
        silent.Start();
        await using var sidecar = new SidecarFixture { HandshakeTimeout = TimeSpan.FromMilliseconds(300) };
        await sidecar.StartForBackendAsync(((IPEndPoint)silent.LocalEndpoint).Port, ca.CertificatePem, Hostname);

        using var response = await sidecar.GetAsync(Hostname);

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("handshake_timeout", response.Headers.GetValues("x-backendtls-error").Single());
    }

    [Fact]
    public async Task ConfigPage_ShowsPolicyPerTarget_NoKeys()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        await using var sidecar = await StartAsync(backend, ca.CertificatePem);

        var page = await sidecar.Client.GetStringAsync(sidecar.AdminUrl + "/config");

        var target = JsonDocument.Parse(page).RootElement.GetProperty("targets")[0];
        Assert.Equal("default/svc:8443", target.GetProperty("target").GetString());
        Assert.Equal("default/p", target.GetProperty("policy").GetString());
        Assert.Equal(Hostname, target.GetProperty("sni").GetString());
        Assert.Equal("CN=Root", target.GetProperty("caBundles")[0].GetProperty("certificates")[0].GetProperty("subject").GetString());
        Assert.DoesNotContain("PRIVATE", page, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LargeBodies_StreamBothWays()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        await using var sidecar = await StartAsync(backend, ca.CertificatePem);
        var payload = new string('x', 5 * 1024 * 1024);

        using var request = new HttpRequestMessage(HttpMethod.Post, sidecar.ProxyUrl + "/upload") { Content = new StringContent(payload) };
        request.Headers.Host = Hostname;
        using var response = await sidecar.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(payload.Length, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("bodyLength").GetInt32());
    }

    private sealed record RawResponse(string Status) : IDisposable
    {
        public void Dispose()
        {
        }
    }

    private static async Task<RawResponse> RawRequestAsync(int port, string request)
    {
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        var stream = client.GetStream();
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(request));
        using var reader = new StreamReader(stream);
        return new RawResponse(await reader.ReadLineAsync() ?? string.Empty);
    }
}
