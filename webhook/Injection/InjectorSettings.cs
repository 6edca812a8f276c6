namespace BackendTls.Webhook.Injection;

/// <summary>
/// Cluster-wide injection defaults (webhook flags). Per-pod annotations may override some of them;
/// see <see cref="PodOverrides"/>.
/// </summary>
internal sealed record InjectorSettings
{
    public const string ContainerName = "backendtls-proxy";
    public const string VolumeName = "backendtls-policy";
    public const string ConfigMountPath = "/etc/backendtls/config";
    public const string AdminPortName = "backendtls-adm";
    public const int AdminPort = 15090;

    /// <summary>The image's non-root user (Dockerfile.sidecar).</summary>
    public const long SidecarUid = 1654;

    public string SidecarImage { get; init; } = "backendtls-sidecar:0.1.0";

    public string ImagePullPolicy { get; init; } = "IfNotPresent";

    public string PolicyConfigMap { get; init; } = "backendtls-policy";

    /// <summary>Native sidecar (init container with restartPolicy Always, Kubernetes 1.29+); false for older clusters.</summary>
    public bool NativeSidecar { get; init; } = true;

    public string CpuRequest { get; init; } = "50m";

    public string? CpuLimit { get; init; }

    public string MemoryRequest { get; init; } = "32Mi";

    public string? MemoryLimit { get; init; } = "128Mi";

    public string LogLevel { get; init; } = "Information";

    public int ListenPort { get; init; } = 15001;

    public int DrainTimeoutSeconds { get; init; } = 25;

    /// <summary>The webhook's own namespace: never injected.</summary>
    public string WebhookNamespace { get; init; } = "backendtls-system";

    public static IReadOnlySet<string> SystemNamespaces { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "kube-system", "kube-public", "kube-node-lease",
    };
}
