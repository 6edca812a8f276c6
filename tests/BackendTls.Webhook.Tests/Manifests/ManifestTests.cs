using System.Text.Json.Nodes;
using BackendTls.Policy.Yaml;
using BackendTls.Webhook.Hosting;
using BackendTls.Webhook.Tests.Support;
using k8s;
using k8s.Models;

namespace BackendTls.Webhook.Tests.Manifests;

/// <summary>
/// kubectl cannot validate without an API server, so every manifest is checked here against the Kubernetes
/// models: each object must survive a round trip through its typed model unchanged (a misspelt or misplaced
/// field would be dropped and show up as a difference), and the webhook configuration's selectors must
/// send exactly the pods that want the sidecar.
/// </summary>
public class ManifestTests
{
    private static readonly string Root = Path.Combine(Corpus.RepositoryRoot, "manifests");

    private static readonly Dictionary<string, Type> Models = new(StringComparer.Ordinal)
    {
        ["v1/Namespace"] = typeof(V1Namespace),
        ["v1/ServiceAccount"] = typeof(V1ServiceAccount),
        ["v1/Service"] = typeof(V1Service),
        ["v1/ConfigMap"] = typeof(V1ConfigMap),
        ["apps/v1/Deployment"] = typeof(V1Deployment),
        ["policy/v1/PodDisruptionBudget"] = typeof(V1PodDisruptionBudget),
        ["rbac.authorization.k8s.io/v1/ClusterRole"] = typeof(V1ClusterRole),
        ["rbac.authorization.k8s.io/v1/ClusterRoleBinding"] = typeof(V1ClusterRoleBinding),
        ["rbac.authorization.k8s.io/v1/Role"] = typeof(V1Role),
        ["rbac.authorization.k8s.io/v1/RoleBinding"] = typeof(V1RoleBinding),
        ["admissionregistration.k8s.io/v1/MutatingWebhookConfiguration"] = typeof(V1MutatingWebhookConfiguration),
    };

