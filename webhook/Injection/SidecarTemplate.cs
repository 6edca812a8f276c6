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
    public sealed record Rendered(JsonObject Container, JsonObject Volume, string Hash);

    public static Rendered Render(InjectorSettings settings)
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
                RunAsUser = InjectorSettings.SidecarUid,
                RunAsGroup = InjectorSettings.SidecarUid,
                ReadOnlyRootFilesystem = true,
                AllowPrivilegeEscalation = false,
                Privileged = false,
                Capabilities = new V1Capabilities { Drop = ["ALL"] },
                SeccompProfile = new V1SeccompProfile { Type = "RuntimeDefault" },
            },
            VolumeMounts = [new V1VolumeMount { MountPath = InjectorSettings.ConfigMountPath, Name = InjectorSettings.VolumeName, ReadOnlyProperty = true }],
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
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(containerJson.ToJsonString() + volumeJson.ToJsonString())))[..16];
        return new Rendered(containerJson, volumeJson, hash);
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
