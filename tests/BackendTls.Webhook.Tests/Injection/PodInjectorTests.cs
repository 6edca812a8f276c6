using System.Text.Json.Nodes;
using BackendTls.Webhook.Injection;
using BackendTls.Webhook.Patching;
using BackendTls.Webhook.Tests.Patching;
using BackendTls.Webhook.Tests.Support;
using k8s;
using k8s.Models;

namespace BackendTls.Webhook.Tests.Injection;

public class PodInjectorTests
{
    // Explicit mode: these cases are about the sidecar itself; TransparentInjectionTests covers capture.
    private static readonly InjectorSettings Defaults = new() { SidecarImage = "registry.example.com/backendtls-sidecar:1.0", CaptureMode = "explicit" };

    private static readonly CaptureConfig ExplicitCapture = new() { Mode = "explicit", ProxyUid = InjectorSettings.DefaultProxyUid };

    private static InjectionResult Inject(JsonObject pod, InjectorSettings? settings = null, NamespaceInjection ns = NamespaceInjection.Enabled, string? podNamespace = null) =>
        PodInjector.Inject(pod, podNamespace, settings ?? Defaults, new NamespaceInfo(podNamespace ?? "edge", ns), new StaticCapturePorts([]));

    private static V1Pod Typed(JsonNode pod) => KubernetesJson.Deserialize<V1Pod>(pod.ToJsonString());

    [Theory]
    [MemberData(nameof(Corpus.GatewayPods), MemberType = typeof(Corpus))]
    public void GatewayPod_GetsNativeSidecar_PatchAppliesIndependently_AndIsIdempotent(string file)
    {
        var original = Corpus.Load(file);
        var result = Inject(original);
        if (original["spec"]?["hostNetwork"] is not null)
        {
            Assert.Equal(InjectionOutcome.Skipped, result.Outcome);
            return;
        }

        Assert.Equal(InjectionOutcome.Injected, result.Outcome);
        var pod = Typed(result.Pod);
        var sidecar = pod.Spec.InitContainers[0];
        Assert.Equal(InjectorSettings.ContainerName, sidecar.Name);
        Assert.Equal("Always", sidecar.RestartPolicy);
        Assert.Equal("registry.example.com/backendtls-sidecar:1.0", sidecar.Image);
        Assert.True(sidecar.SecurityContext.RunAsNonRoot);
        Assert.True(sidecar.SecurityContext.ReadOnlyRootFilesystem);
        Assert.False(sidecar.SecurityContext.AllowPrivilegeEscalation);
        Assert.Equal(["ALL"], sidecar.SecurityContext.Capabilities.Drop);
        Assert.Equal("RuntimeDefault", sidecar.SecurityContext.SeccompProfile.Type);
        Assert.Equal(15090, sidecar.Ports.Single().ContainerPort);
        Assert.Equal("/healthz/ready", sidecar.StartupProbe.HttpGet.Path);
        var volume = pod.Spec.Volumes.Single(v => v.Name == InjectorSettings.VolumeName);
        Assert.True(volume.ConfigMap.Optional);
        Assert.Contains(InjectionLabels.Status, pod.Metadata.Annotations.Keys);

        // Everything that was there is still there, unchanged.
        foreach (var list in new[] { "containers", "initContainers", "volumes" })
        {
            foreach (var item in original["spec"]?[list] as JsonArray ?? [])
            {
                Assert.Contains(result.Pod["spec"]![list]!.AsArray(), x => JsonNode.DeepEquals(x, item));
            }
        }

        foreach (var (key, value) in original["metadata"]?["annotations"]?.AsObject() ?? [])
        {
            Assert.True(JsonNode.DeepEquals(value, result.Pod["metadata"]!["annotations"]![key]), $"annotation {key} changed");
        }

        var patch = JsonPatchDiff.Create(original, result.Pod);
        Assert.DoesNotContain(patch, op => (string?)op!["op"] == "remove");
        Assert.True(JsonNode.DeepEquals(result.Pod, JsonPatchDiffTests.Apply(original, patch)));

        var again = Inject(result.Pod);
        Assert.Equal(InjectionOutcome.Unchanged, again.Outcome);
        Assert.Empty(JsonPatchDiff.Create(result.Pod, again.Pod));
    }

    [Fact]
    public void PrometheusAnnotations_OnlyWhereThePodHasNone()
    {
        var withOwn = Inject(Corpus.Load("envoy-gateway-proxy.yaml")).Pod;
        var bare = Inject(Corpus.Load("no-volumes.yaml")).Pod;

        Assert.Equal("19001", (string?)withOwn["metadata"]!["annotations"]!["prometheus.io/port"]);
        Assert.Equal("15090", (string?)bare["metadata"]!["annotations"]!["prometheus.io/port"]);
        Assert.Equal("haproxy", (string?)bare["metadata"]!["annotations"]!["kubectl.kubernetes.io/default-container"]);
    }

