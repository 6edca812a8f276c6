using System.Text.Json.Nodes;
using BackendTls.Policy.Rendering;
using BackendTls.Policy.Yaml;
using BackendTls.Webhook.Certificates;
using BackendTls.Webhook.Controller;
using BackendTls.Webhook.Injection;
using BackendTls.Webhook.Tests.Support;

namespace BackendTls.Webhook.Tests.Controller;

/// <summary>
/// The controller's reconcile as a pure function, on the Gateway API v1.6.1 conformance manifests and the
/// scenarios of ../shared/research/backendtls.md §2 and §7 that apply to a sidecar.
/// </summary>
public class PolicyReconcilerTests
{
    private static readonly string CaPem = ServingCertificates.CreateCaAndServing(["ca.test"], DateTimeOffset.UtcNow).CaCertificatePem;
    private static readonly DateTimeOffset Now = new(2026, 11, 26, 12, 0, 0, TimeSpan.Zero);
    private const string Infra = "gateway-conformance-infra";

    /// <summary>A conformance manifest from ../shared; where the checkout has none beside it, the test skips saying so.</summary>
    private static string Conformance(string file)
    {
        var path = Path.Combine(Corpus.RepositoryRoot, "..", "shared", "reference", "gateway-api", "conformance-v1.6.1", file);
        Skip.IfNot(File.Exists(path), $"{path} is not present (the Gateway API conformance manifests live in ../shared beside the checkout)");
        return File.ReadAllText(path);
    }

    private static string CaConfigMap(string name, string? pem = null, string ns = Infra) => $$"""
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: {{name}}, namespace: {{ns}}}
        data:
          ca.crt: {{System.Text.Json.JsonSerializer.Serialize(pem ?? CaPem)}}
        ---

        """;

    private static List<KubeObject> Objects(params string[] yaml) =>
        yaml.SelectMany((y, i) => KubeObject.FromDocuments(YamlDocuments.Parse(y, $"in{i}"), $"in{i}")).ToList();

    private static ReconcileResult Reconcile(IReadOnlyList<KubeObject> objects, params string[] injected) =>
        PolicyReconciler.Reconcile(new ClusterState(objects, injected.ToHashSet()), "backendtls-policy", Now);

    private static JsonObject Ours(ReconcileResult result, string policy, string ns = Infra) =>
        Assert.Single(result.Statuses.Single(s => s.Name == policy && s.Namespace == ns).Status["ancestors"]!.AsArray(),
            a => (string?)a!["controllerName"] == PolicyReconciler.ControllerName)!.AsObject();

    private static (string Status, string Reason) Condition(JsonObject ancestor, string type)
    {
        var condition = ancestor["conditions"]!.AsArray().Single(c => (string?)c!["type"] == type)!;
        return ((string)condition["status"]!, (string)condition["reason"]!);
    }

    [SkippableFact]
    public void ValidPolicy_AcceptedAndResolved_OnTheServiceAncestor_RenderedIntoEveryInjectedNamespace()
    {
        var result = Reconcile(Objects(Conformance("backendtlspolicy.yaml"), CaConfigMap("tls-checks-ca-certificate"), CaConfigMap("mismatch-ca-certificate")),
            "gateway", "edge");

        var ancestor = Ours(result, "normative-test");
        Assert.Equal(("True", "Accepted"), Condition(ancestor, "Accepted"));
        Assert.Equal(("True", "ResolvedRefs"), Condition(ancestor, "ResolvedRefs"));
        Assert.Equal("Service", (string?)ancestor["ancestorRef"]!["kind"]);
        Assert.Equal("backendtlspolicy-test", (string?)ancestor["ancestorRef"]!["name"]);
        Assert.Equal(["edge", "gateway"], result.ConfigMaps.Select(c => c.Namespace));
        Assert.All(result.ConfigMaps, c => Assert.Contains("abc.example.com", c.Data["backendtls.yaml"], StringComparison.Ordinal));
        // Runtime failures (hostname or CA mismatch) are not config errors: those policies stay Accepted.
        Assert.Equal("True", Condition(Ours(result, "host-mismatch"), "Accepted").Status);
        Assert.Equal("True", Condition(Ours(result, "cert-mismatch"), "Accepted").Status);
    }

