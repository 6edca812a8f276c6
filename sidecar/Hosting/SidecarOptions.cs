using System.Net;
using BackendTls.Policy.Cli;
using BackendTls.Policy.Loading;

namespace BackendTls.Sidecar.Hosting;

/// <summary>
/// Process settings of <c>run</c>, from flags or environment variables (<c>BACKENDTLS_NAME</c>), through
/// one <see cref="FlagSet"/>. Validated once at start: every problem is reported together, each naming the
/// flag and the fix.
/// </summary>
internal sealed record SidecarOptions
{
    public string ConfigDir { get; init; } = "/etc/backendtls/config";

    /// <summary>Where the gateway sends plain HTTP. Loopback by default: the proxy must not be an open relay.</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, 15001);

    public IPEndPoint Admin { get; init; } = new(IPAddress.Any, 15090);

    public string ClusterDomain { get; init; } = ConfigLoader.DefaultClusterDomain;

    /// <summary>curl-style overrides: connect to ADDR instead of resolving HOST:PORT.</summary>
    public IReadOnlyDictionary<string, string> Resolve { get; init; } = new Dictionary<string, string>();

    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Time a client has to send the request headers (slowloris guard).</summary>
    public TimeSpan RequestHeadersTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a backend may take to send the response headers, counted from the end of the request.</summary>
    public TimeSpan ResponseTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long a body may stop moving (either way) before the exchange is given up.</summary>
    public TimeSpan BodyIdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long an upgraded connection (WebSocket) may carry no byte either way before it is closed.</summary>
    public TimeSpan UpgradeIdleTimeout { get; init; } = TimeSpan.FromHours(1);

    /// <summary>A mounted kubernetes.io/tls Secret (tls.crt, tls.key) presented to backends that require mutual TLS; null: none.</summary>
    public string? ClientCertificateDir { get; init; }

