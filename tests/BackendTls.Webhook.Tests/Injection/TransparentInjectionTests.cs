using System.Text.Json.Nodes;
using BackendTls.Webhook.Injection;
using BackendTls.Webhook.Tests.Support;
using k8s;
using k8s.Models;

namespace BackendTls.Webhook.Tests.Injection;

/// <summary>
/// Transparent capture as the injector sets it up: the capture-init container (least privilege, xtables
/// lock, its args from the capture ports and annotations), its place among init containers, the sidecar's
/// uid and index token, and the fallbacks to explicit mode that say why.
/// </summary>
public sealed class TransparentInjectionTests
{
    private static readonly InjectorSettings Defaults = new() { SidecarImage = "registry.example.com/backendtls-sidecar:1.0" };

    private static InjectionResult Inject(JsonObject pod, InjectorSettings? settings = null, string? podSecurity = null, params int[] ports) =>
        PodInjector.Inject(pod, "edge", settings ?? Defaults, new NamespaceInfo("edge", NamespaceInjection.Enabled, podSecurity), new StaticCapturePorts(ports.Length == 0 ? [443, 8443] : ports));

    private static V1Pod Typed(JsonNode pod) => KubernetesJson.Deserialize<V1Pod>(pod.ToJsonString());

    private static JsonObject Annotated(params (string Key, string Value)[] annotations)
    {
        var pod = Corpus.Load("existing-init-and-annotations.yaml");
        foreach (var (key, value) in annotations)
        {
            pod["metadata"]!["annotations"]![key] = value;
        }

        return pod;
    }

    private static string Arg(IList<string> args, string flag) => args[args.IndexOf(flag) + 1];

    private static CaptureConfig Capture(InjectionResult result) =>
        CaptureConfig.TryParse((string?)result.Pod["metadata"]!["annotations"]![InjectionLabels.CaptureConfig])!;

    [Fact]
    public void Default_CaptureInitFirst_LeastPrivilege_ThenTheSidecarOnItsOwnUid_ThenThePodsInitContainers()
    {
        var result = Inject(Annotated());

        Assert.Equal(InjectionOutcome.Injected, result.Outcome);
        var pod = Typed(result.Pod);
        Assert.Equal([InjectorSettings.CaptureInitName, InjectorSettings.ContainerName, "fetch-config"], pod.Spec.InitContainers.Select(c => c.Name));
        var init = pod.Spec.InitContainers[0];
        Assert.Equal(0, init.SecurityContext.RunAsUser);
        Assert.Equal(["ALL"], init.SecurityContext.Capabilities.Drop);
        Assert.Equal(["NET_ADMIN", "NET_RAW"], init.SecurityContext.Capabilities.Add);
        Assert.False(init.SecurityContext.AllowPrivilegeEscalation);
        Assert.False(init.SecurityContext.Privileged);
        Assert.True(init.SecurityContext.ReadOnlyRootFilesystem);
        // The xtables lock lives on an emptyDir, so the read-only root filesystem holds.
        Assert.Equal("/run/xtables/xtables.lock", init.Env.Single(e => e.Name == "XTABLES_LOCKFILE").Value);
        Assert.Equal(InjectorSettings.XtablesVolumeName, init.VolumeMounts.Single(m => m.MountPath == "/run/xtables").Name);
        Assert.NotNull(pod.Spec.Volumes.Single(v => v.Name == InjectorSettings.XtablesVolumeName).EmptyDir);
        Assert.Equal("443,8443", Arg(init.Args, "--capture-ports"));
        Assert.Equal("15101", Arg(init.Args, "--proxy-uid"));
        Assert.Equal("15001,15002,15090", Arg(init.Args, "--sidecar-ports"));
        Assert.Equal("auto", Arg(init.Args, "--iptables-mode"));

        var sidecar = pod.Spec.InitContainers[1];
        Assert.Equal(15101, sidecar.SecurityContext.RunAsUser);
        Assert.Equal("15002", Arg(sidecar.Args, "--capture-port"));
        Assert.Equal("deny", Arg(sidecar.Args, "--unknown-destination"));
        Assert.Equal(Defaults.IndexUrl, Arg(sidecar.Args, "--index-url"));
        // Its startup probe is the readiness of every listener, the capture listener among them: the gateway starts after.
        Assert.Equal("/healthz/ready", sidecar.StartupProbe.HttpGet.Path);
        var token = pod.Spec.Volumes.Single(v => v.Name == SidecarTemplate.IndexTokenVolume).Projected.Sources.Single().ServiceAccountToken;
        Assert.Equal(("backendtls-index", "token"), (token.Audience, token.Path));
        Assert.Equal($"{SidecarTemplate.IndexTokenDirectory}/{token.Path}", Arg(sidecar.Args, "--index-token-file"));

        Assert.Equal(new CaptureConfig { Mode = "transparent", Ports = [443, 8443], ProxyUid = 15101 }.Serialize(), Capture(result).Serialize());
        Assert.Equal(InjectionOutcome.Unchanged, Inject(result.Pod).Outcome);
    }

