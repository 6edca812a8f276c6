using System.Text.RegularExpressions;

namespace BackendTls.Policy.Validation;

/// <summary>The name formats of Gateway API and Kubernetes, as the CRDs define them.</summary>
public static partial class Names
{
    /// <summary>Gateway API <c>PreciseHostname</c>: lower-case RFC 1123 DNS name, no wildcard, no IP.</summary>
    public static bool IsPreciseHostname(string? value) =>
        value is { Length: > 0 and <= 253 } && PreciseHostnamePattern().IsMatch(value);

    /// <summary>Gateway API <c>Hostname</c>: like PreciseHostname, but a leading <c>*.</c> label is allowed.</summary>
    public static bool IsHostname(string? value) =>
        value is { Length: > 0 and <= 253 } && HostnamePattern().IsMatch(value);

    /// <summary>Gateway API <c>AbsoluteURI</c> (RFC 3986 with a scheme and an authority).</summary>
    public static bool IsAbsoluteUri(string? value) =>
        value is { Length: > 0 and <= 253 } && AbsoluteUriPattern().IsMatch(value);

    /// <summary>Kubernetes object names of Services, ConfigMaps, Secrets (RFC 1123 subdomain).</summary>
    public static bool IsDns1123Subdomain(string? value) =>
        value is { Length: > 0 and <= 253 } && Dns1123SubdomainPattern().IsMatch(value);

    /// <summary>Namespaces and port names (RFC 1123 label).</summary>
    public static bool IsDns1123Label(string? value) =>
        value is { Length: > 0 and <= 63 } && Dns1123LabelPattern().IsMatch(value);

    /// <summary>Option keys (an annotation key with a DNS-prefix, as Gateway API requires for options).</summary>
    public static bool IsDomainPrefixedKey(string key) => DomainPrefixedKeyPattern().IsMatch(key);

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex PreciseHostnamePattern();

    [GeneratedRegex(@"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex HostnamePattern();

    [GeneratedRegex(@"^(([^:/?#]+):)(//([^/?#]*))([^?#]*)(\?([^#]*))?(#(.*))?")]
    private static partial Regex AbsoluteUriPattern();

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex Dns1123SubdomainPattern();

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    private static partial Regex Dns1123LabelPattern();

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")]
    private static partial Regex DomainPrefixedKeyPattern();
}
