using System.Security.Cryptography.X509Certificates;
using BackendTls.Policy.Model;
using BackendTls.Policy.Validation;

namespace BackendTls.Policy.Loading;

/// <summary>A validated config, with its CA bundles parsed. Immutable; the sidecar swaps whole instances.</summary>
public sealed record LoadedConfig(
    IReadOnlyList<LoadedTarget> Targets,
    string Fingerprint,
    IReadOnlyList<string> Warnings,
    string SourcePath);

/// <summary>How a target's backend certificate chain is anchored.</summary>
public enum TrustMode
{
    /// <summary>Only the policy's CA bundle(s).</summary>
    PolicyCertificates,

    /// <summary><c>wellKnownCACertificates: System</c>: the operating system's store.</summary>
    System,

    /// <summary>No usable CA: every request is refused with 503, never sent without verification.</summary>
    FailClosed,
}

/// <summary>One (Service, port) the sidecar may reach, ready to build a connection pool from.</summary>
public sealed record LoadedTarget
{
    public required string Id { get; init; }

    public required ServiceRef Service { get; init; }

    public ObjectRef? Policy { get; init; }

    public required string Hostname { get; init; }

    public required IReadOnlyList<SubjectAltName> SubjectAltNames { get; init; }

    public required TrustMode Trust { get; init; }

    public required X509Certificate2Collection TrustAnchors { get; init; }

    public required IReadOnlyList<CaBundleInfo> CaBundles { get; init; }

    public required IReadOnlyList<InvalidCaRef> InvalidCaRefs { get; init; }

    public required TlsSettings Tls { get; init; }

    /// <summary>host:port to connect to.</summary>
    public required string Address { get; init; }

    public int? ListenPort { get; init; }

    /// <summary>Hash of everything that affects connections: equal fingerprints may share a pool.</summary>
    public required string Fingerprint { get; init; }

    /// <summary>Why the target refuses traffic, when <see cref="Trust"/> is <see cref="TrustMode.FailClosed"/>.</summary>
    public string FailClosedMessage => InvalidCaRefs.Count == 0
        ? "the policy has no CA certificate to verify the backend with"
        : string.Join("; ", InvalidCaRefs.Select(r => $"{r.Source}: {r.Message}"));

    public DateTimeOffset? EarliestCaExpiry =>
        CaBundles.Count == 0 ? null : CaBundles.Min(b => b.EarliestExpiry);
}

/// <summary>A parsed CA bundle file: what the status page and metrics show (never key material).</summary>
public sealed record CaBundleInfo(
    string File,
    string? Source,
    IReadOnlyList<CertificateSummary> Certificates)
{
    public DateTimeOffset EarliestExpiry => Certificates.Min(c => c.NotAfter);
}

public sealed record CertificateSummary(string Subject, string Issuer, DateTimeOffset NotBefore, DateTimeOffset NotAfter, string Sha256)
{
    public static CertificateSummary From(X509Certificate2 certificate) => new(
        certificate.Subject,
        certificate.Issuer,
        certificate.NotBefore.ToUniversalTime(),
        certificate.NotAfter.ToUniversalTime(),
        certificate.GetCertHashString(System.Security.Cryptography.HashAlgorithmName.SHA256));
}