    [Fact]
    public void LegacySidecars_CaptureInitLastAmongInitContainers_SoThePodsOwnRunUncaptured()
    {
        var pod = Typed(Inject(Annotated((InjectionLabels.NativeSidecar, "false"))).Pod);

        Assert.Equal(["fetch-config", InjectorSettings.CaptureInitName], pod.Spec.InitContainers.Select(c => c.Name));
        Assert.Equal(InjectorSettings.ContainerName, pod.Spec.Containers[0].Name);
    }

    [Fact]
    public void Annotations_SetEveryCaptureKnob()
    {
        var result = Inject(Annotated(
            (InjectionLabels.CapturePorts, "all"),
            (InjectionLabels.ExcludeOutboundPorts, "5432,6379"),
            (InjectionLabels.ExcludeOutboundCidrs, "10.0.0.0/8,fd00::/8"),
            (InjectionLabels.IncludeOutboundCidrs, "198.18.0.0/15"),
            (InjectionLabels.IptablesMode, "iptables-legacy"),
            (InjectionLabels.ProxyUid, "20001"),
            (InjectionLabels.UnknownDestination, "passthrough")));

        Assert.Empty(result.Warnings);
        var pod = Typed(result.Pod);
        var init = pod.Spec.InitContainers.Single(c => c.Name == InjectorSettings.CaptureInitName);
        Assert.Equal("all", Arg(init.Args, "--capture-ports"));
        Assert.Equal("5432,6379", Arg(init.Args, "--exclude-outbound-ports"));
        Assert.Equal("10.0.0.0/8,fd00::/8", Arg(init.Args, "--exclude-outbound-cidrs"));
        Assert.Equal("198.18.0.0/15", Arg(init.Args, "--include-outbound-cidrs"));
        Assert.Equal("iptables-legacy", Arg(init.Args, "--iptables-mode"));
        Assert.Equal("20001", Arg(init.Args, "--proxy-uid"));
        var sidecar = pod.Spec.InitContainers.Single(c => c.Name == InjectorSettings.ContainerName);
        Assert.Equal(20001, sidecar.SecurityContext.RunAsUser);
        Assert.Equal("passthrough", Arg(sidecar.Args, "--unknown-destination"));
        Assert.True(Capture(result).AllPorts);
    }

