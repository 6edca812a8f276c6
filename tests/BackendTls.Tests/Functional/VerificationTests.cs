using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Support;

namespace BackendTls.Tests.Functional;

/// <summary>
/// Real TLS backends on loopback (Kestrel) with certificates made here, the sidecar in front, plain HTTP in.
/// Each case is one certificate problem and the reason the sidecar must give for it.
/// </summary>
public class VerificationTests
{
    private const string Hostname = "abc.example.com";

    private sealed record Outcome(HttpStatusCode Status, string? Reason, JsonElement Body, string Metrics);

    private static async Task<Outcome> ProxyAsync(
        CertificateAuthority trusted,
        X509Certificate2 served,
        X509Certificate2Collection? chain = null,
        string? extraValidation = null,
        string? options = null,
        string hostname = Hostname)
    {
        await using var backend = await EchoBackend.StartAsync(served, chain);
        await using var sidecar = new SidecarFixture();
        await sidecar.StartForBackendAsync(backend.Port, trusted.CertificatePem, hostname, extraValidation, options);

        using var response = await sidecar.GetAsync(hostname, "/echo?x=1");
        var text = await response.Content.ReadAsStringAsync();
        var reason = response.Headers.TryGetValues("x-backendtls-error", out var values) ? values.Single() : null;
        return new Outcome(response.StatusCode, reason, JsonDocument.Parse(text).RootElement.Clone(), await sidecar.MetricsAsync());
    }

    private static void AssertRejected(Outcome outcome, string reason, string detailFragment)
    {
        Assert.Equal(HttpStatusCode.BadGateway, outcome.Status);
        Assert.Equal(reason, outcome.Reason);
        Assert.Equal(reason, outcome.Body.GetProperty("error").GetString());
        Assert.Contains(detailFragment, outcome.Body.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Contains($"backendtls_upstream_handshakes_total{{target=\"default/svc:8443\",result=\"error\",reason=\"{reason}\"}} 1", outcome.Metrics, StringComparison.Ordinal);
        Assert.Contains("backendtls_requests_total{target=\"default/svc:8443\",code=\"502\"} 1", outcome.Metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task GoodChain_200_BackendSawPolicySni_AndOriginalHost()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname, "other.example.com"]);

        var outcome = await ProxyAsync(ca, leaf);

        Assert.Equal(HttpStatusCode.OK, outcome.Status);
        Assert.Equal(Hostname, outcome.Body.GetProperty("sni").GetString());
        Assert.Equal("/echo?x=1", outcome.Body.GetProperty("path").GetString());
        Assert.Equal("127.0.0.1", outcome.Body.GetProperty("xForwardedFor").GetString());
        Assert.Contains("backendtls_upstream_handshakes_total{target=\"default/svc:8443\",result=\"ok\",reason=\"verified\"}", outcome.Metrics, StringComparison.Ordinal);
        Assert.Contains($"backendtls_backend_certificate_expiry_timestamp_seconds{{target=\"default/svc:8443\"}} {new DateTimeOffset(leaf.NotAfter.ToUniversalTime()).ToUnixTimeSeconds()}", outcome.Metrics, StringComparison.Ordinal);
        Assert.Contains("backendtls_ca_certificate_earliest_expiry_timestamp_seconds{target=\"default/svc:8443\"}", outcome.Metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChainThroughIntermediate_SentByBackend_200()
    {
        using var root = CertificateAuthority.Create("CN=Test Root");
        using var intermediate = root.CreateIntermediate("CN=Test Intermediate");
        using var leaf = intermediate.Issue("CN=backend", dnsNames: [Hostname]);

        var outcome = await ProxyAsync(root, leaf, chain: [intermediate.Certificate]);

        Assert.Equal(HttpStatusCode.OK, outcome.Status);
    }

    [Fact]
    public async Task IntermediateNotSent_UntrustedRoot()
    {
        using var root = CertificateAuthority.Create("CN=Test Root");
        using var intermediate = root.CreateIntermediate("CN=Test Intermediate");
        using var leaf = intermediate.Issue("CN=backend", dnsNames: [Hostname]);

        AssertRejected(await ProxyAsync(root, leaf), "untrusted_root", "send its intermediates");
    }

    [Fact]
    public async Task IntermediateNotSent_NotFetchedFromTheCertificatesAiaUrl()
    {
        // The leaf names where its issuer can be downloaded; the sidecar must not go there (egress the
        // policy never named, and a blocking call on the socket thread), so the chain stays incomplete.
        using var root = CertificateAuthority.Create("CN=Test Root");
        using var intermediate = root.CreateIntermediate("CN=Test Intermediate");
        using var aia = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        aia.Start();
        var fetches = 0;
        var served = Task.Run(async () =>
        {
            while (true)
            {
                using var client = await aia.AcceptTcpClientAsync();
                Interlocked.Increment(ref fetches);
                var stream = client.GetStream();
                _ = await stream.ReadAsync(new byte[4096]); // the request head; its content does not matter
                var der = intermediate.Certificate.RawData;
                await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: application/pkix-cert\r\nContent-Length: {der.Length}\r\nConnection: close\r\n\r\n"));
                await stream.WriteAsync(der);
            }
        });
        var url = new Uri($"http://127.0.0.1:{((IPEndPoint)aia.LocalEndpoint).Port}/intermediate.crt");
        using var leaf = intermediate.Issue("CN=backend", dnsNames: [Hostname], caIssuersUrl: url);

        AssertRejected(await ProxyAsync(root, leaf), "untrusted_root", "send its intermediates");
        Assert.Equal(0, Volatile.Read(ref fetches));
        aia.Stop();
        await Assert.ThrowsAnyAsync<Exception>(() => served);
    }

    [Fact]
    public async Task WrongCa_UntrustedRoot_NamesThePolicyCa()
    {
        using var trusted = CertificateAuthority.Create("CN=Trusted Root");
        using var other = CertificateAuthority.Create("CN=Other Root");
        using var leaf = other.Issue("CN=backend", dnsNames: [Hostname]);

        AssertRejected(await ProxyAsync(trusted, leaf), "untrusted_root", "ConfigMap default/root-ca: CN=Trusted Root");
    }

    [Fact]
    public async Task HostnameMismatch_ListsTheCertificateNames()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: ["other.example.com"]);

        AssertRejected(await ProxyAsync(ca, leaf), "hostname_mismatch", "[DNS:other.example.com] do not match validation.hostname \"abc.example.com\"");
    }

