using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Shared;
using BackendTls.Tests.Support;

namespace BackendTls.Tests.Functional;

/// <summary>
/// The sidecar's client certificate for backends that require mutual TLS: a kubernetes.io/tls Secret's
/// files (kubelet's ..data layout), presented on every new connection; a backend's refusal, a missing or
/// broken certificate each get their own reason; a renewal applies live without failing a request.
/// Backends: Kestrel requiring a client certificate (the handshake aborts, TLS 1.2 and 1.3), and nginx
/// with ssl_verify_client on.
/// </summary>
public sealed class MutualTlsTests : IDisposable
{
    private const string Hostname = "abc.example.com";
    private readonly CertificateAuthority _serverCa = CertificateAuthority.Create("CN=Server Root");
    private readonly CertificateAuthority _clientCa = CertificateAuthority.Create("CN=Gateway Client Root");
    private readonly string _secret = Directory.CreateTempSubdirectory("client-cert-").FullName;

    public void Dispose()
    {
        _serverCa.Dispose();
        _clientCa.Dispose();
        Directory.Delete(_secret, recursive: true);
    }

    /// <summary>As kubelet mounts a kubernetes.io/tls Secret: tls.crt and tls.key behind ..data.</summary>
    private void MountSecret(X509Certificate2 certificate) => KubeletVolume.Publish(_secret, new Dictionary<string, string>
    {
        ["tls.crt"] = certificate.ExportCertificatePem(),
        ["tls.key"] = certificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem(),
    });

    private bool TrustedClient(X509Certificate2? presented)
    {
        if (presented is null)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(_clientCa.Certificate);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(presented);
    }

    private async Task<(EchoBackend Backend, SidecarFixture Sidecar)> StartAsync(SslProtocols backendProtocols = SslProtocols.Tls12 | SslProtocols.Tls13, bool withCertificate = true)
    {
        // HTTP/1.1, so ?close=1 can end a connection (the renewal test needs new handshakes).
        var backend = await EchoBackend.StartAsync(_serverCa.Issue("CN=backend", dnsNames: [Hostname]), protocols: backendProtocols,
            httpProtocols: Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1, acceptClientCertificate: TrustedClient);
        var sidecar = new SidecarFixture { ClientCertificateDir = withCertificate ? _secret : null };
        await sidecar.StartForBackendAsync(backend.Port, _serverCa.CertificatePem, Hostname);
        return (backend, sidecar);
    }