    [Theory]
    [InlineData(InjectionLabels.Capture, "sometimes")]
    [InlineData(InjectionLabels.CapturePorts, "https")]
    [InlineData(InjectionLabels.ExcludeOutboundPorts, "70000")]
    [InlineData(InjectionLabels.ExcludeOutboundCidrs, "10.0.0.0/33")]
    [InlineData(InjectionLabels.IncludeOutboundCidrs, "everything")]
    [InlineData(InjectionLabels.IptablesMode, "pf")]
    [InlineData(InjectionLabels.ProxyUid, "0")]
    [InlineData(InjectionLabels.UnknownDestination, "maybe")]
    public void CaptureAnnotation_InvalidValue_DefaultAndAWarningNamingIt(string key, string value)
    {
        var result = Inject(Annotated((key, value)));

        Assert.Equal(InjectionOutcome.Injected, result.Outcome);
        var warning = Assert.Single(result.Warnings);
        Assert.Contains($"{key}=\"{value}\"", warning, StringComparison.Ordinal);
        Assert.Equal(new CaptureConfig { Mode = "transparent", Ports = [443, 8443], ProxyUid = 15101 }.Serialize(), Capture(result).Serialize());
    }

    [Theory]
    [InlineData("baseline")]
    [InlineData("restricted")]
    public void PodSecurityForbidsNetAdmin_ExplicitModeInstead_SayingWhyAndHowToFix(string level)
    {
        var result = Inject(Annotated(), podSecurity: level);

        Assert.Equal(InjectionOutcome.Injected, result.Outcome);
        var pod = Typed(result.Pod);
        Assert.DoesNotContain(pod.Spec.InitContainers, c => c.Name == InjectorSettings.CaptureInitName);
        Assert.DoesNotContain("--capture-port", pod.Spec.InitContainers.Single(c => c.Name == InjectorSettings.ContainerName).Args);
        var warning = Assert.Single(result.Warnings);
        Assert.Contains($"enforces Pod Security \"{level}\"", warning, StringComparison.Ordinal);
        Assert.Contains("pod-security.kubernetes.io/enforce=privileged", warning, StringComparison.Ordinal);
        Assert.Contains("http://127.0.0.1:15001", warning, StringComparison.Ordinal);
        // The reason is kept on the pod: the controller puts it in an Event on the pod's owner.
        Assert.Contains("forbids the NET_ADMIN capability", Capture(result).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void AContainerOnTheSidecarsUid_ExplicitModeInstead_NamingTheContainer()
    {
        var pod = Annotated();
        pod["spec"]!["containers"]![0]!["securityContext"] = new JsonObject { ["runAsUser"] = 15101 };

        var result = Inject(pod);

        Assert.DoesNotContain(Typed(result.Pod).Spec.InitContainers, c => c.Name == InjectorSettings.CaptureInitName);
        Assert.Contains(result.Warnings, w => w.Contains("container nginx runs as uid 15101", StringComparison.Ordinal) && w.Contains(InjectionLabels.ProxyUid, StringComparison.Ordinal));
        Assert.Equal("explicit", Capture(result).Mode);
    }

    [Fact]
    public void ExplicitAnnotation_NoCaptureInit_NoToken()
    {
        var pod = Typed(Inject(Annotated((InjectionLabels.Capture, "explicit"))).Pod);

        Assert.DoesNotContain(pod.Spec.InitContainers, c => c.Name == InjectorSettings.CaptureInitName);
        Assert.DoesNotContain(pod.Spec.Volumes, v => v.Name == SidecarTemplate.IndexTokenVolume);
        Assert.Equal(InjectorSettings.DefaultProxyUid, pod.Spec.InitContainers.Single(c => c.Name == InjectorSettings.ContainerName).SecurityContext.RunAsUser);
    }

    [Fact]
    public void NoPolicyYet_NothingCaptured_AndTheWarningSaysWhenThatChanges()
    {
        var result = PodInjector.Inject(Annotated(), "edge", Defaults, new NamespaceInfo("edge", NamespaceInjection.Enabled), new StaticCapturePorts([]));

        Assert.Equal(string.Empty, Arg(Typed(result.Pod).Spec.InitContainers[0].Args, "--capture-ports"));
        Assert.Contains(result.Warnings, w => w.Contains("no port is captured", StringComparison.Ordinal) && w.Contains(InjectionLabels.CapturePorts, StringComparison.Ordinal));
    }
}
