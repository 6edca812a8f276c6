using System.Security.Authentication;

namespace BackendTls.Policy.Validation;

/// <summary>Which HTTP versions the sidecar offers the backend in ALPN.</summary>
public enum AlpnMode
{
    /// <summary>Offer h2 and http/1.1; use what the backend picks.</summary>
    Http2AndHttp11,
    Http11Only,
    Http2Only,
}

/// <summary>
/// TLS settings from a policy's <c>spec.options</c>. Keys live under <c>backendtls.io/</c>; every
/// other key of that domain is an error, so a typo never silently weakens a connection.
/// </summary>
public sealed record TlsSettings(SslProtocols Protocols, AlpnMode Alpn)
{
    public const string Domain = "backendtls.io/";
    public const string MinVersionKey = "backendtls.io/min-tls-version";
    public const string MaxVersionKey = "backendtls.io/max-tls-version";
    public const string AlpnKey = "backendtls.io/alpn";

    public static IReadOnlyList<string> KnownKeys { get; } = [MinVersionKey, MaxVersionKey, AlpnKey];

    /// <summary>TLS 1.2 minimum, 1.3 maximum, ALPN h2 and http/1.1.</summary>
    public static TlsSettings Default { get; } = new(SslProtocols.Tls12 | SslProtocols.Tls13, AlpnMode.Http2AndHttp11);

    /// <summary>Parses our option keys; <paramref name="errors"/> gets one line per problem, with the fix.</summary>
    public static TlsSettings Parse(IReadOnlyDictionary<string, string>? options, ICollection<string> errors)
    {
        if (options is null || options.Count == 0)
        {
            return Default;
        }

        var min = SslProtocols.Tls12;
        var max = SslProtocols.Tls13;
        var alpn = AlpnMode.Http2AndHttp11;
        foreach (var (key, value) in options)
        {
            switch (key)
            {
                case MinVersionKey:
                    min = ParseVersion(key, value, errors) ?? min;
                    break;
                case MaxVersionKey:
                    max = ParseVersion(key, value, errors) ?? max;
                    break;
                case AlpnKey:
                    alpn = ParseAlpn(value, errors) ?? alpn;
                    break;
                default:
                    errors.Add($"unknown option \"{key}\": supported keys are {string.Join(", ", KnownKeys)}");
                    break;
            }
        }

        if (min > max)
        {
            errors.Add($"option \"{MinVersionKey}\" is above \"{MaxVersionKey}\": make the minimum TLS version at most the maximum");
            return Default;
        }

        var protocols = min == max ? min : min | max;
        return new TlsSettings(protocols, alpn);
    }

    private static SslProtocols? ParseVersion(string key, string value, ICollection<string> errors)
    {
        switch (value.Trim())
        {
            case "1.2" or "TLSv1.2" or "TLSv1_2":
                return SslProtocols.Tls12;
            case "1.3" or "TLSv1.3" or "TLSv1_3":
                return SslProtocols.Tls13;
            case "1.0" or "1.1" or "TLSv1.0" or "TLSv1.1" or "TLSv1_0" or "TLSv1_1":
                errors.Add($"option \"{key}\": \"{value}\" is not allowed; TLS 1.0 and 1.1 are broken, use \"1.2\" or \"1.3\"");
                return null;
            default:
                errors.Add($"option \"{key}\": \"{value}\" is not a TLS version; use \"1.2\" or \"1.3\"");
                return null;
        }
    }

    private static AlpnMode? ParseAlpn(string value, ICollection<string> errors)
    {
        var h2 = false;
        var h11 = false;
        foreach (var raw in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            switch (raw)
            {
                case "h2":
                    h2 = true;
                    break;
                case "http/1.1":
                    h11 = true;
                    break;
                default:
                    errors.Add($"option \"{AlpnKey}\": unknown protocol \"{raw}\"; use \"h2\", \"http/1.1\" or both, comma-separated");
                    return null;
            }
        }

        return (h2, h11) switch
        {
            (true, true) => AlpnMode.Http2AndHttp11,
            (true, false) => AlpnMode.Http2Only,
            (false, true) => AlpnMode.Http11Only,
            _ => Error(errors),
        };

        static AlpnMode? Error(ICollection<string> errors)
        {
            errors.Add($"option \"{AlpnKey}\" is empty; use \"h2\", \"http/1.1\" or both, comma-separated");
            return null;
        }
    }

    public string MinVersionText => Protocols.HasFlag(SslProtocols.Tls12) ? "1.2" : "1.3";

    public string MaxVersionText => Protocols.HasFlag(SslProtocols.Tls13) ? "1.3" : "1.2";

    public string AlpnText => Alpn switch
    {
        AlpnMode.Http2Only => "h2",
        AlpnMode.Http11Only => "http/1.1",
        _ => "h2,http/1.1",
    };
}
