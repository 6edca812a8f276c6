using System.Globalization;
using System.Text.RegularExpressions;
using k8s.Models;

namespace BackendTls.Webhook.Injection;

/// <summary>
/// Applies a pod's <c>backendtls.io/*</c> annotations over the defaults. Each value is validated; an
/// invalid one falls back to the default and becomes a warning that kubectl prints (never a silent
/// ignore, never a rejected pod).
/// </summary>
internal static partial class PodOverrides
{
    public static InjectorSettings Apply(InjectorSettings defaults, IReadOnlyDictionary<string, string> annotations, ICollection<string> warnings)
    {
        var settings = defaults;
        foreach (var (key, value) in annotations)
        {
            if (!key.StartsWith(InjectionLabels.Prefix, StringComparison.Ordinal) || key is InjectionLabels.Status or InjectionLabels.Inject)
            {
                continue;
            }

            string? problem = null;
            switch (key)
            {
                case InjectionLabels.SidecarImage:
                    if (ImagePattern().IsMatch(value))
                    {
                        settings = settings with { SidecarImage = value };
                    }
                    else
                    {
                        problem = "is not an image reference (e.g. registry.example.com/backendtls-sidecar:0.1.0)";
                    }

                    break;
                case InjectionLabels.CpuRequest:
                    settings = Quantity(value, q => settings with { CpuRequest = q }, ref problem) ?? settings;
                    break;
                case InjectionLabels.CpuLimit:
                    settings = Quantity(value, q => settings with { CpuLimit = q }, ref problem) ?? settings;
                    break;
                case InjectionLabels.MemoryRequest:
                    settings = Quantity(value, q => settings with { MemoryRequest = q }, ref problem) ?? settings;
                    break;
                case InjectionLabels.MemoryLimit:
                    settings = Quantity(value, q => settings with { MemoryLimit = q }, ref problem) ?? settings;
                    break;
                case InjectionLabels.LogLevel:
                    if (value is "Trace" or "Debug" or "Information" or "Warning" or "Error" or "Critical")
                    {
                        settings = settings with { LogLevel = value };
                    }
                    else
                    {
                        problem = "is not a log level (Trace, Debug, Information, Warning, Error, Critical)";
                    }

                    break;
                case InjectionLabels.ListenPort:
                    if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 1 and <= 65535 && port != InjectorSettings.AdminPort)
                    {
                        settings = settings with { ListenPort = port };
                    }
                    else
                    {
                        problem = $"is not a port (1-65535, not the admin port {InjectorSettings.AdminPort})";
                    }

                    break;
                case InjectionLabels.ClientCertificateSecret:
                    settings = ObjectName(value, "Secret", n => settings with { ClientCertificateSecret = n }, ref problem, "; name a kubernetes.io/tls Secret in the pod's namespace") ?? settings;
                    break;
                case InjectionLabels.PolicyConfigMap:
                    settings = ObjectName(value, "ConfigMap", n => settings with { PolicyConfigMap = n }, ref problem) ?? settings;
                    break;
                case InjectionLabels.NativeSidecar:
                    if (bool.TryParse(value, out var native))
                    {
                        settings = settings with { NativeSidecar = native };
                    }
                    else
                    {
                        problem = "is not true or false";
                    }

                    break;
                case InjectionLabels.DrainTimeout:
                    if (ParseSeconds(value) is { } seconds)
                    {
                        settings = settings with { DrainTimeoutSeconds = seconds };
                    }
                    else
                    {
                        problem = "is not a duration (seconds, e.g. 30 or 30s, at most 3600)";
                    }

                    break;
                case InjectionLabels.Capture:
                    settings = value is "transparent" or "explicit" ? settings with { CaptureMode = value } : Problem("is not transparent or explicit", ref problem, settings);
                    break;
                case InjectionLabels.CapturePorts:
                    settings = value == "all" || IsPortList(value) ? settings with { ExtraCapturePorts = value } : Problem("is not a comma-separated list of ports, or all", ref problem, settings);
                    break;
                case InjectionLabels.ExcludeOutboundPorts:
                    settings = IsPortList(value) ? settings with { ExcludeOutboundPorts = value } : Problem("is not a comma-separated list of ports", ref problem, settings);
                    break;
                case InjectionLabels.ExcludeOutboundCidrs:
                    settings = IsCidrList(value) ? settings with { ExcludeOutboundCidrs = value } : Problem("is not a comma-separated list of CIDRs (e.g. 10.0.0.0/8,fd00::/8)", ref problem, settings);
                    break;
                case InjectionLabels.IncludeOutboundCidrs:
                    settings = IsCidrList(value) ? settings with { IncludeOutboundCidrs = value } : Problem("is not a comma-separated list of CIDRs (e.g. 10.0.0.0/8,fd00::/8)", ref problem, settings);
                    break;
                case InjectionLabels.IptablesMode:
                    settings = value is "auto" or "nft" or "iptables-nft" or "iptables-legacy" ? settings with { IptablesMode = value } : Problem("is not auto, nft, iptables-nft or iptables-legacy", ref problem, settings);
                    break;
                case InjectionLabels.ProxyUid:
                    settings = long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var uid) && uid is >= 1 and <= 2147483647
                        ? settings with { ProxyUid = uid }
                        : Problem("is not a uid (1-2147483647)", ref problem, settings);
                    break;
                case InjectionLabels.UnknownDestination:
                    settings = value is "deny" or "passthrough" ? settings with { UnknownDestination = value } : Problem("is not deny or passthrough", ref problem, settings);
                    break;
                case InjectionLabels.CaptureConfig:
                    continue; // written by the injector itself
                default:
                    warnings.Add($"annotation {key} is not known to the backendtls injector and is ignored; known: {string.Join(", ", InjectionLabels.Overrides)}");
                    continue;
            }

