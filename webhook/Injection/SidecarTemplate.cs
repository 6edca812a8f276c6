using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;

namespace BackendTls.Webhook.Injection;

/// <summary>
/// Renders the sidecar container and its policy volume for given settings, with KubernetesClient's
/// models (so every field name and shape is the API's), as JSON trees ready to insert into a pod.
/// </summary>
internal static class SidecarTemplate
{
    /// <summary>The sidecar, its policy volume, and in transparent mode the capture-init container and its xtables lock volume.</summary>
    /// <summary>What injection adds to a pod.</summary>
    /// <param name="Container">The sidecar.</param>
    /// <param name="Volume">The policy ConfigMap's volume.</param>
    /// <param name="CaptureInit">The capture-init container (transparent mode).</param>
    /// <param name="ExtraVolumes">Volumes beside the policy ConfigMap: capture's, and the client certificate's Secret.</param>
    /// <param name="Hash">Of all of it: the status annotation's, so re-injection is detected.</param>
    public sealed record Rendered(JsonObject Container, JsonObject Volume, JsonObject? CaptureInit, IReadOnlyList<JsonObject> ExtraVolumes, string Hash);

    public const string ClientCertificateVolume = "backendtls-client-certificate";
    public const string ClientCertificateDirectory = "/etc/backendtls/client-certificate";

    public const string IndexTokenVolume = "backendtls-index-token";
    public const string IndexTokenDirectory = "/var/run/secrets/backendtls/index";

    /// <summary>The audience of the projected token the sidecar shows the destination index.</summary>
    public const string IndexTokenAudience = "backendtls-index";

