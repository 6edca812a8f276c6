using BackendTls.Policy.Yaml;
using BackendTls.Sidecar.Hosting;
using BackendTls.Tests.Support;

namespace BackendTls.Tests.Policy;

public class ExampleManifestTests
{
    [Fact]
    public void GatewayExample_SidecarArgsAreAcceptedByTheSidecar()
    {
        var path = Path.Combine(TestPaths.RepositoryRoot, "manifests", "examples", "gateway-with-sidecar.yaml");
        var documents = YamlDocuments.Parse(File.ReadAllText(path), path);
        var deployment = Assert.Single(documents, d => (string?)d["kind"] == "Deployment");
        var sidecar = deployment["spec"]!["template"]!["spec"]!["initContainers"]!.AsArray()
            .Single(c => (string?)c!["name"] == "backendtls-proxy")!;
        var args = sidecar["args"]!.AsArray().Select(a => (string)a!).ToList();

        Assert.Equal("run", args[0]);
        var options = SidecarOptions.Parse(args.Skip(1).ToList(), _ => null);
        var mount = sidecar["volumeMounts"]!.AsArray().Select(m => (string?)m!["mountPath"]).Single();
        Assert.Equal(mount, options.ConfigDir);
        Assert.Equal(options.Admin.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), (string?)sidecar["readinessProbe"]!["httpGet"]!["port"]);
        Assert.Equal("Always", (string?)sidecar["restartPolicy"]);
        Assert.True(System.Net.IPAddress.IsLoopback(options.Listen.Address));
    }
}
