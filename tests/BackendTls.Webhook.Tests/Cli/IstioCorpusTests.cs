using System.Text.Json.Nodes;
using BackendTls.Policy.Yaml;
using BackendTls.Webhook.Cli;
using BackendTls.Webhook.Injection;
using BackendTls.Webhook.Tests.Support;
using k8s;
using k8s.Models;

namespace BackendTls.Webhook.Tests.Cli;

/// <summary>
/// The 98 workload shapes of Istio's injection tests (../shared/reference/workloads/istio-inject-inputs):
/// every one must come out as valid objects, and injecting twice must equal injecting once.
/// </summary>
public class IstioCorpusTests
{
    private static readonly string InputDirectory =
        Path.Combine(Corpus.RepositoryRoot, "..", "shared", "reference", "workloads", "istio-inject-inputs");

    public static IEnumerable<object[]> Inputs =>
        Directory.Exists(InputDirectory)
            ? Directory.GetFiles(InputDirectory, "*.yaml").Order(StringComparer.Ordinal).Select(f => new object[] { Path.GetFileName(f) })
            : [new object[] { "(missing)" }];

    [SkippableTheory]
    [MemberData(nameof(Inputs))]
    public void Input_InjectsToValidObjects_Idempotently(string file)
    {
        Skip.If(file == "(missing)", $"{InputDirectory} is not present");
        var documents = YamlDocuments.Parse(File.ReadAllText(Path.Combine(InputDirectory, file)), file, typedScalars: true);
        Assert.NotEmpty(documents);
        var settings = new InjectorSettings();

        foreach (var document in documents)
        {
            var once = InjectCommand.InjectDocument(document, settings);
            var twice = InjectCommand.InjectDocument(once.Document, settings);

            Assert.True(JsonNode.DeepEquals(once.Document, twice.Document), $"{file}: injecting twice differs from once");
            foreach (var template in PodTemplates(once.Document))
            {
                var pod = KubernetesJson.Deserialize<V1PodTemplateSpec>(template.ToJsonString());
                var hostNetwork = pod.Spec.HostNetwork == true;
                var optedOut = pod.Metadata?.Labels?.TryGetValue(InjectionLabels.Inject, out var label) == true && label == InjectionLabels.Disabled;
                var injected = (pod.Spec.InitContainers ?? []).Concat(pod.Spec.Containers).Count(c => c.Name == InjectorSettings.ContainerName);
                Assert.Equal(hostNetwork || optedOut ? 0 : 1, injected);
                if (injected == 1)
                {
                    Assert.Single(pod.Spec.Volumes, v => v.Name == InjectorSettings.VolumeName);
                    Assert.NotNull(InjectionStatus.TryParse(pod.Metadata!.Annotations[InjectionLabels.Status]));
                }
            }

            // The whole document must still read as its Kubernetes type.
            ReadTyped(once.Document);
            // The YAML we print must read back to the same objects.
            var reparsed = YamlDocuments.Parse(YamlDocuments.ToYaml(once.Document), file, typedScalars: true).Single();
            Assert.True(JsonNode.DeepEquals(once.Document, reparsed), $"{file}: YAML output does not read back the same");
        }
    }

    private static IEnumerable<JsonObject> PodTemplates(JsonNode document)
    {
        var kind = (string?)document["kind"];
        if (kind is not null && kind.EndsWith("List", StringComparison.Ordinal) && document["items"] is JsonArray items)
        {
            return items.SelectMany(i => PodTemplates(i!));
        }

        var template = kind switch
        {
            "Pod" => document,
            "CronJob" => document["spec"]?["jobTemplate"]?["spec"]?["template"],
            "Deployment" or "StatefulSet" or "DaemonSet" or "ReplicaSet" or "ReplicationController" or "Job" or "DeploymentConfig" => document["spec"]?["template"],
            _ => null,
        };
        return template is JsonObject obj ? [obj] : [];
    }

    private static void ReadTyped(JsonNode document)
    {
        var json = document.ToJsonString();
        _ = (string?)document["kind"] switch
        {
            "Pod" => (object)KubernetesJson.Deserialize<V1Pod>(json),
            "Deployment" => KubernetesJson.Deserialize<V1Deployment>(json),
            "StatefulSet" => KubernetesJson.Deserialize<V1StatefulSet>(json),
            "DaemonSet" => KubernetesJson.Deserialize<V1DaemonSet>(json),
            "ReplicaSet" => KubernetesJson.Deserialize<V1ReplicaSet>(json),
            "ReplicationController" => KubernetesJson.Deserialize<V1ReplicationController>(json),
            "Job" => KubernetesJson.Deserialize<V1Job>(json),
            "CronJob" => KubernetesJson.Deserialize<V1CronJob>(json),
            _ => document,
        };
    }
}
