using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace BackendTls.Sidecar.Demo;

/// <summary>
/// A private CA for the demo (and the tests): ECDSA P-256, with leaf certificates issued to order.
/// Not for production PKI: keys live in memory only.
/// </summary>
internal sealed class CertificateAuthority : IDisposable
{
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");

    private CertificateAuthority(X509Certificate2 certificate) => Certificate = certificate;

    public X509Certificate2 Certificate { get; }

    public string CertificatePem => Certificate.ExportCertificatePem() + "\n";

    public static CertificateAuthority Create(string subject, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var certificate = request.CreateSelfSigned(
            notBefore ?? DateTimeOffset.UtcNow.AddYears(-1), // room for backdated leaves (expiry tests)
            notAfter ?? DateTimeOffset.UtcNow.AddYears(1));
        return new CertificateAuthority(certificate);
    }

    /// <summary>An intermediate CA signed by this one.</summary>
    public CertificateAuthority CreateIntermediate(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        using var signed = request.Create(Certificate, Certificate.NotBefore, Certificate.NotAfter, NewSerial());
        return new CertificateAuthority(signed.CopyWithPrivateKey(key));
    }

    /// <summary>Issues a leaf with the given SANs (none: no SAN extension at all), and optionally an AIA caIssuers URL.</summary>
    public X509Certificate2 Issue(
        string subject,
        IEnumerable<string>? dnsNames = null,
        IEnumerable<Uri>? uris = null,
        DateTimeOffset? notBefore = null,
        DateTimeOffset? notAfter = null,
        bool serverAuth = true,
        Uri? caIssuersUrl = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([serverAuth ? ServerAuth : ClientAuth], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        if (caIssuersUrl is not null)
        {
            request.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(null, [caIssuersUrl.ToString()]));
        }

        var dns = dnsNames?.ToList() ?? [];
        var uri = uris?.ToList() ?? [];
        if (dns.Count + uri.Count > 0)
        {
            var san = new SubjectAlternativeNameBuilder();
            dns.ForEach(san.AddDnsName);
            uri.ForEach(san.AddUri);
            request.CertificateExtensions.Add(san.Build());
        }

        var from = notBefore ?? DateTimeOffset.UtcNow.AddDays(-1);
        var to = notAfter ?? DateTimeOffset.UtcNow.AddDays(90);
        using var signed = request.Create(Certificate, from, to, NewSerial());
        // Round-trip through PKCS#12 so the key is usable by SslStream on every platform.
        using var withKey = signed.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    private static byte[] NewSerial() => RandomNumberGenerator.GetBytes(16);

    public void Dispose() => Certificate.Dispose();
}
