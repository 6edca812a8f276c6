using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace BackendTls.Policy.Validation;

/// <summary>
/// The checks every CA bundle passes, wherever it is read (render from a ConfigMap or Secret, the sidecar
/// from its config directory): no private key, PEM that decodes, at least one certificate.
/// </summary>
public static class CaBundle
{
    /// <summary>The certificates of <paramref name="pem"/>, or null and a phrase that completes "the bundle ...".</summary>
    public static X509Certificate2Collection? Parse(string pem, out string? problem)
    {
        problem = null;
        if (pem.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
        {
            problem = "contains a private key; a CA bundle must hold certificates only (put the CA certificate in ca.crt, never tls.key)";
            return null;
        }

        var certificates = new X509Certificate2Collection();
        try
        {
            certificates.ImportFromPem(pem);
        }
        catch (CryptographicException)
        {
            // The runtime's message is a resource key in the AOT build: say it in our words.
            problem = "is not a PEM certificate bundle: a \"-----BEGIN CERTIFICATE-----\" block does not decode as an X.509 certificate";
            return null;
        }

        if (certificates.Count == 0)
        {
            problem = "holds no PEM certificate; it must contain \"-----BEGIN CERTIFICATE-----\" blocks";
            return null;
        }

        return certificates;
    }

    /// <summary>The bundle's certificates that are no longer valid at <paramref name="now"/>.</summary>
    public static IEnumerable<X509Certificate2> Expired(X509Certificate2Collection certificates, DateTimeOffset now) =>
        certificates.Where(c => c.NotAfter.ToUniversalTime() < now);
}
