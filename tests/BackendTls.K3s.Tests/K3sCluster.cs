using System.Text;
using k8s;
using Testcontainers.K3s;

namespace BackendTls.K3s.Tests;

/// <summary>
/// One k3s API server for the test class, or the one-line reason there is none (no Docker engine, or the
/// rancher/k3s image cannot be pulled, as on a machine that reaches no container registry).
/// </summary>
public sealed class K3sCluster : IAsyncLifetime
{
    public const string Image = "rancher/k3s:v1.33.4-k3s1";
    private K3sContainer? _container;

    public IKubernetes? Client { get; private set; }

    public string? Kubeconfig { get; private set; }

    /// <summary>The k3s container, for `docker cp`/`docker exec` (image import).</summary>
    public string? ContainerId => _container?.Id;

    /// <summary>Why the tests skip; null when a cluster is up.</summary>
    public string? Unavailable { get; private set; }

    public async Task InitializeAsync()
    {
        // The Debian engine speaks Docker API 1.41, and there is no Ryuk image without a registry.
        Environment.SetEnvironmentVariable("DOCKER_API_VERSION", Environment.GetEnvironmentVariable("DOCKER_API_VERSION") ?? "1.41");
        Environment.SetEnvironmentVariable("TESTCONTAINERS_RYUK_DISABLED", Environment.GetEnvironmentVariable("TESTCONTAINERS_RYUK_DISABLED") ?? "true");
        if (!File.Exists("/var/run/docker.sock") && Environment.GetEnvironmentVariable("DOCKER_HOST") is null)
        {
            Unavailable = "no Docker engine (start one to run the k3s tests)";
            return;
        }

        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(180));
            _container = new K3sBuilder(Image).Build();
            await _container.StartAsync(timeout.Token);
            Kubeconfig = await _container.GetKubeconfigAsync();
            using var stream = new MemoryStream(Encoding.UTF8.GetBytes(Kubeconfig));
            Client = new Kubernetes(await KubernetesClientConfiguration.BuildConfigFromConfigFileAsync(stream));
        }
        catch (Exception e)
        {
            Unavailable = $"k3s ({Image}) could not be started here: {FirstLine(e)}";
        }
    }

    private static string FirstLine(Exception e)
    {
        while (e.InnerException is not null && e.Message.Length < 20)
        {
            e = e.InnerException;
        }

        var line = e.Message.Split('\n')[0].Trim();
        return line.Length > 160 ? line[..160] + "..." : line;
    }

    public async Task DisposeAsync()
    {
        Client?.Dispose();
        if (_container is not null)
        {
            await _container.DisposeAsync();
        }
    }
}
