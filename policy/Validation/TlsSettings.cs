using System.Net.Security;
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
/// <param name="Protocols">The TLS versions offered.</param>
/// <param name="Alpn">The HTTP versions offered in ALPN.</param>
/// <param name="Tls12CipherSuites">TLS 1.2 suites allowed, IANA names comma-separated in the policy's order; null: OpenSSL's defaults.</param>
public sealed record TlsSettings(SslProtocols Protocols, AlpnMode Alpn, string? Tls12CipherSuites = null)
{
    public const string Domain = "backendtls.io/";
    public const string MinVersionKey = "backendtls.io/min-tls-version";
    public const string MaxVersionKey = "backendtls.io/max-tls-version";
    public const string AlpnKey = "backendtls.io/alpn";
    public const string CipherSuitesKey = "backendtls.io/tls12-cipher-suites";

    public static IReadOnlyList<string> KnownKeys { get; } = [MinVersionKey, MaxVersionKey, AlpnKey, CipherSuitesKey];

    /// <summary>TLS 1.3's suites: always allowed when TLS 1.3 is (they are all AEAD; OpenSSL's defaults).</summary>
    public static IReadOnlyList<TlsCipherSuite> Tls13CipherSuites { get; } =
        [TlsCipherSuite.TLS_AES_256_GCM_SHA384, TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256, TlsCipherSuite.TLS_AES_128_GCM_SHA256];

    /// <summary>
    /// The suites to allow, TLS 1.3's included while TLS 1.3 is allowed (a list of 1.2 suites alone would
    /// turn TLS 1.3 off); null: OpenSSL's defaults.
    /// </summary>
    public IReadOnlyList<TlsCipherSuite>? CipherSuites => Tls12CipherSuites is null
        ? null
        : [.. Tls12CipherSuites.Split(',').Select(Enum.Parse<TlsCipherSuite>), .. Protocols.HasFlag(SslProtocols.Tls13) ? Tls13CipherSuites : []];

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
        string? suites = null;
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
                case CipherSuitesKey:
                    suites = ParseCipherSuites(value, errors);
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

        if (suites is not null && min == SslProtocols.Tls13)
        {
            errors.Add($"option \"{CipherSuitesKey}\" chooses TLS 1.2 suites, and \"{MinVersionKey}\" is 1.3, so they would never be used: remove one of them");
            return Default;
        }

        var protocols = min == max ? min : min | max;
        return new TlsSettings(protocols, alpn, suites);
    }

    /// <summary>OpenSSL's names of the TLS 1.2 suites worth choosing, and their IANA names (what .NET and Go use).</summary>
    private static readonly Dictionary<string, TlsCipherSuite> OpenSslNames = new(StringComparer.Ordinal)
    {
        ["ECDHE-ECDSA-AES128-GCM-SHA256"] = TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ["ECDHE-RSA-AES128-GCM-SHA256"] = TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ["ECDHE-ECDSA-AES256-GCM-SHA384"] = TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ["ECDHE-RSA-AES256-GCM-SHA384"] = TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ["ECDHE-ECDSA-CHACHA20-POLY1305"] = TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ["ECDHE-RSA-CHACHA20-POLY1305"] = TlsCipherSuite.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ["DHE-RSA-AES128-GCM-SHA256"] = TlsCipherSuite.TLS_DHE_RSA_WITH_AES_128_GCM_SHA256,
        ["DHE-RSA-AES256-GCM-SHA384"] = TlsCipherSuite.TLS_DHE_RSA_WITH_AES_256_GCM_SHA384,
        ["DHE-RSA-CHACHA20-POLY1305"] = TlsCipherSuite.TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ["ECDHE-ECDSA-AES128-SHA256"] = TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
        ["ECDHE-RSA-AES128-SHA256"] = TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
        ["ECDHE-ECDSA-AES256-SHA384"] = TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384,
        ["ECDHE-RSA-AES256-SHA384"] = TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
        ["AES128-GCM-SHA256"] = TlsCipherSuite.TLS_RSA_WITH_AES_128_GCM_SHA256,
        ["AES256-GCM-SHA384"] = TlsCipherSuite.TLS_RSA_WITH_AES_256_GCM_SHA384,
    };

    /// <summary>IANA (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) or OpenSSL (ECDHE-RSA-AES128-GCM-SHA256) names, comma- or colon-separated.</summary>
    private static string? ParseCipherSuites(string value, ICollection<string> errors)
    {
        var chosen = new List<TlsCipherSuite>();
        var ok = true;
        foreach (var name in value.Split([',', ':'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            TlsCipherSuite suite;
            if (OpenSslNames.TryGetValue(name, out var mapped))
            {
                suite = mapped;
            }
            else if (!name.StartsWith("TLS_", StringComparison.Ordinal) || !Enum.TryParse(name, ignoreCase: false, out suite) || int.TryParse(name, out _))
            {
                errors.Add($"option \"{CipherSuitesKey}\": \"{name}\" is not a TLS 1.2 cipher suite name; use IANA names (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) or OpenSSL's (ECDHE-RSA-AES128-GCM-SHA256)");
                ok = false;
                continue;
            }

            var iana = suite.ToString();
            if (Tls13CipherSuites.Contains(suite) || iana is "TLS_AES_128_CCM_SHA256" or "TLS_AES_128_CCM_8_SHA256")
            {
                errors.Add($"option \"{CipherSuitesKey}\": \"{name}\" is a TLS 1.3 suite; TLS 1.3's suites are always on while TLS 1.3 is allowed (turn TLS 1.3 off with \"{MaxVersionKey}\": \"1.2\")");
                ok = false;
            }
            else if (iana.Contains("_NULL_", StringComparison.Ordinal) || iana.Contains("_anon_", StringComparison.Ordinal) || iana.Contains("EXPORT", StringComparison.Ordinal)
                     || iana.Contains("_RC4_", StringComparison.Ordinal) || iana.Contains("_DES", StringComparison.Ordinal) || iana.Contains("3DES", StringComparison.Ordinal)
                     || iana.EndsWith("_MD5", StringComparison.Ordinal))
            {
                errors.Add($"option \"{CipherSuitesKey}\": \"{name}\" is broken (no encryption, no authentication, export-grade, RC4, DES or MD5); choose an AEAD suite such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
                ok = false;
            }
            else if (!chosen.Contains(suite))
            {
                chosen.Add(suite);
            }
        }

        if (ok && chosen.Count == 0)
        {
            errors.Add($"option \"{CipherSuitesKey}\" is empty; name at least one suite, or remove the option for OpenSSL's defaults");
        }

        return ok && chosen.Count > 0 ? string.Join(",", chosen) : null;
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

    /// <summary>For /config and render output: the TLS 1.2 suites, or that OpenSSL's defaults apply.</summary>
    public string CipherSuitesText => Tls12CipherSuites?.Replace(",", ", ", StringComparison.Ordinal) ?? "OpenSSL defaults";

    public string AlpnText => Alpn switch
    {
        AlpnMode.Http2Only => "h2",
        AlpnMode.Http11Only => "http/1.1",
        _ => "h2,http/1.1",
    };
}
