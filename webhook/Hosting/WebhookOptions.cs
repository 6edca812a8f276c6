using System.Globalization;
using System.Net;
using BackendTls.Webhook.Injection;

namespace BackendTls.Webhook.Hosting;

/// <summary>Webhook process settings from flags (<c>--name value</c>) or <c>BACKENDTLS_WEBHOOK_NAME</c> variables.</summary>
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

    public InjectorSettings Injector { get; init; } = new();

    public const string Usage = """
        backendtls-webhook [serve] [options]           the mutating admission webhook
        backendtls-webhook inject -f FILE [-f FILE...]  inject manifests offline (like istioctl kube-inject); '-' is stdin

        serve options (flag, or BACKENDTLS_WEBHOOK_<NAME> with - as _):
          --listen ADDR:PORT            HTTPS listener for /mutate                   [0.0.0.0:8443]
          --metrics ADDR:PORT           plain HTTP: /metrics /healthz/live /healthz/ready [0.0.0.0:9090]
          --tls-cert-file PATH          serving certificate (PEM)   [/etc/backendtls-webhook/tls/tls.crt]
          --tls-key-file PATH           its private key (PEM)       [/etc/backendtls-webhook/tls/tls.key]
          --log-format text|json                                                      [text]
          --certificate-mode MODE       files (mounted Secret, e.g. cert-manager) or self-managed [files]
          --certificate-secret NAME     self-managed: Secret holding the CA and certificate [backendtls-webhook-tls]
          --service NAME                self-managed: the webhook Service (certificate DNS names) [backendtls-webhook]
          --webhook-configuration NAME  self-managed: MutatingWebhookConfiguration whose caBundle is kept in sync
                                                                                      [backendtls-sidecar-injector]
          --namespace-lookup true|false also check namespace labels in code           [true]
          --controller true|false       run the BackendTLSPolicy controller (leader-elected) [true]
          --resync SECONDS              controller: full pass at least this often     [30]
        injection defaults (serve and inject):
          --sidecar-image IMAGE         [backendtls-sidecar:0.1.0]
          --policy-configmap NAME       ConfigMap mounted as the sidecar's config     [backendtls-policy]
          --native-sidecar true|false   false for clusters older than 1.29            [true]
          --cpu-request Q --memory-request Q --cpu-limit Q --memory-limit Q  [50m, 32Mi, none, 128Mi]
          --webhook-namespace NS        never injected (POD_NAMESPACE)                [backendtls-system]
        """;

    public static WebhookOptions Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in Known)
        {
            if (environment("BACKENDTLS_WEBHOOK_" + name.Replace('-', '_').ToUpperInvariant()) is { Length: > 0 } env)
            {
                values[name] = env;
            }
        }

        if (environment("POD_NAMESPACE") is { Length: > 0 } podNamespace && !values.ContainsKey("webhook-namespace"))
        {
            values["webhook-namespace"] = podNamespace;
        }

        for (var i = 0; i < args.Count; i++)
        {
            var name = args[i].StartsWith("--", StringComparison.Ordinal) ? args[i][2..] : throw new ArgumentException($"unexpected argument \"{args[i]}\"");
            if (!Known.Contains(name))
            {
                throw new ArgumentException($"unknown flag --{name}; see --help");
            }

            if (i + 1 >= args.Count)
            {
                throw new ArgumentException($"--{name} needs a value");
            }

            values[name] = args[++i];
        }

        var o = new WebhookOptions();
        var injector = o.Injector;
        string? V(string name) => values.GetValueOrDefault(name);
        return o with
        {
            Listen = V("listen") is { } l ? Endpoint("listen", l) : o.Listen,
            Metrics = V("metrics") is { } m ? Endpoint("metrics", m) : o.Metrics,
            CertificateFile = V("tls-cert-file") ?? o.CertificateFile,
            KeyFile = V("tls-key-file") ?? o.KeyFile,
            LogFormat = V("log-format") is { } f ? (f is "text" or "json" ? f : throw new ArgumentException($"--log-format \"{f}\": use text or json")) : o.LogFormat,
            CertificateMode = V("certificate-mode") is { } cm ? (cm is "files" or "self-managed" ? cm : throw new ArgumentException($"--certificate-mode \"{cm}\": use files or self-managed")) : o.CertificateMode,
            CertificateSecret = V("certificate-secret") ?? o.CertificateSecret,
            ServiceName = V("service") ?? o.ServiceName,
            WebhookConfiguration = V("webhook-configuration") ?? o.WebhookConfiguration,
            Controller = V("controller") is { } c ? (bool.TryParse(c, out var run) ? run : throw new ArgumentException($"--controller \"{c}\": use true or false")) : o.Controller,
            Resync = V("resync") is { } r ? (int.TryParse(r, out var seconds) && seconds is > 0 and <= 3600 ? TimeSpan.FromSeconds(seconds) : throw new ArgumentException($"--resync \"{r}\": seconds, 1-3600")) : o.Resync,
            NamespaceLookup = V("namespace-lookup") is { } nl ? (bool.TryParse(nl, out var lookup) ? lookup : throw new ArgumentException($"--namespace-lookup \"{nl}\": use true or false")) : o.NamespaceLookup,
            Injector = injector with
            {
                SidecarImage = V("sidecar-image") ?? injector.SidecarImage,
                PolicyConfigMap = V("policy-configmap") ?? injector.PolicyConfigMap,
                NativeSidecar = V("native-sidecar") is { } n ? (bool.TryParse(n, out var b) ? b : throw new ArgumentException($"--native-sidecar \"{n}\": use true or false")) : injector.NativeSidecar,
                CpuRequest = V("cpu-request") ?? injector.CpuRequest,
                MemoryRequest = V("memory-request") ?? injector.MemoryRequest,
                CpuLimit = V("cpu-limit") ?? injector.CpuLimit,
                MemoryLimit = V("memory-limit") ?? injector.MemoryLimit,
                WebhookNamespace = V("webhook-namespace") ?? injector.WebhookNamespace,
            },
        };
    }

    private static readonly HashSet<string> Known =
    [
        "listen", "metrics", "tls-cert-file", "tls-key-file", "log-format", "sidecar-image", "policy-configmap", "native-sidecar",
        "cpu-request", "memory-request", "cpu-limit", "memory-limit", "webhook-namespace",
        "certificate-mode", "certificate-secret", "service", "webhook-configuration", "namespace-lookup", "controller", "resync",
    ];

    private static IPEndPoint Endpoint(string flag, string value) =>
        IPEndPoint.TryParse(value, out var endpoint) && endpoint.Port > 0
            ? endpoint
            : throw new ArgumentException($"--{flag} \"{value}\" is not ADDR:PORT, e.g. 0.0.0.0:{(flag == "listen" ? 8443 : 9090).ToString(CultureInfo.InvariantCulture)}");
}
