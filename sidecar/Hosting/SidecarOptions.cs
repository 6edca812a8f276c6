using System.Globalization;
using System.Net;
using BackendTls.Policy.Loading;

namespace BackendTls.Sidecar.Hosting;

/// <summary>
/// Process settings, from flags (<c>--name value</c>) or environment variables (<c>BACKENDTLS_NAME</c>).
/// Validated once at start: a bad value stops the process with a message naming the flag and the fix.
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

    /// <summary>How long a backend may take to send the response headers.</summary>
    public TimeSpan ResponseTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long a body may stop moving (either way) before the exchange is given up.</summary>
    public TimeSpan BodyIdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Idle keep-alive time of connections from the gateway.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Idle time after which a pooled backend connection is closed.</summary>
    public TimeSpan UpstreamIdleTimeout { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>On SIGTERM: how long in-flight requests may take to finish.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(25);

    /// <summary>Polling interval for config changes, in addition to file system events.</summary>
    public TimeSpan ReloadPollInterval { get; init; } = TimeSpan.FromSeconds(1);

    public string LogFormat { get; init; } = "text";

    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    public const string Usage = """
        backendtls-sidecar [run] [options]     proxy plain HTTP to backends over verified TLS
        backendtls-sidecar render [options]    turn BackendTLSPolicy manifests into a config directory
        backendtls-sidecar demo                run a self-contained demo on loopback (no cluster needed)
        backendtls-sidecar wait [--url U] [--timeout S]   exit 0 once the sidecar is ready (postStart hook)

        run options (flag, or environment variable BACKENDTLS_<NAME> with - as _):
          --config-dir DIR              policy directory (ConfigMap mount)   [/etc/backendtls/config]
          --listen ADDR:PORT            plain-HTTP listener                  [127.0.0.1:15001]
          --admin ADDR:PORT             metrics/health listener              [0.0.0.0:15090]
          --cluster-domain DOMAIN       Service DNS suffix                   [cluster.local]
          --resolve HOST:PORT:ADDR      connect to ADDR for HOST:PORT (repeatable, like curl)
          --connect-timeout SECONDS     TCP connect to a backend             [5]
          --handshake-timeout SECONDS   TLS handshake with a backend         [5]
          --request-headers-timeout S   client must send headers within S    [10]
          --response-timeout SECONDS    backend must send response headers   [60]
          --body-idle-timeout SECONDS   a body may stall (either way) for S   [60]
          --idle-timeout SECONDS        keep-alive of gateway connections    [120]
          --upstream-idle-timeout S     pooled backend connection idle time  [90]
          --drain-timeout SECONDS       finish in-flight requests on SIGTERM [25]
          --log-format text|json        json in containers                   [text]
          --log-level LEVEL             Trace..Critical                      [Information]
        """;

    /// <summary>Parses flags over environment variables over defaults.</summary>
    /// <exception cref="OptionsException">An unknown flag or a bad value; the message says which and why.</exception>
    public static SidecarOptions Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        var values = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var name in KnownFlags)
        {
            var env = environment("BACKENDTLS_" + name.Replace('-', '_').ToUpperInvariant());
            if (!string.IsNullOrEmpty(env))
            {
                // Environment lists (resolve) are comma-separated.
                values[name] = [.. env.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
            }
        }

        var fromFlags = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                throw new OptionsException($"unexpected argument \"{arg}\"; flags look like --name value");
            }

            var name = arg[2..];
            string value;
            var eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            else if (i + 1 < args.Count)
            {
                value = args[++i];
            }
            else
            {
                throw new OptionsException($"--{name} needs a value");
            }

            if (!KnownFlags.Contains(name))
            {
                throw new OptionsException($"unknown flag --{name}; see --help");
            }

            if (fromFlags.Add(name))
            {
                values[name] = [];
            }

            values[name].Add(value);
        }

        var options = new SidecarOptions();
        string? One(string name) => values.TryGetValue(name, out var v) ? v[^1] : null;
        return options with
        {
            ConfigDir = One("config-dir") ?? options.ConfigDir,
            Listen = One("listen") is { } l ? ParseEndpoint("listen", l) : options.Listen,
            Admin = One("admin") is { } a ? ParseEndpoint("admin", a) : options.Admin,
            ClusterDomain = One("cluster-domain") ?? options.ClusterDomain,
            Resolve = values.TryGetValue("resolve", out var r) ? ParseResolve(r) : options.Resolve,
            ConnectTimeout = Seconds("connect-timeout", One("connect-timeout")) ?? options.ConnectTimeout,
            HandshakeTimeout = Seconds("handshake-timeout", One("handshake-timeout")) ?? options.HandshakeTimeout,
            RequestHeadersTimeout = Seconds("request-headers-timeout", One("request-headers-timeout")) ?? options.RequestHeadersTimeout,
            ResponseTimeout = Seconds("response-timeout", One("response-timeout")) ?? options.ResponseTimeout,
            BodyIdleTimeout = Seconds("body-idle-timeout", One("body-idle-timeout")) ?? options.BodyIdleTimeout,
            IdleTimeout = Seconds("idle-timeout", One("idle-timeout")) ?? options.IdleTimeout,
            UpstreamIdleTimeout = Seconds("upstream-idle-timeout", One("upstream-idle-timeout")) ?? options.UpstreamIdleTimeout,
            DrainTimeout = Seconds("drain-timeout", One("drain-timeout"), allowZero: true) ?? options.DrainTimeout,
            LogFormat = One("log-format") is { } f ? ParseLogFormat(f) : options.LogFormat,
            LogLevel = One("log-level") is { } lvl ? ParseLevel(lvl) : options.LogLevel,
        };
    }

    private static readonly HashSet<string> KnownFlags =
    [
        "config-dir", "listen", "admin", "cluster-domain", "resolve", "connect-timeout", "handshake-timeout",
        "request-headers-timeout", "response-timeout", "body-idle-timeout", "idle-timeout", "upstream-idle-timeout", "drain-timeout", "log-format", "log-level",
    ];

    private static IPEndPoint ParseEndpoint(string flag, string value)
    {
        if (IPEndPoint.TryParse(value, out var endpoint) && endpoint.Port is > 0 and <= 65535)
        {
            return endpoint;
        }

        if (value.StartsWith("localhost:", StringComparison.Ordinal)
            && int.TryParse(value.AsSpan(10), out var port) && port is > 0 and <= 65535)
        {
            return new IPEndPoint(IPAddress.Loopback, port);
        }

        throw new OptionsException($"--{flag} \"{value}\" is not ADDR:PORT (an IP address and a port, e.g. 127.0.0.1:15001)");
    }

    private static Dictionary<string, string> ParseResolve(List<string> entries)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var entry in entries)
        {
            // HOST:PORT:ADDR, or HOST:PORT:ADDR:PORT2 to also change the port (IPv6 in brackets).
            var first = entry.IndexOf(':', StringComparison.Ordinal);
            var second = first < 0 ? -1 : entry.IndexOf(':', first + 1);
            if (second < 0 || !int.TryParse(entry.AsSpan(first + 1, second - first - 1), out var port) || port is < 1 or > 65535)
            {
                throw new OptionsException($"--resolve \"{entry}\" is not HOST:PORT:ADDR[:PORT] (e.g. httpbin.httpbin.svc.cluster.local:8443:127.0.0.1)");
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
                throw new OptionsException($"--resolve \"{entry}\": \"{target}\" is not an IP address (optionally with :PORT)");
            }

            result[entry[..second].ToLowerInvariant()] = endpoint;
        }

        return result;
    }

    private static TimeSpan? Seconds(string flag, string? value, bool allowZero = false)
    {
        if (value is null)
        {
            return null;
        }

        if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds)
            && (seconds > 0 || (allowZero && seconds == 0)) && seconds <= 86400)
        {
            return TimeSpan.FromSeconds(seconds);
        }

        throw new OptionsException($"--{flag} \"{value}\" is not a number of seconds ({(allowZero ? "0" : "above 0")} to 86400)");
    }

    private static string ParseLogFormat(string value) => value is "text" or "json"
        ? value
        : throw new OptionsException($"--log-format \"{value}\": use text or json");

    private static LogLevel ParseLevel(string value) => Enum.TryParse<LogLevel>(value, ignoreCase: true, out var level)
        ? level
        : throw new OptionsException($"--log-level \"{value}\": use Trace, Debug, Information, Warning, Error or Critical");
}

/// <summary>A bad command line or environment setting.</summary>
internal sealed class OptionsException(string message) : Exception(message);
