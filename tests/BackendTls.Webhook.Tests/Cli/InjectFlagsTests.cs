using BackendTls.Policy.Cli;
using BackendTls.Webhook.Cli;
using BackendTls.Webhook.Hosting;
using BackendTls.Webhook.Injection;

namespace BackendTls.Webhook.Tests.Cli;

/// <summary>The injector's flags are validated once at start, for serve and inject alike, every problem at once.</summary>
public sealed class InjectFlagsTests : IDisposable
{
    private readonly string _pod = Path.Combine(Path.GetTempPath(), $"pod-{Guid.NewGuid():N}.yaml");

    public InjectFlagsTests() => File.WriteAllText(_pod, "apiVersion: v1\nkind: Pod\nmetadata: {name: gw}\nspec:\n  containers: [{name: gw, image: nginx}]\n");

    public void Dispose() => File.Delete(_pod);

    [Fact]
    public void Inject_BadQuantity_Exit2_NamesTheFlag_NoCrash()
    {
        var stderr = new StringWriter();

        var code = InjectCommand.Run(["--cpu-request", "lots", "--memory-limit=huge", "-f", _pod], new StringReader(""), new StringWriter(), stderr);

        Assert.Equal(2, code);
        Assert.Contains("inject: --cpu-request \"lots\" is not a positive Kubernetes quantity", stderr.ToString(), StringComparison.Ordinal);
        Assert.Contains("inject: --memory-limit \"huge\" is not a positive Kubernetes quantity", stderr.ToString(), StringComparison.Ordinal);
        Assert.Contains("backendtls-webhook inject -f FILE", stderr.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Inject_GoodFlags_BothSpellings_Inject()
    {
        var stdout = new StringWriter();

        var code = InjectCommand.Run(["--cpu-request=100m", "--memory-limit", "none", "--filename", _pod], new StringReader(""), stdout, new StringWriter());

        Assert.Equal(0, code);
        var pod = BackendTls.Policy.Yaml.YamlDocuments.Parse(stdout.ToString(), "out")[0];
        var resources = pod["spec"]!["initContainers"]!.AsArray().Single(c => (string?)c!["name"] == InjectorSettings.ContainerName)!["resources"]!;
        Assert.Equal("100m", (string?)resources["requests"]!["cpu"]);
        Assert.Null(resources["limits"]?["memory"]);
    }

    [Fact]
    public void Serve_BadValues_RefusedAtStart_AllAtOnce()
    {
        var e = Assert.Throws<OptionsException>(() => WebhookOptions.Parse(["--cpu-request", "lots", "--resync", "0", "--native-sidecar", "maybe"], _ => null));

        Assert.Equal(3, e.Problems.Count);
        Assert.Contains(e.Problems, p => p.Contains("--native-sidecar \"maybe\" is not true or false", StringComparison.Ordinal));
    }

    [Fact]
    public void Serve_PodNamespace_IsTheWebhookNamespace_UnlessAFlagSaysOtherwise()
    {
        Assert.Equal("tls", WebhookOptions.Parse([], n => n == "POD_NAMESPACE" ? "tls" : null).Injector.WebhookNamespace);
        Assert.Equal("x", WebhookOptions.Parse(["--webhook-namespace", "x"], n => n == "POD_NAMESPACE" ? "tls" : null).Injector.WebhookNamespace);
    }
}