            if (problem is not null)
            {
                warnings.Add($"annotation {key}=\"{value}\" {problem}; using the default");
            }
        }

        return settings;
    }

    private static InjectorSettings? Quantity(string value, Func<string, InjectorSettings> apply, ref string? problem)
    {
        if (IsPositiveQuantity(value))
        {
            return apply(value);
        }

        problem = NotAQuantity;
        return null;
    }

    /// <summary>A Kubernetes object name (lower-case RFC 1123 subdomain) for a setting, or the problem.</summary>
    private static InjectorSettings? ObjectName(string value, string kind, Func<string, InjectorSettings> apply, ref string? problem, string hint = "")
    {
        if (BackendTls.Policy.Validation.Names.IsDns1123Subdomain(value))
        {
            return apply(value);
        }

        problem = $"is not a {kind} name (lower-case RFC 1123){hint}";
        return null;
    }

    public const string NotAQuantity = "is not a positive Kubernetes quantity (e.g. 100m, 64Mi)";

    private static InjectorSettings Problem(string text, ref string? problem, InjectorSettings unchanged)
    {
        problem = text;
        return unchanged;
    }

    public static bool IsPortList(string value) =>
        value.Split(',', StringSplitOptions.TrimEntries).All(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 1 and <= 65535);

    public static bool IsCidrList(string value) =>
        value.Split(',', StringSplitOptions.TrimEntries).All(c => System.Net.IPNetwork.TryParse(c, out _) || System.Net.IPAddress.TryParse(c, out _));

    /// <summary>The one check of a resource quantity, for annotations and for the webhook's flags.</summary>
    public static bool IsPositiveQuantity(string value)
    {
        try
        {
            return new ResourceQuantity(value).ToDecimal() > 0;
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            return false;
        }
    }

    private static int? ParseSeconds(string value)
    {
        var text = value.EndsWith('s') ? value[..^1] : value;
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds is >= 0 and <= 3600 ? seconds : null;
    }

    [GeneratedRegex(@"^[a-z0-9]+([._\-/:@][a-zA-Z0-9_.\-]+)*$")]
    private static partial Regex ImagePattern();
}
