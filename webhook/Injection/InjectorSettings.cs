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

    public const string CaptureInitName = "backendtls-capture-init";
    public const string XtablesVolumeName = "backendtls-xtables";
    public const int CapturePort = 15002;

    /// <summary>
    /// The sidecar's uid, dedicated: its own connections are the ones the capture rules let out. Not 1654,
    /// 65532 or 101, which gateway images run as (a gateway sharing it would escape capture).
    /// </summary>
    public const long DefaultProxyUid = 15101;

    public string SidecarImage { get; init; } = "backendtls-sidecar:0.1.0";

    /// <summary>The capture-init image: the sidecar binary with iptables and nftables (Dockerfile.sidecar, target capture-init).</summary>
    public string CaptureInitImage { get; init; } = "backendtls-capture-init:0.1.0";

    /// <summary>transparent (capture the gateway's connections to policy targets) or explicit (the gateway sends to 127.0.0.1:15001).</summary>
    public string CaptureMode { get; init; } = "transparent";

    public long ProxyUid { get; init; } = DefaultProxyUid;

    /// <summary>Ports to capture besides the policy targets' (or "all"), from the capture-ports annotation.</summary>
    public string ExtraCapturePorts { get; init; } = string.Empty;

    public string ExcludeOutboundPorts { get; init; } = string.Empty;

    public string ExcludeOutboundCidrs { get; init; } = string.Empty;

    public string IncludeOutboundCidrs { get; init; } = string.Empty;

    public string IptablesMode { get; init; } = "auto";

    public string UnknownDestination { get; init; } = "deny";

    /// <summary>The webhook's destination index, which transparent sidecars follow.</summary>
    public string IndexUrl { get; init; } = "https://backendtls-webhook.backendtls-system.svc/index/v1";

    public string ImagePullPolicy { get; init; } = "IfNotPresent";

    public string PolicyConfigMap { get; init; } = "backendtls-policy";

    /// <summary>A kubernetes.io/tls Secret in the pod's namespace that the sidecar presents to backends (mutual TLS); null: none.</summary>
    public string? ClientCertificateSecret { get; init; }

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
