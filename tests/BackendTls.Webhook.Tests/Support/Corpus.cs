using System.Text.Json.Nodes;
using BackendTls.Policy.Yaml;

namespace BackendTls.Webhook.Tests.Support;

internal static class Corpus
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "Corpus");

    public static IEnumerable<object[]> GatewayPods =>
        System.IO.Directory.GetFiles(Directory, "*.yaml").Select(f => new object[] { Path.GetFileName(f) });

    public static JsonObject Load(string file) =>
        YamlDocuments.Parse(File.ReadAllText(Path.Combine(Directory, file)), file, typedScalars: true)[0].AsObject();

    /// <summary>The repository root (holds Sidecar.sln), and ../shared beside it.</summary>
    public static string RepositoryRoot => BackendTls.Tests.Shared.Repository.Root;
}
