namespace BackendTls.Sidecar.Tls;

/// <summary>
/// RFC 6125 / RFC 9525 DNS-ID matching: case-insensitive, a trailing dot ignored, and a wildcard only
/// as the whole left-most label of the certificate name (<c>*.example.com</c> matches exactly one label).
/// Partial wildcards (<c>f*.example.com</c>), a bare <c>*</c>, or wildcards over a public-suffix-like
/// single label (<c>*.com</c>) never match. The CN is never consulted.
/// </summary>
internal static class HostnameMatcher
{
    /// <param name="presented">A DNS name from the certificate (may hold a wildcard).</param>
    /// <param name="reference">The name we expect (never a wildcard on our side).</param>
    public static bool Matches(string presented, string reference)
    {
        presented = presented.TrimEnd('.');
        reference = reference.TrimEnd('.');
        if (presented.Length == 0 || reference.Length == 0)
        {
            return false;
        }

        if (!presented.StartsWith("*.", StringComparison.Ordinal))
        {
            return !presented.Contains('*', StringComparison.Ordinal)
                   && string.Equals(presented, reference, StringComparison.OrdinalIgnoreCase);
        }

        var suffix = presented[1..]; // ".example.com"
        if (suffix.Contains('*', StringComparison.Ordinal) || suffix.Count(c => c == '.') < 2)
        {
            return false; // "*.*.x" or "*.com": not a valid wildcard
        }

        var firstDot = reference.IndexOf('.', StringComparison.Ordinal);
        return firstDot > 0 // the wildcard covers one non-empty label
               && string.Equals(reference[firstDot..], suffix, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>A policy SAN of type Hostname may itself be a wildcard: then names must be equal as written.</summary>
    public static bool MatchesPolicyName(string presented, string policyName) =>
        policyName.StartsWith("*.", StringComparison.Ordinal)
            ? string.Equals(presented.TrimEnd('.'), policyName.TrimEnd('.'), StringComparison.OrdinalIgnoreCase)
            : Matches(presented, policyName);
}