    [SkippableTheory]
    [InlineData("nonexistent-ca-certificate-ref")]
    [InlineData("malformed-ca-certificate-ref")]
    public void InvalidCaRef_NoValidCACertificate_InvalidCACertificateRef_FailClosed(string policy)
    {
        var result = Reconcile(Objects(Conformance("backendtlspolicy-invalid-ca-certificate-ref.yaml")), "gateway");

        var ancestor = Ours(result, policy);
        Assert.Equal(("False", "NoValidCACertificate"), Condition(ancestor, "Accepted"));
        Assert.Equal(("False", "InvalidCACertificateRef"), Condition(ancestor, "ResolvedRefs"));
        Assert.Contains("invalidCaCertificateRefs", result.ConfigMaps.Single().Data["backendtls.yaml"], StringComparison.Ordinal);
        Assert.Contains(result.Events, e => e.Regarding.Name == policy && e.Type == "Warning" && e.Reason == "NoValidCACertificate");
    }

    [SkippableFact]
    public void InvalidKind_ResolvedRefsInvalidKind()
    {
        var ancestor = Ours(Reconcile(Objects(Conformance("backendtlspolicy-invalid-kind.yaml"))), "invalid-kind");

        Assert.Equal(("False", "NoValidCACertificate"), Condition(ancestor, "Accepted"));
        Assert.Equal(("False", "InvalidKind"), Condition(ancestor, "ResolvedRefs"));
    }

    [SkippableFact]
    public void Conflicts_LoserConflicted_SectionNameAndWholeServiceBothAccepted()
    {
        var result = Reconcile(Objects(Conformance("backendtlspolicy-conflict-resolution.yaml"), CaConfigMap("tls-checks-ca-certificate")));

        Assert.Equal(("False", "Conflicted"), Condition(Ours(result, "conflicted-without-section-name-2"), "Accepted"));
        Assert.Equal(("False", "Conflicted"), Condition(Ours(result, "conflicted-with-section-name-2"), "Accepted"));
        Assert.Equal(("True", "Accepted"), Condition(Ours(result, "conflicted-without-section-name-1"), "Accepted"));
        Assert.Equal(("True", "Accepted"), Condition(Ours(result, "not-conflicted-with-section-name"), "Accepted"));
        Assert.Equal(("True", "Accepted"), Condition(Ours(result, "not-conflicted-without-section-name"), "Accepted"));
    }

    [SkippableFact]
    public void San_AllAccepted()
    {
        var result = Reconcile(Objects(Conformance("backendtlspolicy-san.yaml"), CaConfigMap("tls-checks-ca-certificate")));
        Assert.All(result.Statuses, s => Assert.Equal("True", Condition(Ours(result, s.Name, s.Namespace), "Accepted").Status));
    }

    [SkippableFact]
    public void ObservedGeneration_FollowsMetadataGeneration()
    {
        var yaml = Conformance("backendtlspolicy-observed-generation-bump.yaml").Replace("metadata:\n  name: observed-generation-bump", "metadata:\n  generation: 2\n  name: observed-generation-bump", StringComparison.Ordinal);
        var result = Reconcile(Objects(yaml, CaConfigMap("tls-checks-ca-certificate")));

        Assert.All(result.Statuses.SelectMany(s => s.Status["ancestors"]!.AsArray()).SelectMany(a => a!["conditions"]!.AsArray()),
            c => Assert.True((long)c!["observedGeneration"]! >= 1));
        Assert.Contains(result.Statuses.SelectMany(s => s.Status["ancestors"]!.AsArray()).SelectMany(a => a!["conditions"]!.AsArray()),
            c => (long)c!["observedGeneration"]! == 2);
    }

    [Fact]
    public void ReconcileSequence_MissingThenCreatedThenEmptiedThenRestored()
    {
        var service = """
            apiVersion: v1
            kind: Service
            metadata: {name: svc, namespace: app}
            spec: {ports: [{name: https, port: 443}]}
            ---

            """;
        var policy = """
            apiVersion: gateway.networking.k8s.io/v1
            kind: BackendTLSPolicy
            metadata: {name: p, namespace: app, generation: 1}
            spec:
              targetRefs: [{group: "", kind: Service, name: svc}]
              validation: {caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}], hostname: abc.example.com}
            """;
        (string, string) Step(params string[] extra)
        {
            var ancestor = Ours(Reconcile(Objects([service, policy, .. extra])), "p", "app");
            return (Condition(ancestor, "Accepted").Status, Condition(ancestor, "ResolvedRefs").Status);
        }

        Assert.Equal(("False", "False"), Step());
        Assert.Equal(("True", "True"), Step(CaConfigMap("ca", ns: "app")));
        Assert.Equal(("False", "False"), Step(CaConfigMap("ca", pem: "", ns: "app")));
        Assert.Equal(("True", "True"), Step(CaConfigMap("ca", ns: "app")));
    }