    public static Rendered Render(InjectorSettings settings, CaptureConfig capture)
    {
        var adminUrl = $"http://127.0.0.1:{InjectorSettings.AdminPort}/healthz/ready";
        var container = new V1Container
        {
            Name = InjectorSettings.ContainerName,
            Image = settings.SidecarImage,
            ImagePullPolicy = settings.ImagePullPolicy,
            Args =
            [
                "run",
                "--config-dir", InjectorSettings.ConfigMountPath,
                "--listen", $"127.0.0.1:{settings.ListenPort}",
                "--admin", $"0.0.0.0:{InjectorSettings.AdminPort}",
                "--drain-timeout", settings.DrainTimeoutSeconds.ToString(CultureInfo.InvariantCulture),
                "--log-level", settings.LogLevel,
                "--log-format", "json",
                .. capture.Transparent
                    ? new[]
                    {
                        "--capture-port", capture.RedirectPort.ToString(CultureInfo.InvariantCulture), "--unknown-destination", settings.UnknownDestination,
                        "--index-url", settings.IndexUrl, "--index-token-file", $"{IndexTokenDirectory}/token",
                    }
                    : [],
                .. settings.ClientCertificateSecret is null ? [] : new[] { "--client-certificate-dir", ClientCertificateDirectory },
            ],
            Ports = [new V1ContainerPort { ContainerPort = InjectorSettings.AdminPort, Name = InjectorSettings.AdminPortName, Protocol = "TCP" }],
            Resources = new V1ResourceRequirements
            {
                Requests = Quantities(("cpu", settings.CpuRequest), ("memory", settings.MemoryRequest)),
                Limits = Quantities(("cpu", settings.CpuLimit), ("memory", settings.MemoryLimit)),
            },
            StartupProbe = Probe("/healthz/ready", periodSeconds: 1, failureThreshold: 120),
            ReadinessProbe = Probe("/healthz/ready", periodSeconds: 5, failureThreshold: 3),
            LivenessProbe = Probe("/healthz/live", periodSeconds: 10, failureThreshold: 3),
            SecurityContext = new V1SecurityContext
            {
                RunAsNonRoot = true,
                // The dedicated uid: the capture rules let this uid's connections out uncaptured.
                RunAsUser = capture.ProxyUid,
                RunAsGroup = capture.ProxyUid,
                ReadOnlyRootFilesystem = true,
                AllowPrivilegeEscalation = false,
                Privileged = false,
                Capabilities = new V1Capabilities { Drop = ["ALL"] },
                SeccompProfile = new V1SeccompProfile { Type = "RuntimeDefault" },
            },
            VolumeMounts =
            [
                new V1VolumeMount { MountPath = InjectorSettings.ConfigMountPath, Name = InjectorSettings.VolumeName, ReadOnlyProperty = true },
                .. capture.Transparent ? new[] { new V1VolumeMount { MountPath = IndexTokenDirectory, Name = IndexTokenVolume, ReadOnlyProperty = true } } : [],
                .. settings.ClientCertificateSecret is null ? [] : new[] { new V1VolumeMount { MountPath = ClientCertificateDirectory, Name = ClientCertificateVolume, ReadOnlyProperty = true } },
            ],
            TerminationMessagePolicy = "FallbackToLogsOnError",
        };

        if (settings.NativeSidecar)
        {
            // Starts before, and stops after, every regular container (Kubernetes 1.29+).
            container.RestartPolicy = "Always";
        }
        else
        {
            // A regular container listed first: kubelet starts the next container only when postStart
            // returns, i.e. when the proxy is ready (Istio's holdApplicationUntilProxyStarts). On shutdown
            // it keeps serving while the gateway drains, then drains itself.
            container.Lifecycle = new V1Lifecycle
            {
                PostStart = new V1LifecycleHandler { Exec = new V1ExecAction { Command = ["/usr/local/bin/backendtls-sidecar", "wait", "--url", adminUrl, "--timeout", "120"] } },
                PreStop = new V1LifecycleHandler { Exec = new V1ExecAction { Command = ["/bin/sleep", "5"] } },
            };
        }

        var volume = new V1Volume
        {
            Name = InjectorSettings.VolumeName,
            // Optional: pods start before any BackendTLSPolicy exists; the sidecar then forwards nothing.
            ConfigMap = new V1ConfigMapVolumeSource { Name = settings.PolicyConfigMap, Optional = true },
        };

        var containerJson = ToJson(container);
        var volumeJson = ToJson(volume);
        var (init, xtables) = capture.Transparent ? CaptureInit(settings, capture) : (null, null);
        // The index is asked with a token for its audience only, rotated by kubelet.
        JsonObject[] extraVolumes = capture.Transparent
            ?
            [
                xtables!,
                ToJson(new V1Volume
                {
                    Name = IndexTokenVolume,
                    Projected = new V1ProjectedVolumeSource
                    {
                        Sources = [new V1VolumeProjection { ServiceAccountToken = new V1ServiceAccountTokenProjection { Audience = IndexTokenAudience, ExpirationSeconds = 3600, Path = "token" } }],
                    },
                }),
            ]
            : [];
        if (settings.ClientCertificateSecret is { } secret)
        {
            // Key material reaches the pod only as this Secret volume, never through a ConfigMap. Optional: a
            // pod whose Secret is not there yet starts, and the sidecar fails closed saying so.
            extraVolumes = [.. extraVolumes, ToJson(new V1Volume
            {
                Name = ClientCertificateVolume,
                Secret = new V1SecretVolumeSource { SecretName = secret, Optional = true, DefaultMode = 0b100_100_100 },
            })];
        }

        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
            containerJson.ToJsonString() + volumeJson.ToJsonString() + init?.ToJsonString() + string.Concat(extraVolumes.Select(v => v.ToJsonString())))))[..16];
        return new Rendered(containerJson, volumeJson, init, extraVolumes, hash);
    }

    /// <summary>
    /// The capture-init container: root with NET_ADMIN and NET_RAW only (no privilege escalation, read-only
    /// root filesystem, the xtables lock on an emptyDir), gone once the rules are in place.
    /// </summary>
    private static (JsonObject Container, JsonObject Volume) CaptureInit(InjectorSettings settings, CaptureConfig capture)
    {
        var lockDirectory = "/run/xtables";
        var args = new List<string>
        {
            "capture-init",
            "--proxy-uid", capture.ProxyUid.ToString(CultureInfo.InvariantCulture),
            "--redirect-port", capture.RedirectPort.ToString(CultureInfo.InvariantCulture),
            "--capture-ports", capture.AllPorts ? "all" : string.Join(',', capture.Ports),
            "--sidecar-ports", string.Join(',', settings.ListenPort, capture.RedirectPort, InjectorSettings.AdminPort),
            "--iptables-mode", settings.IptablesMode,
        };
        foreach (var (flag, value) in new[]
        {
            ("--exclude-outbound-ports", settings.ExcludeOutboundPorts),
            ("--exclude-outbound-cidrs", settings.ExcludeOutboundCidrs),
            ("--include-outbound-cidrs", settings.IncludeOutboundCidrs),
        })
        {
            if (value.Length > 0)
            {
                args.AddRange([flag, value]);
            }
        }

        var container = new V1Container
        {
            Name = InjectorSettings.CaptureInitName,
            Image = settings.CaptureInitImage,
            ImagePullPolicy = settings.ImagePullPolicy,
            Args = args,
            Env = [new V1EnvVar { Name = "XTABLES_LOCKFILE", Value = $"{lockDirectory}/xtables.lock" }],
            Resources = new V1ResourceRequirements
            {
                Requests = Quantities(("cpu", "10m"), ("memory", "16Mi")),
                Limits = Quantities(("memory", "64Mi")),
            },
            SecurityContext = new V1SecurityContext
            {
                RunAsUser = 0,
                RunAsGroup = 0,
                RunAsNonRoot = false,
                ReadOnlyRootFilesystem = true,
                AllowPrivilegeEscalation = false,
                Privileged = false,
                Capabilities = new V1Capabilities { Drop = ["ALL"], Add = ["NET_ADMIN", "NET_RAW"] },
                SeccompProfile = new V1SeccompProfile { Type = "RuntimeDefault" },
            },
            VolumeMounts = [new V1VolumeMount { MountPath = lockDirectory, Name = InjectorSettings.XtablesVolumeName }],
            TerminationMessagePolicy = "FallbackToLogsOnError",
        };
        var volume = new V1Volume { Name = InjectorSettings.XtablesVolumeName, EmptyDir = new V1EmptyDirVolumeSource { Medium = "Memory" } };
        return (ToJson(container), ToJson(volume));
    }

    private static Dictionary<string, ResourceQuantity>? Quantities(params (string Name, string? Value)[] values)
    {
        var result = values.Where(v => v.Value is not null).ToDictionary(v => v.Name, v => new ResourceQuantity(v.Value));
        return result.Count == 0 ? null : result;
    }

    private static V1Probe Probe(string path, int periodSeconds, int failureThreshold) => new()
    {
        HttpGet = new V1HTTPGetAction { Port = InjectorSettings.AdminPort, Path = path },
        PeriodSeconds = periodSeconds,
        FailureThreshold = failureThreshold,
        TimeoutSeconds = 1,
    };

    private static JsonObject ToJson<T>(T value) => JsonNode.Parse(KubernetesJson.Serialize(value))!.AsObject();
}