    public static IEnumerable<object[]> ManifestFiles =>
        Directory.GetFiles(Root, "*.yaml", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f) != "kustomization.yaml")
            .Select(f => new object[] { Path.GetRelativePath(Root, f) });

    private static IReadOnlyList<JsonNode> Load(string relative) =>
        YamlDocuments.Parse(File.ReadAllText(Path.Combine(Root, relative)), relative, typedScalars: true);

    [Theory]
    [MemberData(nameof(ManifestFiles))]
    public void EveryObject_IsAValidObjectOfItsKind(string file)
    {
        foreach (var document in Load(file))
        {
            var key = $"{(string?)document["apiVersion"]}/{(string?)document["kind"]}";
            if (key.StartsWith("cert-manager.io/v1/", StringComparison.Ordinal))
            {
                Assert.NotNull(document["metadata"]?["name"]);
                Assert.NotNull(document["spec"]);
                continue;
            }

            Assert.True(Models.TryGetValue(key, out var type), $"{file}: {key} is not a kind this test knows; add its model");
            var roundTrip = JsonNode.Parse(KubernetesJson.Serialize(Deserialize(document, type)))!;
            var missing = Missing(document, roundTrip, "").ToList();
            Assert.True(missing.Count == 0, $"{file}: {key} fields not in the Kubernetes model (typo or wrong place): {string.Join(", ", missing)}");
        }
    }

    private static object Deserialize(JsonNode document, Type type)
    {
        var method = typeof(KubernetesJson).GetMethods().Single(m => m.Name == nameof(KubernetesJson.Deserialize) && m.IsGenericMethod
            && m.GetParameters().Length == 2 && m.GetParameters()[0].ParameterType == typeof(string));
        return method.MakeGenericMethod(type).Invoke(null, [document.ToJsonString(), null])!;
    }

    /// <summary>Paths present in the manifest but lost in the typed round trip.</summary>
    private static IEnumerable<string> Missing(JsonNode? original, JsonNode? roundTrip, string path)
    {
        switch (original)
        {
            case JsonObject obj:
                foreach (var (name, value) in obj)
                {
                    var next = roundTrip is JsonObject other && other.TryGetPropertyValue(name, out var v) ? v : null;
                    if (next is null && value is not null && !(value is JsonObject { Count: 0 }))
                    {
                        yield return $"{path}/{name}";
                        continue;
                    }

                    foreach (var missing in Missing(value, next, $"{path}/{name}"))
                    {
                        yield return missing;
                    }
                }

                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    foreach (var missing in Missing(array[i], roundTrip is JsonArray a && i < a.Count ? a[i] : null, $"{path}/{i}"))
                    {
                        yield return missing;
                    }
                }

                break;
        }
    }

    [SkippableTheory]
    [InlineData("overlays/cert-manager", "files")]
    [InlineData("overlays/self-managed", "self-managed")]
    public async Task Overlay_BuildsWithKustomize_ToValidObjects_WithTheRightCertificateMode(string overlay, string mode)
    {
        Skip.IfNot(BackendTls.Tests.Shared.ExternalProcess.OnPath("kubectl"), "kubectl is not installed (kubectl kustomize builds the overlays)");
        var (code, output) = await BackendTls.Tests.Shared.ExternalProcess.RunAsync("kubectl", ["kustomize", Path.Combine(Root, overlay)]);
        Assert.True(code == 0, output);
        var documents = YamlDocuments.Parse(output, overlay, typedScalars: true);

        foreach (var document in documents.Where(d => !((string?)d["apiVersion"])!.StartsWith("cert-manager.io/", StringComparison.Ordinal)))
        {
            var key = $"{(string?)document["apiVersion"]}/{(string?)document["kind"]}";
            var roundTrip = JsonNode.Parse(KubernetesJson.Serialize(Deserialize(document, Models[key])))!;
            Assert.Empty(Missing(document, roundTrip, key));
        }

        var deployment = KubernetesJson.Deserialize<V1Deployment>(documents.Single(d => (string?)d["kind"] == "Deployment").ToJsonString());
        var args = deployment.Spec.Template.Spec.Containers.Single().Args.Skip(1).SelectMany(a => a.Split('=', 2)).ToList();
        Assert.Equal(mode, WebhookOptions.Parse(args, _ => null).CertificateMode);
        Assert.All(documents.Where(d => d["metadata"]?["namespace"] is not null), d => Assert.Equal("backendtls-system", (string?)d["metadata"]!["namespace"]));
    }

    [Theory]
    [InlineData("base")]
    [InlineData("overlays/cert-manager")]
    [InlineData("overlays/self-managed")]
    public void Kustomizations_ReferenceFilesThatExist_AndPatchObjectsThatExist(string directory)
    {
        var kustomization = Load(Path.Combine(directory, "kustomization.yaml")).Single();
        var objects = new List<(string Kind, string Name)>();
        foreach (var resource in kustomization["resources"]!.AsArray().Select(r => (string)r!))
        {
            var path = Path.GetFullPath(Path.Combine(Root, directory, resource));
            if (Directory.Exists(path))
            {
                Assert.True(File.Exists(Path.Combine(path, "kustomization.yaml")), $"{directory}: {resource} has no kustomization.yaml");
                objects.AddRange(Directory.GetFiles(path, "*.yaml").Where(f => !f.EndsWith("kustomization.yaml", StringComparison.Ordinal))
                    .SelectMany(f => YamlDocuments.Parse(File.ReadAllText(f), f, true)).Select(d => ((string)d["kind"]!, (string)d["metadata"]!["name"]!)));
            }
            else
            {
                Assert.True(File.Exists(path), $"{directory}: resource {resource} does not exist");
                objects.AddRange(Load(Path.GetRelativePath(Root, path)).Select(d => ((string)d["kind"]!, (string)d["metadata"]!["name"]!)));
            }
        }

        foreach (var patch in kustomization["patches"]?.AsArray() ?? [])
        {
            Assert.True(File.Exists(Path.Combine(Root, directory, (string)patch!["path"]!)), $"{directory}: patch {(string?)patch["path"]} missing");
            var target = ((string)patch["target"]!["kind"]!, (string)patch["target"]!["name"]!);
            Assert.Contains(target, objects);
        }
    }

    [Theory]
    [InlineData("base/deployment.yaml")]
    [InlineData("overlays/cert-manager/deployment-certificate-volume.yaml")]
    [InlineData("overlays/self-managed/deployment-self-managed.yaml")]
    public void WebhookArgs_AreAcceptedByTheWebhook(string file)
    {
        var container = Load(file).Single()["spec"]!["template"]!["spec"]!["containers"]![0]!;
        var args = container["args"]!.AsArray().Select(a => (string)a!).ToList();
        Assert.Equal("serve", args[0]);

        var options = WebhookOptions.Parse(args.Skip(1).SelectMany(a => a.Split('=', 2)).ToList(), _ => null);

        Assert.Equal(8443, options.Listen.Port);
    }

    [Fact]
    public void Deployment_IsHighlyAvailableAndHardened()
    {
        var deployment = KubernetesJson.Deserialize<V1Deployment>(Load("base/deployment.yaml").Single().ToJsonString());
        var pod = deployment.Spec.Template.Spec;
        var container = pod.Containers.Single();

        Assert.Equal(2, deployment.Spec.Replicas);
        Assert.NotNull(pod.Affinity.PodAntiAffinity);
        Assert.True(pod.SecurityContext.RunAsNonRoot);
        Assert.Equal("RuntimeDefault", pod.SecurityContext.SeccompProfile.Type);
        Assert.False(container.SecurityContext.AllowPrivilegeEscalation);
        Assert.True(container.SecurityContext.ReadOnlyRootFilesystem);
        Assert.Equal(["ALL"], container.SecurityContext.Capabilities.Drop);
        Assert.NotNull(container.ReadinessProbe);
        Assert.NotNull(container.LivenessProbe);
        Assert.Equal("disabled", deployment.Spec.Template.Metadata.Labels["backendtls.io/inject"]);
        var pdb = KubernetesJson.Deserialize<V1PodDisruptionBudget>(Load("base/poddisruptionbudget.yaml").Single().ToJsonString());
        Assert.Equal("1", pdb.Spec.MinAvailable.Value);
    }

    private static V1MutatingWebhookConfiguration WebhookConfiguration() =>
        KubernetesJson.Deserialize<V1MutatingWebhookConfiguration>(Load("base/mutatingwebhookconfiguration.yaml").Single().ToJsonString());

    [Fact]
    public void WebhookConfiguration_SafeSettings()
    {
        foreach (var webhook in WebhookConfiguration().Webhooks)
        {
            Assert.Equal("Fail", webhook.FailurePolicy);
            Assert.InRange(webhook.TimeoutSeconds!.Value, 1, 5);
            Assert.Equal("IfNeeded", webhook.ReinvocationPolicy);
            Assert.Equal("None", webhook.SideEffects);
            Assert.Equal(["v1"], webhook.AdmissionReviewVersions);
            Assert.Equal("Equivalent", webhook.MatchPolicy);
            var rule = webhook.Rules.Single();
            Assert.Equal(["CREATE"], rule.Operations);
            Assert.Equal(["pods"], rule.Resources);
            Assert.Equal("/mutate", webhook.ClientConfig.Service.Path);
        }
    }

    [Theory]
    // namespace label, namespace name, pod label, should the API server call the webhook?
    [InlineData("enabled", "shop", null, true)]
    [InlineData("enabled", "shop", "enabled", true)]
    [InlineData("enabled", "shop", "disabled", false)]
    [InlineData(null, "shop", null, false)]
    [InlineData(null, "shop", "enabled", true)]
    [InlineData(null, "shop", "disabled", false)]
    [InlineData("disabled", "shop", "enabled", true)]
    [InlineData("enabled", "kube-system", null, false)]
    [InlineData(null, "kube-system", "enabled", false)]
    [InlineData(null, "kube-public", "enabled", false)]
    [InlineData(null, "kube-node-lease", "enabled", false)]
    [InlineData("enabled", "backendtls-system", "enabled", false)]
    public void Selectors_SendExactlyThePodsThatWantTheSidecar(string? namespaceLabel, string namespaceName, string? podLabel, bool called)
    {
        var namespaceLabels = new Dictionary<string, string> { ["kubernetes.io/metadata.name"] = namespaceName };
        if (namespaceLabel is not null)
        {
            namespaceLabels["backendtls.io/inject"] = namespaceLabel;
        }

        var podLabels = podLabel is null ? new Dictionary<string, string>() : new Dictionary<string, string> { ["backendtls.io/inject"] = podLabel };
        var matching = WebhookConfiguration().Webhooks
            .Where(w => LabelSelectors.Matches(w.NamespaceSelector, namespaceLabels) && LabelSelectors.Matches(w.ObjectSelector, podLabels))
            .ToList();

        Assert.True(matching.Count <= 1, "a pod must never be sent to two entries (it would be injected twice)");
        Assert.Equal(called, matching.Count == 1);
    }
}