    /// <summary>Idle keep-alive time of connections from the gateway.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Idle time after which a pooled backend connection is closed.</summary>
    public TimeSpan UpstreamIdleTimeout { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>On SIGTERM: how long in-flight requests may take to finish.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(25);

    /// <summary>Polling interval for config changes, in addition to file system events.</summary>
    public TimeSpan ReloadPollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Transparent capture: the port the capture rules redirect to, on 127.0.0.1 and [::1]; 0 turns it off.</summary>
    public int CapturePort { get; init; }

    /// <summary>What a captured connection to a destination the index does not know gets: deny, or passthrough (fail-open).</summary>
    public string UnknownDestination { get; init; } = "deny";

    /// <summary>How long a connection to an unknown destination waits for the index to learn of it.</summary>
    public TimeSpan UnknownHold { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>The webhook's live destination index (transparent mode); null: the mounted destinations.json only.</summary>
    public Uri? IndexUrl { get; init; }

    /// <summary>The projected service-account token the index is asked with.</summary>
    public string IndexTokenFile { get; init; } = "/var/run/secrets/backendtls/index/token";

    public string LogFormat { get; init; } = "text";

    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    public const string Synopsis = """
        backendtls-sidecar [run] [flags]   proxy plain HTTP to backends over verified TLS
        """;

    /// <summary>The flags of <c>run</c>, bound to a fresh set each time (parsing keeps state in it).</summary>
    private sealed class RunFlags
    {
        public RunFlags()
        {
            var d = new SidecarOptions();
            Set = new FlagSet("run", Synopsis, "BACKENDTLS_");
            ConfigDir = Set.Add("config-dir", d.ConfigDir, FlagValues.Text, "policy directory (the mounted ConfigMap)", "DIR");
            Listen = Set.Add("listen", d.Listen, FlagValues.Endpoint, "plain-HTTP listener for the gateway", "ADDR:PORT");
            Admin = Set.Add("admin", d.Admin, FlagValues.Endpoint, "metrics and health listener", "ADDR:PORT");
            ClusterDomain = Set.Add("cluster-domain", d.ClusterDomain, ParseDomain, "Service DNS suffix", "DOMAIN");
            Resolve = Set.Add<KeyValuePair<string, string>>("resolve", default, ParseResolve, "connect to ADDR for HOST:PORT, like curl", "HOST:PORT:ADDR[:PORT]", repeatable: true);
            ConnectTimeout = Set.Add("connect-timeout", d.ConnectTimeout, FlagValues.Seconds(), "TCP connect to a backend", "SECONDS");
            HandshakeTimeout = Set.Add("handshake-timeout", d.HandshakeTimeout, FlagValues.Seconds(), "TLS handshake with a backend", "SECONDS");
            RequestHeadersTimeout = Set.Add("request-headers-timeout", d.RequestHeadersTimeout, FlagValues.Seconds(), "the gateway sends a request head within", "SECONDS");
            ResponseTimeout = Set.Add("response-timeout", d.ResponseTimeout, FlagValues.Seconds(), "the backend sends response headers within, after the request", "SECONDS");
            BodyIdleTimeout = Set.Add("body-idle-timeout", d.BodyIdleTimeout, FlagValues.Seconds(), "a body may stall (either way) for", "SECONDS");
            UpgradeIdleTimeout = Set.Add("upgrade-idle-timeout", d.UpgradeIdleTimeout, FlagValues.Seconds(), "an upgraded connection (WebSocket) may be silent both ways for", "SECONDS");
            ClientCertificateDir = Set.Add<string?>("client-certificate-dir", null, v => (v, null), "a kubernetes.io/tls Secret's directory (tls.crt, tls.key) to present to backends (mutual TLS)", "DIR");
            IdleTimeout = Set.Add("idle-timeout", d.IdleTimeout, FlagValues.Seconds(), "keep-alive of gateway connections", "SECONDS");
            UpstreamIdleTimeout = Set.Add("upstream-idle-timeout", d.UpstreamIdleTimeout, FlagValues.Seconds(), "idle time of pooled backend connections", "SECONDS");
            DrainTimeout = Set.Add("drain-timeout", d.DrainTimeout, FlagValues.Seconds(allowZero: true), "on SIGTERM, finish in-flight requests within", "SECONDS");
            CapturePort = Set.Add("capture-port", d.CapturePort, FlagValues.WholeNumber(0, 65535), "transparent capture listener on 127.0.0.1 and [::1] (0: off)", "PORT");
            UnknownDestination = Set.Add("unknown-destination", d.UnknownDestination, FlagValues.OneOf("deny", "passthrough"), "captured connections the index does not know", "deny|passthrough");
            IndexUrl = Set.Add<Uri?>("index-url", null, ParseIndexUrl, "the webhook's live destination index (https://.../index/v1)", "URL");
            IndexTokenFile = Set.Add("index-token-file", d.IndexTokenFile, FlagValues.Text, "projected service-account token for the index", "PATH");
            UnknownHold = Set.Add("unknown-hold", d.UnknownHold, FlagValues.Seconds(allowZero: true, max: 60), "wait this long for the index to learn an unknown destination", "SECONDS");
            LogFormat = Set.Add("log-format", d.LogFormat, FlagValues.OneOf("text", "json"), "json in containers", "text|json");
            LogLevel = Set.Add("log-level", d.LogLevel, ParseLevel, "Trace, Debug, Information, Warning, Error or Critical", "LEVEL");
        }

        public FlagSet Set { get; }

        public Flag<string> ConfigDir { get; }

        public Flag<IPEndPoint> Listen { get; }

        public Flag<IPEndPoint> Admin { get; }

        public Flag<string> ClusterDomain { get; }

        public Flag<KeyValuePair<string, string>> Resolve { get; }

        public Flag<TimeSpan> ConnectTimeout { get; }

        public Flag<TimeSpan> HandshakeTimeout { get; }

        public Flag<TimeSpan> RequestHeadersTimeout { get; }

        public Flag<TimeSpan> ResponseTimeout { get; }

        public Flag<TimeSpan> BodyIdleTimeout { get; }

        public Flag<TimeSpan> UpgradeIdleTimeout { get; }

        public Flag<string?> ClientCertificateDir { get; }

        public Flag<TimeSpan> IdleTimeout { get; }

        public Flag<TimeSpan> UpstreamIdleTimeout { get; }

        public Flag<TimeSpan> DrainTimeout { get; }

        public Flag<int> CapturePort { get; }

        public Flag<string> UnknownDestination { get; }

        public Flag<TimeSpan> UnknownHold { get; }

        public Flag<Uri?> IndexUrl { get; }

        public Flag<string> IndexTokenFile { get; }

        public Flag<string> LogFormat { get; }

        public Flag<LogLevel> LogLevel { get; }
    }

    public static string Usage => new RunFlags().Set.Usage;

    /// <summary>Parses flags over environment variables over defaults.</summary>
    /// <exception cref="OptionsException">Every unknown flag and bad value; each line says which and why.</exception>
    public static SidecarOptions Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        var flags = new RunFlags();
        var errors = flags.Set.Parse(args, environment).ToList();
        if (flags.Set.HelpRequested)
        {
            throw new OptionsException([], helpRequested: true);
        }

        var options = new SidecarOptions
        {
            ConfigDir = flags.ConfigDir.Value,
            Listen = flags.Listen.Value,
            Admin = flags.Admin.Value,
            ClusterDomain = flags.ClusterDomain.Value,
            Resolve = flags.Resolve.Values.ToDictionary(p => p.Key, p => p.Value, StringComparer.OrdinalIgnoreCase),
            ConnectTimeout = flags.ConnectTimeout.Value,
            HandshakeTimeout = flags.HandshakeTimeout.Value,
            RequestHeadersTimeout = flags.RequestHeadersTimeout.Value,
            ResponseTimeout = flags.ResponseTimeout.Value,
            BodyIdleTimeout = flags.BodyIdleTimeout.Value,
            UpgradeIdleTimeout = flags.UpgradeIdleTimeout.Value,
            ClientCertificateDir = string.IsNullOrEmpty(flags.ClientCertificateDir.Value) ? null : flags.ClientCertificateDir.Value,
            IdleTimeout = flags.IdleTimeout.Value,
            UpstreamIdleTimeout = flags.UpstreamIdleTimeout.Value,
            DrainTimeout = flags.DrainTimeout.Value,
            CapturePort = flags.CapturePort.Value,
            UnknownDestination = flags.UnknownDestination.Value,
            UnknownHold = flags.UnknownHold.Value,
            IndexUrl = flags.IndexUrl.Value,
            IndexTokenFile = flags.IndexTokenFile.Value,
            LogFormat = flags.LogFormat.Value,
            LogLevel = flags.LogLevel.Value,
        };
        errors.AddRange(options.Problems());
        return errors.Count > 0 ? throw new OptionsException(errors) : options;
    }

    /// <summary>Combinations that cannot work, and the checks for options built in code rather than parsed.</summary>
    public IEnumerable<string> Problems()
    {
        if (Listen.Port == Admin.Port && Listen.Port != 0)
        {
            yield return $"--listen and --admin both use port {Listen.Port}; give the admin listener its own port";
        }

        if (CapturePort != 0 && (CapturePort == Listen.Port || CapturePort == Admin.Port))
        {
            yield return $"--capture-port {CapturePort} is also --listen or --admin; give the capture listener its own port";
        }

        if (string.IsNullOrWhiteSpace(ConfigDir))
        {
            yield return "--config-dir is empty; point it at the mounted policy ConfigMap";
        }

        if (!BackendTls.Policy.Validation.Names.IsDns1123Subdomain(ClusterDomain))
        {
            yield return $"--cluster-domain \"{ClusterDomain}\" is not a DNS name (e.g. cluster.local)";
        }
    }

    private static (Uri?, string?) ParseIndexUrl(string value) =>
        Uri.TryCreate(value, UriKind.Absolute, out var uri) && uri.Scheme == "https" ? (uri, null) : (null, "is not an https URL (e.g. https://backendtls-webhook.backendtls-system.svc/index/v1)");

    private static (string, string?) ParseDomain(string value) =>
        BackendTls.Policy.Validation.Names.IsDns1123Subdomain(value) ? (value, null) : (value, "is not a DNS name (e.g. cluster.local)");

    private static (LogLevel, string?) ParseLevel(string value) => Enum.TryParse<LogLevel>(value, ignoreCase: true, out var level) && Enum.IsDefined(level)
        ? (level, null)
        : (LogLevel.Information, "is not a log level; use Trace, Debug, Information, Warning, Error or Critical");

    /// <summary>HOST:PORT:ADDR, or HOST:PORT:ADDR:PORT2 to also change the port (IPv6 in brackets).</summary>
    private static (KeyValuePair<string, string>, string?) ParseResolve(string entry)
    {
        var first = entry.IndexOf(':', StringComparison.Ordinal);
        var second = first < 0 ? -1 : entry.IndexOf(':', first + 1);
        if (second < 0 || !int.TryParse(entry.AsSpan(first + 1, second - first - 1), out var port) || port is < 1 or > 65535)
        {
            return (default, "is not HOST:PORT:ADDR[:PORT] (e.g. httpbin.httpbin.svc.cluster.local:8443:127.0.0.1)");
        }

        var target = entry[(second + 1)..];
        string endpoint;
        if (IPAddress.TryParse(target.Trim('[', ']'), out var address))
        {
            endpoint = new IPEndPoint(address, port).ToString();
        }
        else if (IPEndPoint.TryParse(target, out var withPort) && withPort.Port > 0)
        {
            endpoint = withPort.ToString();
        }
        else
        {
            return (default, $"names \"{target}\", which is not an IP address (optionally with :PORT)");
        }

        return (new KeyValuePair<string, string>(entry[..second].ToLowerInvariant(), endpoint), null);
    }
}
