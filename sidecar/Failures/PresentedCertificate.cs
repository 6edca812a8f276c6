using System.Security.Cryptography.X509Certificates;

namespace BackendTls.Sidecar.Failures;

/// <summary>What a backend presented, for logs, metrics and error bodies (public data only).</summary>
internal sealed record PresentedCertificate(
    string Subject,
    string Issuer,
    IReadOnlyList<string> SubjectAltNames,
    DateTimeOffset NotBefore,
    DateTimeOffset NotAfter,
    int Version)
{
    public static PresentedCertificate From(X509Certificate2 certificate, IReadOnlyList<string> subjectAltNames) => new(
        certificate.Subject,
        certificate.Issuer,
        subjectAltNames,
        certificate.NotBefore.ToUniversalTime(),
        certificate.NotAfter.ToUniversalTime(),
        certificate.Version);

    public string SanText => SubjectAltNames.Count == 0 ? "(none)" : string.Join(", ", SubjectAltNames);
}
