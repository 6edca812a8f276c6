using System.Net;
using BackendTls.Policy.Cli;
using BackendTls.Webhook.Injection;

namespace BackendTls.Webhook.Hosting;

/// <summary>Webhook process settings from flags or <c>BACKENDTLS_WEBHOOK_NAME</c> variables, through one <see cref="FlagSet"/>.</summary>
internal sealed record WebhookOptions
{
    public IPEndPoint Listen { get; init; } = new(IPAddress.Any, 8443);

    public IPEndPoint Metrics { get; init; } = new(IPAddress.Any, 9090);

    /// <summary><c>files</c> (a mounted Secret, e.g. cert-manager) or <c>self-managed</c>.</summary>
    public string CertificateMode { get; init; } = "files";

    public string CertificateFile { get; init; } = "/etc/backendtls-webhook/tls/tls.crt";

    public string KeyFile { get; init; } = "/etc/backendtls-webhook/tls/tls.key";

    public string LogFormat { get; init; } = "text";

    public string CertificateSecret { get; init; } = "backendtls-webhook-tls";

    public string ServiceName { get; init; } = "backendtls-webhook";

    public string WebhookConfiguration { get; init; } = "backendtls-sidecar-injector";

    /// <summary>Also read namespace labels from the API (needs get on namespaces); otherwise trust the selector.</summary>
    public bool NamespaceLookup { get; init; } = true;

    /// <summary>Run the BackendTLSPolicy controller (leader-elected) in this process.</summary>
    public bool Controller { get; init; } = true;

    public TimeSpan Resync { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Serve the destination index to transparent-mode sidecars (watches Services and EndpointSlices).</summary>
    public bool DestinationIndex { get; init; } = true;

    public InjectorSettings Injector { get; init; } = new();

    public const string Commands = """
        backendtls-webhook [serve] [flags]             the mutating admission webhook and the BackendTLSPolicy controller
        backendtls-webhook inject -f FILE [-f FILE...]  inject manifests offline (like istioctl kube-inject); '-' is stdin
        backendtls-webhook COMMAND --help               the flags of a command
        """;

    private sealed class ServeFlags
    {
        public ServeFlags()
        {
            var d = new WebhookOptions();
            Set = new FlagSet("serve", "backendtls-webhook [serve] [flags]   the mutating admission webhook and the BackendTLSPolicy controller", "BACKENDTLS_WEBHOOK_");
            Listen = Set.Add("listen", d.Listen, FlagValues.Endpoint, "HTTPS listener for /mutate", "ADDR:PORT");
            Metrics = Set.Add("metrics", d.Metrics, FlagValues.Endpoint, "plain HTTP: /metrics /healthz/live /healthz/ready", "ADDR:PORT");
            CertificateFile = Set.Add("tls-cert-file", d.CertificateFile, FlagValues.Text, "serving certificate (PEM)", "PATH");
            KeyFile = Set.Add("tls-key-file", d.KeyFile, FlagValues.Text, "its private key (PEM)", "PATH");
            LogFormat = Set.Add("log-format", d.LogFormat, FlagValues.OneOf("text", "json"), "json in containers", "text|json");
            CertificateMode = Set.Add("certificate-mode", d.CertificateMode, FlagValues.OneOf("files", "self-managed"), "files (a mounted Secret, e.g. cert-manager) or self-managed", "MODE");
            CertificateSecret = Set.Add("certificate-secret", d.CertificateSecret, FlagValues.Text, "self-managed: the Secret holding the CA and certificate", "NAME");
            Service = Set.Add("service", d.ServiceName, FlagValues.Text, "self-managed: the webhook Service (certificate DNS names)", "NAME");
            WebhookConfiguration = Set.Add("webhook-configuration", d.WebhookConfiguration, FlagValues.Text, "self-managed: the MutatingWebhookConfiguration whose caBundle is kept in sync", "NAME");
            NamespaceLookup = Set.Add("namespace-lookup", d.NamespaceLookup, FlagValues.Bool, "also check namespace labels in code", "true|false");
            Controller = Set.Add("controller", d.Controller, FlagValues.Bool, "run the BackendTLSPolicy controller (leader-elected)", "true|false");
            Resync = Set.Add("resync", d.Resync, FlagValues.Seconds(max: 3600), "controller: a full pass at least this often", "SECONDS");
            DestinationIndex = Set.Add("destination-index", d.DestinationIndex, FlagValues.Bool, "serve GET /index/v1 to transparent-mode sidecars (watches Services and EndpointSlices)", "true|false");
            Injector = new InjectorFlags(Set);
        }

        public FlagSet Set { get; }

        public Flag<IPEndPoint> Listen { get; }

        public Flag<IPEndPoint> Metrics { get; }

        public Flag<string> CertificateFile { get; }

        public Flag<string> KeyFile { get; }

        public Flag<string> LogFormat { get; }

        public Flag<string> CertificateMode { get; }

        public Flag<string> CertificateSecret { get; }

        public Flag<string> Service { get; }

        public Flag<string> WebhookConfiguration { get; }

        public Flag<bool> NamespaceLookup { get; }

        public Flag<bool> Controller { get; }

        public Flag<TimeSpan> Resync { get; }

        public Flag<bool> DestinationIndex { get; }

        public InjectorFlags Injector { get; }
    }

    public static string Usage => Commands + "\n" + new ServeFlags().Set.Usage;

    /// <exception cref="OptionsException">Every unknown flag and bad value, one per line.</exception>
    public static WebhookOptions Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        var flags = new ServeFlags();
        // The webhook's own namespace comes from the downward API unless a flag or variable names it.
        Func<string, string?> withPodNamespace = name =>
            name == "BACKENDTLS_WEBHOOK_WEBHOOK_NAMESPACE" ? environment(name) ?? environment("POD_NAMESPACE") : environment(name);
        var errors = flags.Set.Parse(args, withPodNamespace);
        if (flags.Set.HelpRequested)
        {
            throw new OptionsException([], helpRequested: true);
        }

        if (errors.Count > 0)
        {
            throw new OptionsException(errors);
        }

        return new WebhookOptions
        {
            Listen = flags.Listen.Value,
            Metrics = flags.Metrics.Value,
            CertificateFile = flags.CertificateFile.Value,
            KeyFile = flags.KeyFile.Value,
            LogFormat = flags.LogFormat.Value,
            CertificateMode = flags.CertificateMode.Value,
            CertificateSecret = flags.CertificateSecret.Value,
            ServiceName = flags.Service.Value,
            WebhookConfiguration = flags.WebhookConfiguration.Value,
            NamespaceLookup = flags.NamespaceLookup.Value,
            Controller = flags.Controller.Value,
            Resync = flags.Resync.Value,
            DestinationIndex = flags.DestinationIndex.Value,
            Injector = flags.Injector.Settings(),
        };
    }
}