    [SkippableFact]
    public void OtherControllersEntries_Untouched_OursReplaced_LastTransitionKeptWhenUnchanged()
    {
        var objects = Objects(Conformance("backendtlspolicy.yaml"), CaConfigMap("tls-checks-ca-certificate"), CaConfigMap("mismatch-ca-certificate"));
        var first = Reconcile(objects);
        var policy = objects.Single(o => o.Name == "normative-test");
        var other = new JsonObject
        {
            ["ancestorRef"] = new JsonObject { ["group"] = "gateway.networking.k8s.io", ["kind"] = "Gateway", ["name"] = "same-namespace" },
            ["controllerName"] = "gateway.envoyproxy.io/gatewayclass-controller",
            ["conditions"] = new JsonArray(new JsonObject { ["type"] = "Accepted", ["status"] = "True" }),
        };
        var ancestors = first.Statuses.Single(s => s.Name == "normative-test").Status["ancestors"]!.DeepClone().AsArray();
        ancestors.Insert(0, other);
        policy.Root["status"] = new JsonObject { ["ancestors"] = ancestors };

        var later = PolicyReconciler.Reconcile(new ClusterState(objects, new HashSet<string>()), "backendtls-policy", Now.AddHours(1));

        var update = later.Statuses.Single(s => s.Name == "normative-test");
        Assert.False(update.Changed); // nothing to write: no API call, no event
        Assert.True(JsonNode.DeepEquals(other, update.Status["ancestors"]![0]));
        Assert.Equal("2026-11-26T12:00:00Z", (string?)update.Status["ancestors"]![1]!["conditions"]![0]!["lastTransitionTime"]);
        Assert.DoesNotContain(later.Events, e => e.Regarding.Name == "normative-test");
    }

    [Fact]
    public void UdpPort_Invalid_AndPolicyDeleted_TargetGone()
    {
        var service = "apiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: app}\nspec: {ports: [{name: dns, port: 53, protocol: UDP}]}\n---\n";
        var policy = "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: p, namespace: app}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: dns, sectionName: dns}]\n  validation: {wellKnownCACertificates: System, hostname: a.example.com}\n";

        var withPolicy = Reconcile(Objects(service, policy), "gateway");
        var withoutPolicy = Reconcile(Objects(service), "gateway");

        Assert.Equal(("False", "Invalid"), Condition(Ours(withPolicy, "p", "app"), "Accepted"));
        Assert.Contains("UDP", (string?)Ours(withPolicy, "p", "app")["conditions"]![0]!["message"], StringComparison.Ordinal);
        Assert.Contains("targets: []", withoutPolicy.ConfigMaps.Single().Data["backendtls.yaml"], StringComparison.Ordinal);
        Assert.Empty(withoutPolicy.Statuses);
    }

    [SkippableFact]
    public void NoInjectedNamespace_NoConfigMap()
    {
        Assert.Empty(Reconcile(Objects(Conformance("backendtlspolicy-invalid-kind.yaml"))).ConfigMaps);
    }

    [Fact]
    public void AtMost16Ancestors()
    {
        var services = string.Concat(Enumerable.Range(0, 20).Select(i => $"apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: app}}\nspec: {{ports: [{{name: https, port: 443}}]}}\n---\n"));
        var refs = string.Join(", ", Enumerable.Range(0, 16).Select(i => $"{{group: \"\", kind: Service, name: s{i}}}"));
        var policy = $"apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: p, namespace: app}}\nspec:\n  targetRefs: [{refs}]\n  validation: {{wellKnownCACertificates: System, hostname: a.example.com}}\n";
        var objects = Objects(services, policy);
        objects.Single(o => o.Name == "p").Root["status"] = new JsonObject
        {
            ["ancestors"] = new JsonArray(new JsonObject { ["ancestorRef"] = new JsonObject { ["name"] = "gw" }, ["controllerName"] = "other.io/x", ["conditions"] = new JsonArray() }),
        };

        var status = Reconcile(objects).Statuses.Single().Status;

        Assert.Equal(16, status["ancestors"]!.AsArray().Count);
        Assert.Equal("other.io/x", (string?)status["ancestors"]![0]!["controllerName"]);
    }