    private static async Task<(HttpStatusCode Status, string? Reason, JsonElement Body)> GetAsync(SidecarFixture sidecar, string path = "/")
    {
        using var response = await sidecar.GetAsync(Hostname, path);
        var reason = response.Headers.TryGetValues("x-backendtls-error", out var values) ? values.Single() : null;
        return (response.StatusCode, reason, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    [Theory]
    [InlineData(SslProtocols.Tls13)]
    [InlineData(SslProtocols.Tls12)]
    public async Task RightCertificate_Accepted_BackendSawIt(SslProtocols protocol)
    {
        using var client = _clientCa.Issue("CN=gateway-client", serverAuth: false);
        MountSecret(client);
        var (backend, sidecar) = await StartAsync(protocol);
        await using (backend)
        await using (sidecar)
        {
            var (status, _, body) = await GetAsync(sidecar);
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal("CN=gateway-client", body.GetProperty("clientCertificate").GetString());
            Assert.Contains("backendtls_client_certificate_expiry_timestamp_seconds", await sidecar.MetricsAsync(), StringComparison.Ordinal);
            Assert.DoesNotContain("PRIVATE KEY", await sidecar.Client.GetStringAsync(sidecar.AdminUrl + "/config"), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(SslProtocols.Tls13)]
    [InlineData(SslProtocols.Tls12)]
    public async Task NoClientCertificate_BackendRequiresOne_502ClientCertificateRejected_SayingHowToGiveOne(SslProtocols protocol)
    {
        var (backend, sidecar) = await StartAsync(protocol, withCertificate: false);
        await using (backend)
        await using (sidecar)
        {
            var (status, reason, body) = await GetAsync(sidecar);
            Assert.True((HttpStatusCode.BadGateway, "client_certificate_rejected") == (status, reason), body.ToString());
            Assert.Contains("carried no client certificate", body.GetProperty("detail").GetString(), StringComparison.Ordinal);
            Assert.Contains("backendtls.io/client-certificate-secret", body.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(SslProtocols.Tls13)]
    [InlineData(SslProtocols.Tls12)]
    public async Task CertificateFromAnotherCa_502ClientCertificateRejected_NamingIt(SslProtocols protocol)
    {
        using var other = CertificateAuthority.Create("CN=Unknown Client Root");
        using var client = other.Issue("CN=stranger", serverAuth: false);
        MountSecret(client);
        var (backend, sidecar) = await StartAsync(protocol);
        await using (backend)
        await using (sidecar)
        {
            var (status, reason, body) = await GetAsync(sidecar);
            Assert.Equal((HttpStatusCode.BadGateway, "client_certificate_rejected"), (status, reason));
            Assert.Contains("CN=stranger", body.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ExpiredCertificate_FailsClosedAtLoad_WithTheDate_NeverConnects()
    {
        using var expired = _clientCa.Issue("CN=old-client", serverAuth: false, notBefore: DateTimeOffset.UtcNow.AddDays(-30), notAfter: DateTimeOffset.UtcNow.AddDays(-1));
        MountSecret(expired);
        var (backend, sidecar) = await StartAsync();
        await using (backend)
        await using (sidecar)
        {
            var (status, reason, body) = await GetAsync(sidecar);
            Assert.Equal((HttpStatusCode.BadGateway, "client_certificate_invalid"), (status, reason));
            Assert.Contains("CN=old-client", body.GetProperty("detail").GetString(), StringComparison.Ordinal);
            Assert.Contains("expired at", body.GetProperty("detail").GetString(), StringComparison.Ordinal);
            var ready = await sidecar.Client.GetStringAsync(sidecar.AdminUrl + "/healthz/ready");
            Assert.Contains("expired at", ready, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task KeyOfAnotherCertificate_FailsClosedAtLoad_SayingSo()
    {
        using var client = _clientCa.Issue("CN=gateway-client", serverAuth: false);
        using var other = _clientCa.Issue("CN=other", serverAuth: false);
        KubeletVolume.Publish(_secret, new Dictionary<string, string>
        {
            ["tls.crt"] = client.ExportCertificatePem(),
            ["tls.key"] = other.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem(),
        });
        var (backend, sidecar) = await StartAsync();
        await using (backend)
        await using (sidecar)
        {
            var (status, reason, body) = await GetAsync(sidecar);
            Assert.Equal((HttpStatusCode.BadGateway, "client_certificate_invalid"), (status, reason));
            Assert.Contains("tls.key is not the private key of the first certificate in tls.crt", body.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Renewal_UnderLoad_NewConnectionsPresentTheNewCertificate_NoRequestFails()
    {
        using var first = _clientCa.Issue("CN=client-v1", serverAuth: false);
        using var renewed = _clientCa.Issue("CN=client-v2", serverAuth: false);
        MountSecret(first);
        var (backend, sidecar) = await StartAsync();
        await using (backend)
        await using (sidecar)
        {
            using var stop = new CancellationTokenSource();
            var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
            var requests = 0;
            var load = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    var (status, reason, _) = await GetAsync(sidecar);
                    Interlocked.Increment(ref requests);
                    if (status != HttpStatusCode.OK)
                    {
                        failures.Enqueue($"{status} {reason}");
                    }
                }
            })).ToList();
            await Eventually.HoldsAsync(() => Task.FromResult((Volatile.Read(ref requests) > 50, $"{requests} requests")), "load running");

            MountSecret(renewed);
            // ?close=1 makes the backend close that connection, so the next request needs a new handshake.
            await Eventually.HoldsAsync(async () =>
            {
                var (_, _, body) = await GetAsync(sidecar, "/?close=1");
                var presented = body.GetProperty("clientCertificate").GetString();
                return (presented == "CN=client-v2", $"presented {presented}");
            }, "the renewed certificate presented on new connections");
            stop.Cancel();
            await Task.WhenAll(load);
            Assert.Empty(failures);
        }
    }

    [SkippableFact]
    public async Task NginxSslVerifyClientOn_AcceptsTheCertificate_AndAnswers400WithoutOne()
    {
        Skip.IfNot(Nginx.Available, "nginx is not installed (apt-get install nginx-light)");
        using var client = _clientCa.Issue("CN=gateway-client", serverAuth: false);
        MountSecret(client);
        var pem = Directory.CreateTempSubdirectory("nginx-mtls-").FullName;
        try
        {
            using var server = _serverCa.Issue("CN=backend", dnsNames: [Hostname]);
            File.WriteAllText(Path.Combine(pem, "server.crt"), server.ExportCertificatePem());
            File.WriteAllText(Path.Combine(pem, "server.key"), server.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
            File.WriteAllText(Path.Combine(pem, "client-ca.crt"), _clientCa.CertificatePem);
            var port = ExternalProcess.FreePort();
            await using var nginx = await Nginx.StartAsync($$"""
                server {
                  listen 127.0.0.1:{{port}} ssl;
                  ssl_certificate {{pem}}/server.crt; ssl_certificate_key {{pem}}/server.key;
                  ssl_client_certificate {{pem}}/client-ca.crt; ssl_verify_client on;
                  location / { return 200 "{\"clientCertificate\": \"$ssl_client_s_dn\"}"; }
                }
                """, port);
            foreach (var (withCertificate, expected) in new[] { (true, HttpStatusCode.OK), (false, HttpStatusCode.BadRequest) })
            {
                await using var sidecar = new SidecarFixture { ClientCertificateDir = withCertificate ? _secret : null };
                await sidecar.StartForBackendAsync(port, _serverCa.CertificatePem, Hostname);
                using var response = await sidecar.GetAsync(Hostname);
                // nginx completes the handshake and refuses at the HTTP level (400 "No required SSL certificate
                // was sent"): that answer is the backend's and passes through as it is.
                Assert.Equal(expected, response.StatusCode);
                if (withCertificate)
                {
                    Assert.Contains("CN=gateway-client", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
                }
            }
        }
        finally
        {
            Directory.Delete(pem, recursive: true);
        }
    }
}