/// <summary>The injection defaults, shared by <c>serve</c> and <c>inject</c>: one definition of each flag.</summary>
internal sealed class InjectorFlags
{
    private readonly Flag<string> _image;
    private readonly Flag<string> _configMap;
    private readonly Flag<bool> _native;
    private readonly Flag<string> _cpuRequest;
    private readonly Flag<string> _memoryRequest;
    private readonly Flag<string> _cpuLimit;
    private readonly Flag<string> _memoryLimit;
    private readonly Flag<string> _webhookNamespace;
    private readonly Flag<string> _captureMode;
    private readonly Flag<string> _captureImage;
    private readonly Flag<string> _indexUrl;

    public InjectorFlags(FlagSet set)
    {
        var d = new InjectorSettings();
        _image = set.Add("sidecar-image", d.SidecarImage, FlagValues.Text, "the sidecar image", "IMAGE");
        _configMap = set.Add("policy-configmap", d.PolicyConfigMap, FlagValues.Text, "ConfigMap mounted as the sidecar's config", "NAME");
        _native = set.Add("native-sidecar", d.NativeSidecar, FlagValues.Bool, "native sidecar (Kubernetes 1.29+); false for older clusters", "true|false");
        _cpuRequest = set.Add("cpu-request", d.CpuRequest, Quantity, "the sidecar's CPU request", "QUANTITY");
        _memoryRequest = set.Add("memory-request", d.MemoryRequest, Quantity, "the sidecar's memory request", "QUANTITY");
        _cpuLimit = set.Add("cpu-limit", d.CpuLimit ?? string.Empty, QuantityOrNone, "the sidecar's CPU limit", "QUANTITY|none", defaultText: "none");
        _memoryLimit = set.Add("memory-limit", d.MemoryLimit ?? string.Empty, QuantityOrNone, "the sidecar's memory limit", "QUANTITY|none");
        _webhookNamespace = set.Add("webhook-namespace", d.WebhookNamespace, FlagValues.Text, "never injected (POD_NAMESPACE)", "NS");
        _captureMode = set.Add("capture-mode", d.CaptureMode, FlagValues.OneOf("transparent", "explicit"), "how gateway traffic reaches the sidecar, by default", "transparent|explicit");
        _captureImage = set.Add("capture-init-image", d.CaptureInitImage, FlagValues.Text, "the capture-init image (Dockerfile.sidecar, target capture-init)", "IMAGE");
        _indexUrl = set.Add("index-url", string.Empty, FlagValues.Text, "the destination index sidecars follow [https://backendtls-webhook.WEBHOOK-NAMESPACE.svc/index/v1, the Service port 443]", "URL", defaultText: null);
    }

    private static (string, string?) Quantity(string value) =>
        PodOverrides.IsPositiveQuantity(value) ? (value, null) : (value, PodOverrides.NotAQuantity);

    private static (string, string?) QuantityOrNone(string value) => value == "none" ? (string.Empty, null) : Quantity(value);

    public InjectorSettings Settings() => new InjectorSettings() with
    {
        SidecarImage = _image.Value,
        PolicyConfigMap = _configMap.Value,
        NativeSidecar = _native.Value,
        CpuRequest = _cpuRequest.Value,
        MemoryRequest = _memoryRequest.Value,
        CpuLimit = _cpuLimit.Value is { Length: > 0 } cpu ? cpu : null,
        MemoryLimit = _memoryLimit.Value is { Length: > 0 } memory ? memory : null,
        WebhookNamespace = _webhookNamespace.Value,
        CaptureMode = _captureMode.Value,
        CaptureInitImage = _captureImage.Value,
        IndexUrl = _indexUrl.IsSet ? _indexUrl.Value : $"https://backendtls-webhook.{_webhookNamespace.Value}.svc/index/v1",
    };
}