    [Theory]
    [InlineData("Enabled", null, true)]
    [InlineData("Enabled", "disabled", false)]
    [InlineData("Enabled", "enabled", true)]
    [InlineData("NotEnabled", null, false)]
    [InlineData("NotEnabled", "enabled", true)]
    [InlineData("NotEnabled", "disabled", false)]
    [InlineData("Unknown", null, true)]
    [InlineData("Unknown", "disabled", false)]
    public void OptInOutMatrix(string namespaceState, string? podLabel, bool injected)
    {
        var pod = Corpus.Load("no-volumes.yaml");
        if (podLabel is not null)
        {
            pod["metadata"]!["labels"] = new JsonObject { [InjectionLabels.Inject] = podLabel };
        }

        Assert.Equal(injected, Inject(pod, ns: Enum.Parse<NamespaceInjection>(namespaceState)).Changed);
    }

    [Theory]
    [InlineData("kube-system")]
    [InlineData("kube-public")]
    [InlineData("kube-node-lease")]
    [InlineData("backendtls-system")]
    public void SystemAndOwnNamespaces_NeverInjected_EvenWhenThePodAsks(string ns)
    {
        var pod = Corpus.Load("no-volumes.yaml");
        pod["metadata"]!["labels"] = new JsonObject { [InjectionLabels.Inject] = InjectionLabels.Enabled };

        var result = Inject(pod, podNamespace: ns);

        Assert.Equal(InjectionOutcome.Skipped, result.Outcome);
        Assert.Equal("system_namespace", result.ReasonCode);
    }

    [Fact]
    public void HostNetwork_SkippedWithWarning()
    {
        var pod = Corpus.Load("no-volumes.yaml");
        pod["spec"]!["hostNetwork"] = true;

        var result = Inject(pod);

        Assert.Equal(("host_network", false), (result.ReasonCode, result.Changed));
        Assert.Contains(result.Warnings, w => w.Contains("hostNetwork", StringComparison.Ordinal));
    }

    [Fact]
    public void Annotations_ValidOverridesApplied()
    {
        var pod = Corpus.Load("no-volumes.yaml");
        pod["metadata"]!["annotations"] = new JsonObject
        {
            [InjectionLabels.SidecarImage] = "mirror.local/btls:2",
            [InjectionLabels.CpuRequest] = "200m",
            [InjectionLabels.MemoryLimit] = "256Mi",
            [InjectionLabels.LogLevel] = "Debug",
            [InjectionLabels.ListenPort] = "16001",
            [InjectionLabels.PolicyConfigMap] = "edge-policy",
            [InjectionLabels.DrainTimeout] = "40s",
        };

        var result = Inject(pod);

        Assert.Empty(result.Warnings);
        var sidecar = Typed(result.Pod).Spec.InitContainers[0];
        Assert.Equal("mirror.local/btls:2", sidecar.Image);
        Assert.Equal("200m", sidecar.Resources.Requests["cpu"].ToString());
        Assert.Equal("256Mi", sidecar.Resources.Limits["memory"].ToString());
        Assert.Contains("127.0.0.1:16001", sidecar.Args);
        Assert.Contains("Debug", sidecar.Args);
        Assert.Equal("40", sidecar.Args[sidecar.Args.IndexOf("--drain-timeout") + 1]);
        Assert.Equal("edge-policy", Typed(result.Pod).Spec.Volumes.Single(v => v.Name == InjectorSettings.VolumeName).ConfigMap.Name);
    }

    [Theory]
    [InlineData(InjectionLabels.CpuRequest, "lots")]
    [InlineData(InjectionLabels.MemoryLimit, "-1Mi")]
    [InlineData(InjectionLabels.ListenPort, "15090")]
    [InlineData(InjectionLabels.NativeSidecar, "maybe")]
    [InlineData(InjectionLabels.PolicyConfigMap, "Not_A_Name")]
    [InlineData(InjectionLabels.SidecarImage, "has spaces")]
    [InlineData(InjectionLabels.DrainTimeout, "forever")]
    [InlineData(InjectionLabels.LogLevel, "loud")]
    [InlineData(InjectionLabels.ClientCertificateSecret, "../etc")]
    public void Annotations_InvalidValue_DefaultAndWarning(string key, string value)
    {
        var pod = Corpus.Load("no-volumes.yaml");
        pod["metadata"]!["annotations"] = new JsonObject { [key] = value };

        var result = Inject(pod);

        Assert.Equal(InjectionOutcome.Injected, result.Outcome);
        var warning = Assert.Single(result.Warnings);
        Assert.Contains($"{key}=\"{value}\"", warning, StringComparison.Ordinal);
        Assert.Contains("using the default", warning, StringComparison.Ordinal);
        Assert.Equal(SidecarTemplate.Render(Defaults, ExplicitCapture).Hash, InjectionStatus.TryParse((string?)result.Pod["metadata"]!["annotations"]![InjectionLabels.Status])!.TemplateHash);
    }