    private const string TargetWithNamedPort = """
        apiVersion: v1
        kind: Service
        metadata: {name: api, namespace: app}
        spec: {clusterIP: 198.18.200.1, ports: [{name: https, port: 443, targetPort: https}]}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: api-x1, namespace: app, labels: {kubernetes.io/service-name: api}}
        addressType: IPv4
        endpoints: [{addresses: [198.18.2.2]}]
        ports: [{name: https, port: 8443}]
        ---
        apiVersion: gateway.networking.k8s.io/v1
        kind: BackendTLSPolicy
        metadata: {name: api-tls, namespace: app}
        spec:
          targetRefs: [{group: "", kind: Service, name: api}]
          validation: {wellKnownCACertificates: System, hostname: api.example.com}
        """;

    private static InjectedPod Pod(string name, string captureJson, string? deployment = "gateway") =>
        new("edge", name, CaptureConfig.TryParse(captureJson)!,
            deployment is null ? null : new EventSubject("apps/v1", "Deployment", "edge", deployment), deployment is null ? null : $"deployment/{deployment}");

    [Fact]
    public void PolicyOnAPortRunningPodsDoNotCapture_ConditionFalseWithTheRestartCommand_AndANoticeOnEachSuchPod()
    {
        // Pod a started when only 443 was known; pod b captures the Service port and the endpoint port behind it.
        var pods = new[]
        {
            Pod("gateway-7d9-a", """{"mode":"transparent","ports":[443],"proxyUid":15101}"""),
            Pod("gateway-7d9-b", """{"mode":"transparent","ports":[443,8443],"proxyUid":15101}"""),
            Pod("solo", """{"mode":"transparent","ports":[],"proxyUid":15101}""", deployment: null),
        };
        var result = PolicyReconciler.Reconcile(new ClusterState(Objects(TargetWithNamedPort), new HashSet<string> { "edge" }) { Pods = pods }, "backendtls-policy", Now);

        var condition = Ours(result, "api-tls", "app")["conditions"]!.AsArray().Single(c => (string?)c!["type"] == CaptureCoverage.ConditionType)!;
        Assert.Equal(("False", CaptureCoverage.UncapturedReason), ((string)condition["status"]!, (string)condition["reason"]!));
        var message = (string)condition["message"]!;
        Assert.Contains("port 443,8443 of Service app/api", message, StringComparison.Ordinal);
        Assert.Contains("edge/gateway-7d9-a", message, StringComparison.Ordinal);
        Assert.DoesNotContain("gateway-7d9-b", message, StringComparison.Ordinal);
        Assert.Contains("kubectl -n edge rollout restart deployment/gateway", message, StringComparison.Ordinal);
        Assert.Contains("kubectl -n edge delete pod solo", message, StringComparison.Ordinal);

        var notice = Assert.Single(result.Notices, n => n.Regarding.Name == "gateway-7d9-a");
        Assert.Equal(("Pod", "Warning", CaptureCoverage.UncapturedReason), (notice.Regarding.Kind, notice.Type, notice.Reason));
        Assert.Contains("port 8443", notice.Message, StringComparison.Ordinal);
        Assert.Contains("rollout restart deployment/gateway", notice.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(result.Notices, n => n.Regarding.Name == "gateway-7d9-b");
    }

    [Fact]
    public void EveryTransparentPodCaptures_ConditionTrue_AllPortsCountsAsCaptured_ExplicitOnlyGetsNoCondition()
    {
        static ReconcileResult With(params InjectedPod[] pods) =>
            PolicyReconciler.Reconcile(new ClusterState(Objects(TargetWithNamedPort), new HashSet<string> { "edge" }) { Pods = pods }, "backendtls-policy", Now);

        var captured = With(Pod("a", """{"mode":"transparent","ports":[443,8443],"proxyUid":15101}"""), Pod("b", """{"mode":"transparent","allPorts":true,"proxyUid":15101}"""));
        Assert.Equal(("True", CaptureCoverage.CapturedReason), Condition(Ours(captured, "api-tls", "app"), CaptureCoverage.ConditionType));
        Assert.Empty(captured.Notices);

        var explicitOnly = With(Pod("c", """{"mode":"explicit","proxyUid":15101}"""));
        Assert.DoesNotContain(Ours(explicitOnly, "api-tls", "app")["conditions"]!.AsArray(), c => (string?)c!["type"] == CaptureCoverage.ConditionType);
    }

    [Fact]
    public void ExplicitModeFallback_NoticeOnTheOwner_NamingTheReason()
    {
        var pod = Pod("gateway-7d9-a", """{"mode":"explicit","reason":"namespace edge enforces Pod Security \"restricted\", which forbids the NET_ADMIN capability the capture rules need","proxyUid":15101}""");
        var result = PolicyReconciler.Reconcile(new ClusterState(Objects(TargetWithNamedPort), new HashSet<string> { "edge" }) { Pods = [pod] }, "backendtls-policy", Now);

        var notice = Assert.Single(result.Notices);
        Assert.Equal(("Deployment", "gateway", CaptureCoverage.ExplicitModeReason), (notice.Regarding.Kind, notice.Regarding.Name, notice.Reason));
        Assert.Contains("Pod Security \"restricted\"", notice.Message, StringComparison.Ordinal);
        Assert.Contains("127.0.0.1:15001", notice.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ServingCa_WrittenAsIndexCa_AndTheBootstrapIndexHasTheTargetsAddressesButNoEndpoints()
    {
        var result = PolicyReconciler.Reconcile(new ClusterState(Objects(TargetWithNamedPort), new HashSet<string> { "edge" }) { IndexCa = CaPem }, "backendtls-policy", Now);

        var data = Assert.Single(result.ConfigMaps).Data;
        Assert.Equal(CaPem, data[PolicyReconciler.IndexCaFile]);
        // Endpoints churn: they come from the live index, so a rollout rewrites no ConfigMap.
        Assert.Contains("198.18.200.1", data["destinations.json"], StringComparison.Ordinal);
        Assert.DoesNotContain("198.18.2.2", data["destinations.json"], StringComparison.Ordinal);
    }

    [Fact]
    public void ManyTargets_LargeFilesGoGzipCompressed_UnderTheLimit_AndTheSidecarLoadsThem()
    {
        var yaml = string.Concat(Enumerable.Range(0, 1500).Select(i =>
            BackendTls.Tests.Shared.Manifests.Service($"svc-{i}", ns: "app") + BackendTls.Tests.Shared.Manifests.Policy($"p-{i}", $"svc-{i}", $"svc-{i}.example.com", ns: "app")));
        var result = Reconcile(Objects(yaml, CaConfigMap("root-ca", ns: "app")), "edge");

        var configMap = Assert.Single(result.ConfigMaps);
        Assert.Equal(["backendtls.yaml.gz", "destinations.json.gz"], configMap.BinaryData.Keys.Order());
        Assert.DoesNotContain("backendtls.yaml", configMap.Data.Keys);
        Assert.True(configMap.BinaryData.Values.Sum(v => v.Length) + configMap.Data.Values.Sum(v => v.Length) < PolicyReconciler.MaxConfigMapBytes);
        Assert.Single(configMap.Data.Keys, k => k.StartsWith("ca.", StringComparison.Ordinal)); // one CA, named by content

        // As kubelet mounts it: the sidecar's loader reads the compressed file.
        var directory = Directory.CreateTempSubdirectory("gz-configmap-").FullName;
        try
        {
            foreach (var (name, text) in configMap.Data)
            {
                File.WriteAllText(Path.Combine(directory, name), text);
            }

            foreach (var (name, bytes) in configMap.BinaryData)
            {
                File.WriteAllBytes(Path.Combine(directory, name), bytes);
            }

            var loaded = new BackendTls.Policy.Loading.ConfigLoader().Load(new BackendTls.Policy.Loading.ConfigDirectory(directory));
            Assert.True(loaded.Succeeded, string.Join("\n", loaded.Errors));
            Assert.Equal(1500, loaded.Config!.Targets.Count);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
