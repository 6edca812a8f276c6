using BackendTls.Tests.Shared;
using System.Net;
using BackendTls.Policy.Rendering;
using BackendTls.Sidecar.Hosting;

namespace BackendTls.Tests.Support;

/// <summary>
/// An in-process sidecar on loopback with its own config directory. Tests write the config (rendered from
/// manifests, the way users do), start it, and talk plain HTTP to it.
/// </summary>
internal sealed class SidecarFixture : IAsyncDisposable
{
    private WebApplication? _app;

    public SidecarFixture()
    {
        ConfigDir = Directory.CreateTempSubdirectory("backendtls-test-").FullName;
        ListenPort = FreePort();
        AdminPort = FreePort();
        Client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
    }

    public string ConfigDir { get; }

    public int ListenPort { get; }

    public int AdminPort { get; }

    public HttpClient Client { get; }

    public Dictionary<string, string> Resolve { get; } = new(StringComparer.OrdinalIgnoreCase);

    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan RequestHeadersTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan ResponseTimeout { get; init; } = TimeSpan.FromSeconds(60);

    public TimeSpan BodyIdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>A mounted kubernetes.io/tls Secret's directory, presented to backends (mutual TLS).</summary>
    public string? ClientCertificateDir { get; init; }

    public string ProxyUrl => $"http://127.0.0.1:{ListenPort}";

    public string AdminUrl => $"http://127.0.0.1:{AdminPort}";

    /// <summary>Renders manifests into the config directory, as <c>backendtls-sidecar render -o</c> does.</summary>
    public RenderResult Render(string yaml)
    {
        var result = PolicyRenderer.RenderYaml([("test.yaml", yaml)]);
        WriteFiles(result.Files);
        return result;
    }

    public void WriteFiles(IReadOnlyDictionary<string, string> files) =>
        BackendTls.Sidecar.Cli.RenderCommand.WriteDirectory(ConfigDir, files);

    public async Task StartAsync()
    {
        var options = new SidecarOptions
        {
            ConfigDir = ConfigDir,
            Listen = new IPEndPoint(IPAddress.Loopback, ListenPort),
            Admin = new IPEndPoint(IPAddress.Loopback, AdminPort),
            Resolve = Resolve,
            HandshakeTimeout = HandshakeTimeout,
            ConnectTimeout = ConnectTimeout,
            RequestHeadersTimeout = RequestHeadersTimeout,
            DrainTimeout = DrainTimeout,
            ResponseTimeout = ResponseTimeout,
            BodyIdleTimeout = BodyIdleTimeout,
            ClientCertificateDir = ClientCertificateDir,
            ReloadPollInterval = TimeSpan.FromMilliseconds(200),
            LogLevel = LogLevel.Warning,
        };
        _app = SidecarHost.Build(options, logging => logging.ClearProviders());
        await _app.StartAsync();
    }

    /// <summary>
    /// The common case: one policy (Service <c>svc</c> port 8443, CA ConfigMap <c>root-ca</c>) whose Service
    /// name resolves to a backend on loopback; rendered, then started.
    /// </summary>
    public async Task StartForBackendAsync(int backendPort, string caPem, string hostname = "abc.example.com", string? extraValidation = null, string? options = null)
    {
        var rendered = Render(Manifests.Service("svc") + Manifests.CaConfigMap("root-ca", caPem) + Manifests.Policy("p", "svc", hostname, extraValidation: extraValidation, options: options));
        Assert.All(rendered.Policies, p => Assert.True(p.IsAccepted, p.Accepted.Message));
        Resolve["svc.default.svc.cluster.local:8443"] = $"127.0.0.1:{backendPort}";
        await StartAsync();
    }

    /// <summary>Stops the host the way SIGTERM does (stop accepting, drain in-flight requests).</summary>
    public async Task StopAsync()
    {
        await _app!.StopAsync();
        await _app.DisposeAsync();
        _app = null;
    }

    /// <summary>Sends a GET with the given Host header through the sidecar.</summary>
    public async Task<HttpResponseMessage> GetAsync(string host, string path = "/")
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, ProxyUrl + path);
        request.Headers.Host = host;
        return await Client.SendAsync(request);
    }

    public Task<string> MetricsAsync() => Client.GetStringAsync(AdminUrl + "/metrics");

    /// <summary>Waits (bounded) until the condition holds, polling; fails the test with the message otherwise.</summary>
    public static async Task EventuallyAsync(Func<Task<bool>> condition, string message, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return;
            }

            await Task.Delay(50);
        }

        Assert.Fail("timed out: " + message);
    }

    public static int FreePort() => BackendTls.Tests.Shared.ExternalProcess.FreePort();

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        Client.Dispose();
        Directory.Delete(ConfigDir, recursive: true);
    }
}
