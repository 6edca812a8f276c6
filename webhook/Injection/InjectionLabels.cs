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

    public static IReadOnlyList<string> Overrides { get; } =
    [
        SidecarImage, CpuRequest, CpuLimit, MemoryRequest, MemoryLimit, LogLevel, ListenPort, PolicyConfigMap, NativeSidecar, DrainTimeout,
    ];
}
