using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace BackendTls.Webhook.Certificates;

/// <summary>PEM text of a CA and of a serving certificate with its key, as stored in a Secret.</summary>
internal sealed record CertificateBundle(string CaCertificatePem, string CaKeyPem, string CertificatePem, string KeyPem)
{
    public X509Certificate2 LoadServing()
    {
        using var loaded = X509Certificate2.CreateFromPem(CertificatePem, KeyPem);
        return X509CertificateLoader.LoadPkcs12(loaded.Export(X509ContentType.Pkcs12), null);
    }

    public X509Certificate2 LoadCa() => X509Certificate2.CreateFromPem(CaCertificatePem);
}

/// <summary>
/// Makes the webhook's own CA and serving certificate when no cert-manager is used: ECDSA P-256, a CA
/// valid 10 years, a serving certificate valid <see cref="ServingLifetime"/> for the Service's DNS names.
/// </summary>
internal static class ServingCertificates
{
    public static readonly TimeSpan ServingLifetime = TimeSpan.FromDays(90);

    /// <summary>Renewal starts when this much of the lifetime is left (a third), like cert-manager's default.</summary>
    public static TimeSpan RenewBefore => ServingLifetime / 3;

    public static CertificateBundle CreateCaAndServing(IReadOnlyList<string> dnsNames, DateTimeOffset now)
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=backendtls-webhook-ca", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        using var ca = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(10));
        return IssueServing(ca.ExportCertificatePem(), caKey.ExportPkcs8PrivateKeyPem(), dnsNames, now);
    }

    /// <summary>A new serving certificate from an existing CA (renewal keeps the CA, so caBundle stays valid).</summary>
    public static CertificateBundle IssueServing(string caCertificatePem, string caKeyPem, IReadOnlyList<string> dnsNames, DateTimeOffset now)
    {
        using var ca = X509Certificate2.CreateFromPem(caCertificatePem, caKeyPem);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={dnsNames[0]}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        var san = new SubjectAlternativeNameBuilder();
        foreach (var name in dnsNames)
        {
            san.AddDnsName(name);
        }

        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        using var serving = request.Create(ca, now.AddMinutes(-5), now + ServingLifetime, RandomNumberGenerator.GetBytes(16));
        return new CertificateBundle(caCertificatePem, caKeyPem, serving.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }
}