    [Fact]
    public async Task Wildcard_MatchesOneLabel()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: ["*.example.com"]);

        Assert.Equal(HttpStatusCode.OK, (await ProxyAsync(ca, leaf)).Status);
    }

    [Fact]
    public async Task Wildcard_DoesNotMatchTwoLabels()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: ["*.example.com"]);

        AssertRejected(await ProxyAsync(ca, leaf, hostname: "a.abc.example.com"), "hostname_mismatch", "*.example.com");
    }

    [Fact]
    public async Task CnOnly_NoSan_RejectedWithFix()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=abc.example.com"); // the CN matches, but the CN is never used

        AssertRejected(await ProxyAsync(ca, leaf), "no_san", "subjectAltName=DNS:abc.example.com");
    }

    [Fact]
    public async Task Expired_NamesTheDate()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname], notBefore: DateTimeOffset.UtcNow.AddDays(-30), notAfter: DateTimeOffset.UtcNow.AddDays(-1));

        AssertRejected(await ProxyAsync(ca, leaf), "expired", "expired at");
    }

    [Fact]
    public async Task NotYetValid()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname], notBefore: DateTimeOffset.UtcNow.AddDays(2), notAfter: DateTimeOffset.UtcNow.AddDays(30));

        AssertRejected(await ProxyAsync(ca, leaf), "not_yet_valid", "not valid before");
    }

    [Fact]
    public async Task ClientAuthOnlyEku_BadEku()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname], serverAuth: false);

        AssertRejected(await ProxyAsync(ca, leaf), "bad_eku", "extendedKeyUsage=serverAuth");
    }

    [Fact]
    public async Task UriSan_Matches_HostnameIsOnlySni()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=default", dnsNames: ["unrelated.example.com"], uris: [new Uri("spiffe://abc.example.com/test-identity")]);

        var outcome = await ProxyAsync(ca, leaf, extraValidation: "subjectAltNames: [{type: URI, uri: \"spiffe://abc.example.com/test-identity\"}]");

        Assert.Equal(HttpStatusCode.OK, outcome.Status);
        Assert.Equal(Hostname, outcome.Body.GetProperty("sni").GetString());
    }

    [Fact]
    public async Task UriSan_Mismatch_SanMismatch()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=default", dnsNames: [Hostname], uris: [new Uri("spiffe://abc.example.com/test-identity")]);

        // The hostname matches the certificate, but once subjectAltNames are set it is not used to authenticate.
        AssertRejected(await ProxyAsync(ca, leaf, extraValidation: "subjectAltNames: [{type: URI, uri: \"spiffe://def.example.com/test-identity\"}]"),
            "san_mismatch", "validation.hostname is only the SNI");
    }

    [Fact]
    public async Task DnsSan_MultiList_AnyOneMatches()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=default", dnsNames: ["abc.example.com"], uris: [new Uri("spiffe://abc.example.com/test-identity")]);

        var outcome = await ProxyAsync(ca, leaf, extraValidation: "subjectAltNames: [{type: URI, uri: \"spiffe://def.example.com/x\"}, {type: Hostname, hostname: abc.example.com}]");

        Assert.Equal(HttpStatusCode.OK, outcome.Status);
    }

    [Fact]
    public async Task AlpnHttp11Option_BackendSeesHttp11()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);

        var defaults = await ProxyAsync(ca, leaf);
        var http11 = await ProxyAsync(ca, leaf, options: "backendtls.io/alpn: http/1.1");

        Assert.Equal("HTTP/2", defaults.Body.GetProperty("httpProtocol").GetString()); // the backend offers h2: used
        Assert.Equal("HTTP/1.1", http11.Body.GetProperty("httpProtocol").GetString());
        Assert.Equal(Hostname, http11.Body.GetProperty("sni").GetString());
    }

    [Fact]
    public async Task MinTls13Option_Tls12OnlyBackend_ProtocolVersion()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf, protocols: System.Security.Authentication.SslProtocols.Tls12);
        await using var sidecar = new SidecarFixture();
        await sidecar.StartForBackendAsync(backend.Port, ca.CertificatePem, Hostname, options: "backendtls.io/min-tls-version: \"1.3\"");

        using var response = await sidecar.GetAsync(Hostname);

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("protocol_version", response.Headers.GetValues("x-backendtls-error").Single());
    }

    [Theory]
    [InlineData(System.Security.Authentication.SslProtocols.Tls12, "ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")]
    [InlineData(System.Security.Authentication.SslProtocols.Tls12, "", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")] // without the option: the server's first choice
    [InlineData(System.Security.Authentication.SslProtocols.Tls13, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256")]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Tls12CipherSuitesOption_UsedOverTls12_Tls13KeepsItsOwn(System.Security.Authentication.SslProtocols backendProtocol, string option, string negotiated)
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        // The backend accepts several suites; without the option its first choice, AES-128-GCM, would be used.
        await using var backend = await EchoBackend.StartAsync(leaf, protocols: backendProtocol, cipherSuites: new System.Net.Security.CipherSuitesPolicy([
            System.Net.Security.TlsCipherSuite.TLS_AES_128_GCM_SHA256, System.Net.Security.TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            System.Net.Security.TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, System.Net.Security.TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]));
        await using var sidecar = new SidecarFixture();
        await sidecar.StartForBackendAsync(backend.Port, ca.CertificatePem, Hostname, options: option.Length == 0 ? null : $"backendtls.io/tls12-cipher-suites: {option}");

        using var response = await sidecar.GetAsync(Hostname);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(negotiated, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("cipherSuite").GetString());
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Tls12CipherSuitesOption_NoSuiteInCommon_HandshakeFailed_NamingTheAllowedSuites()
    {
        using var ca = CertificateAuthority.Create("CN=Test Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf, protocols: System.Security.Authentication.SslProtocols.Tls12,
            cipherSuites: new System.Net.Security.CipherSuitesPolicy([System.Net.Security.TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]));
        await using var sidecar = new SidecarFixture();
        await sidecar.StartForBackendAsync(backend.Port, ca.CertificatePem, Hostname, options: "backendtls.io/tls12-cipher-suites: ECDHE-ECDSA-CHACHA20-POLY1305");

        using var response = await sidecar.GetAsync(Hostname);

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("handshake_failed", response.Headers.GetValues("x-backendtls-error").Single());
        Assert.Contains("the policy allows only TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
