using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using BackendTls.Webhook.Certificates;
using BackendTls.Webhook.Hosting;
using BackendTls.Webhook.Injection;

namespace BackendTls.Webhook.Tests.Support;

/// <summary>The webhook on real HTTPS on loopback, with a CA made here; a client that trusts only that CA.</summary>
internal sealed class WebhookFixture : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly string _directory = Directory.CreateTempSubdirectory("webhook-test-").FullName;

    private WebhookFixture(InjectorSettings settings)
    {
        Bundle = ServingCertificates.CreateCaAndServing(["localhost", "backendtls-webhook.backendtls-system.svc"], DateTimeOffset.UtcNow);
        CertificateFile = Path.Combine(_directory, "tls.crt");
        KeyFile = Path.Combine(_directory, "tls.key");
        File.WriteAllText(CertificateFile, Bundle.CertificatePem);
        File.WriteAllText(KeyFile, Bundle.KeyPem);
        Port = FreePort();
        MetricsPort = FreePort();
        var options = new WebhookOptions
        {
            Listen = new IPEndPoint(IPAddress.Loopback, Port),
            Metrics = new IPEndPoint(IPAddress.Loopback, MetricsPort),
            CertificateFile = CertificateFile,
            KeyFile = KeyFile,
            Injector = settings,
            // Never talk to whatever cluster a developer's kubeconfig points at.
            NamespaceLookup = false,
            Controller = false,
            DestinationIndex = false,
        };
        _app = WebhookHost.Build(options, configureLogging: logging => logging.ClearProviders());
        var ca = Bundle.LoadCa();
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                CertificateChainPolicy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, CustomTrustStore = { ca }, RevocationMode = X509RevocationMode.NoCheck },
            },
            MaxConnectionsPerServer = 1024,
        };
        Client = new HttpClient(handler) { BaseAddress = new Uri($"https://localhost:{Port}"), Timeout = TimeSpan.FromSeconds(30) };
    }

    public CertificateBundle Bundle { get; }

    public string CertificateFile { get; }

    public string KeyFile { get; }

    public int Port { get; }

    public int MetricsPort { get; }

    public HttpClient Client { get; }

    public static async Task<WebhookFixture> StartAsync(InjectorSettings? settings = null)
    {
        var fixture = new WebhookFixture(settings ?? new InjectorSettings());
        await fixture._app.StartAsync();
        return fixture;
    }

    public Task<string> GetMetricsAsync(string path = "/metrics") =>
        new HttpClient().GetStringAsync($"http://127.0.0.1:{MetricsPort}{path}");

    private static int FreePort() => BackendTls.Tests.Shared.ExternalProcess.FreePort();

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        Directory.Delete(_directory, true);
    }
}