    [Fact]
    public void ClientCertificateSecret_MountedAsASecretVolume_ReadOnly_NeverThroughTheConfigMap()
    {
        var pod = Corpus.Load("no-volumes.yaml");
        pod["metadata"]!["annotations"] = new JsonObject { [InjectionLabels.ClientCertificateSecret] = "gateway-client-tls" };

        var result = Inject(pod);

        Assert.Empty(result.Warnings);
        var spec = Typed(result.Pod).Spec;
        var sidecar = spec.InitContainers[0];
        Assert.Equal(SidecarTemplate.ClientCertificateDirectory, sidecar.Args[sidecar.Args.IndexOf("--client-certificate-dir") + 1]);
        var mount = sidecar.VolumeMounts.Single(m => m.Name == SidecarTemplate.ClientCertificateVolume);
        Assert.True(mount.ReadOnlyProperty);
        var volume = spec.Volumes.Single(v => v.Name == SidecarTemplate.ClientCertificateVolume);
        Assert.Equal(("gateway-client-tls", true), (volume.Secret.SecretName, volume.Secret.Optional!.Value));
        // Only the sidecar sees it: the gateway's own containers get no mount of the key.
        Assert.All(spec.Containers, c => Assert.DoesNotContain(c.VolumeMounts ?? [], m => m.Name == SidecarTemplate.ClientCertificateVolume));
        // Re-injection with the same annotation changes nothing.
        Assert.False(Inject(result.Pod).Changed);
    }

    [Fact]
    public void UnknownOwnAnnotation_Warned()
    {
        var pod = Corpus.Load("no-volumes.yaml");
        pod["metadata"]!["annotations"] = new JsonObject { ["backendtls.io/sidecar-imag"] = "x" };

        Assert.Contains(Inject(pod).Warnings, w => w.Contains("backendtls.io/sidecar-imag is not known", StringComparison.Ordinal));
    }

    [Fact]
    public void LegacyMode_FirstRegularContainer_HeldUntilReady()
    {
        var pod = Corpus.Load("existing-init-and-annotations.yaml");
        pod["metadata"]!["annotations"]![InjectionLabels.NativeSidecar] = "false";

        var typed = Typed(Inject(pod).Pod);

        Assert.Equal("fetch-config", typed.Spec.InitContainers.Single().Name);
        var sidecar = typed.Spec.Containers[0];
        Assert.Equal(InjectorSettings.ContainerName, sidecar.Name);
        Assert.Null(sidecar.RestartPolicy);
        Assert.Contains("wait", sidecar.Lifecycle.PostStart.Exec.Command);
        Assert.NotNull(sidecar.Lifecycle.PreStop);
        Assert.Equal("nginx", typed.Spec.Containers[1].Name);
    }

    [Fact]
    public void TemplateChange_UpdatesInPlace_NoDuplicate()
    {
        var first = Inject(Corpus.Load("kgateway-proxy.yaml")).Pod;

        var upgraded = Inject(first, Defaults with { SidecarImage = "registry.example.com/backendtls-sidecar:1.1" });

        Assert.Equal(InjectionOutcome.Updated, upgraded.Outcome);
        var typed = Typed(upgraded.Pod);
        Assert.Equal("registry.example.com/backendtls-sidecar:1.1", typed.Spec.InitContainers.Single(c => c.Name == InjectorSettings.ContainerName).Image);
        Assert.Single(typed.Spec.Volumes, v => v.Name == InjectorSettings.VolumeName);
        var patch = JsonPatchDiff.Create(first, upgraded.Pod);
        Assert.DoesNotContain(patch, op => (string?)op!["op"] == "remove");
        Assert.True(JsonNode.DeepEquals(upgraded.Pod, JsonPatchDiffTests.Apply(first, patch)));
    }

    [Fact]
    public void SwitchingToLegacyMode_MovesTheSidecar()
    {
        var native = Inject(Corpus.Load("no-volumes.yaml")).Pod;

        var legacy = Typed(Inject(native, Defaults with { NativeSidecar = false }).Pod);

        Assert.Null(legacy.Spec.InitContainers);
        Assert.Equal(InjectorSettings.ContainerName, legacy.Spec.Containers[0].Name);
        Assert.Equal(2, legacy.Spec.Containers.Count);
    }

    [Fact]
    public void ForeignContainerWithOurName_SkippedWithWarning()
    {
        var pod = Corpus.Load("no-volumes.yaml");
        pod["spec"]!["containers"]!.AsArray().Add(new JsonObject { ["name"] = InjectorSettings.ContainerName, ["image"] = "mine" });

        var result = Inject(pod);

        Assert.Equal("foreign_container", result.ReasonCode);
        Assert.Contains(result.Warnings, w => w.Contains("did not add", StringComparison.Ordinal));
    }

    [Fact]
    public void UnknownFields_SurviveUntouched()
    {
        var pod = Corpus.Load("no-volumes.yaml");
        pod["spec"]!["someFutureField"] = new JsonObject { ["x"] = 1 };

        var result = Inject(pod);

        Assert.Equal(1, (int?)result.Pod["spec"]!["someFutureField"]!["x"]);
        Assert.DoesNotContain(JsonPatchDiff.Create(pod, result.Pod), op => ((string?)op!["path"])!.Contains("someFutureField", StringComparison.Ordinal));
    }
}
