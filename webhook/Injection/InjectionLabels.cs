namespace BackendTls.Webhook.Injection;

/// <summary>The labels and annotations users and the injector put on namespaces and pods.</summary>
internal static class InjectionLabels
{
    /// <summary>Namespace label (enabled) and pod label (enabled/disabled) selecting injection.</summary>
    public const string Inject = "backendtls.io/inject";
    public const string Enabled = "enabled";
    public const string Disabled = "disabled";

    /// <summary>Annotation recording what was injected (JSON, see <see cref="InjectionStatus"/>).</summary>
    public const string Status = "backendtls.io/status";

    public const string Prefix = "backendtls.io/";
    public const string SidecarImage = "backendtls.io/sidecar-image";
    public const string CpuRequest = "backendtls.io/cpu-request";
    public const string CpuLimit = "backendtls.io/cpu-limit";
    public const string MemoryRequest = "backendtls.io/memory-request";
    public const string MemoryLimit = "backendtls.io/memory-limit";
    public const string LogLevel = "backendtls.io/log-level";
    public const string ListenPort = "backendtls.io/listen-port";
    public const string PolicyConfigMap = "backendtls.io/policy-configmap";
    public const string NativeSidecar = "backendtls.io/native-sidecar";
    public const string DrainTimeout = "backendtls.io/drain-timeout";
    public const string Capture = "backendtls.io/capture";
    public const string CapturePorts = "backendtls.io/capture-ports";
    public const string ExcludeOutboundPorts = "backendtls.io/exclude-outbound-ports";
    public const string ExcludeOutboundCidrs = "backendtls.io/exclude-outbound-cidrs";
    public const string IncludeOutboundCidrs = "backendtls.io/include-outbound-cidrs";
    public const string IptablesMode = "backendtls.io/iptables-mode";
    public const string ProxyUid = "backendtls.io/proxy-uid";
    public const string UnknownDestination = "backendtls.io/unknown-destination";
    public const string ClientCertificateSecret = "backendtls.io/client-certificate-secret";

    /// <summary>What the injector decided for capture (JSON, see <see cref="CaptureConfig"/>): read by the controller and a future CNI plugin.</summary>
    public const string CaptureConfig = "backendtls.io/capture-config";

    /// <summary>Namespace label of Pod Security Admission: baseline and restricted forbid NET_ADMIN.</summary>
    public const string PodSecurityEnforce = "pod-security.kubernetes.io/enforce";

    public static IReadOnlyList<string> Overrides { get; } =
    [
        SidecarImage, CpuRequest, CpuLimit, MemoryRequest, MemoryLimit, LogLevel, ListenPort, PolicyConfigMap, NativeSidecar, DrainTimeout,
        Capture, CapturePorts, ExcludeOutboundPorts, ExcludeOutboundCidrs, IncludeOutboundCidrs, IptablesMode, ProxyUid, UnknownDestination,
        ClientCertificateSecret,
    ];
}
