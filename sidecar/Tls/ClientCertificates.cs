using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using BackendTls.Policy.Loading;

namespace BackendTls.Sidecar.Tls;

/// <summary>A loaded client certificate; the key stays inside <see cref="Context"/> and is never shown.</summary>
internal sealed record ClientCertificate(SslStreamCertificateContext Context, string Subject, string Issuer, DateTimeOffset NotAfter, string Sha256);

/// <summary>
/// The client certificate the sidecar presents to backends that require mutual TLS: <c>tls.crt</c> (leaf,
/// then intermediates) and <c>tls.key</c> of a mounted <c>kubernetes.io/tls</c> Secret, read at start and
/// again whenever the files change (polled, as kubelet swaps the volume's <c>..data</c>), so a renewal
/// applies without a restart; open connections keep the certificate they were made with. A pair that does
/// not load (unparsable, key does not match, expired, not yet valid) never replaces the last good one; with
/// no good one the sidecar fails closed (<see cref="FailClosedReason"/>) rather than connect without it.
/// Only subject, issuer, expiry and fingerprint are ever logged or shown.
/// </summary>
internal sealed class ClientCertificates(string? directory, TimeProvider time)
{
    public const int MaxFileBytes = 1024 * 1024;
    private string? _loadedFrom;

    /// <summary>The mounted Secret's directory; null when no client certificate is configured.</summary>
    public string? Directory => directory;

    public ClientCertificate? Current { get; private set; }

    /// <summary>Why the files on disk are not (or no longer) what is presented; null when they are.</summary>
    public string? Problem { get; private set; }

    /// <summary>Set when a certificate is configured but none can be presented: connections are refused with it.</summary>
    public string? FailClosedReason => directory is null
        ? null
        : Current is null ? Problem ?? $"no client certificate loaded from {directory}"
        : Current.NotAfter <= time.GetUtcNow() ? $"the client certificate {Current.Subject} expired at {Current.NotAfter:u}; renew the Secret mounted at {directory}"
        : null;

    /// <summary>Reads the pair if it changed. True when what is presented changed.</summary>
    public bool Reload()
    {
        if (directory is null)
        {
            return false;
        }

        string certificatePem, keyPem;
        try
        {
            var certificatePath = Path.Combine(directory, "tls.crt");
            var keyPath = Path.Combine(directory, "tls.key");
            if (!File.Exists(certificatePath) || !File.Exists(keyPath))
            {
                Problem = $"{directory} has no tls.crt and tls.key (is the kubernetes.io/tls Secret created and mounted?)";
                return false;
            }

            certificatePem = BoundedFile.ReadText(certificatePath, MaxFileBytes);
            keyPem = BoundedFile.ReadText(keyPath, MaxFileBytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FileReadException)
        {
            Problem = $"cannot read the client certificate in {directory}: {e.Message}";
            return false;
        }

        var fingerprint = Convert.ToHexString(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(certificatePem + "\n" + keyPem)));
        if (fingerprint == _loadedFrom)
        {
            return false;
        }

        _loadedFrom = fingerprint;
        var (loaded, problem) = Parse(certificatePem, keyPem, directory, time.GetUtcNow());
        Problem = problem;
        if (loaded is null)
        {
            return false;
        }

        Current = loaded;
        return true;
    }

    /// <summary>The pair as a TLS client credential, or the precise reason it is not one.</summary>
    public static (ClientCertificate? Certificate, string? Problem) Parse(string certificatePem, string keyPem, string source, DateTimeOffset now)
    {
        var chain = new X509Certificate2Collection();
        try
        {
            chain.ImportFromPem(certificatePem);
        }
        catch (CryptographicException e)
        {
            return (null, $"{source}/tls.crt is not PEM certificates: {e.Message}");
        }

        if (chain.Count == 0)
        {
            return (null, $"{source}/tls.crt holds no certificate");
        }

        X509Certificate2 leaf;
        try
        {
            leaf = X509Certificate2.CreateFromPem(certificatePem, keyPem);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            return (null, $"{source}/tls.key is not the private key of the first certificate in tls.crt (or not a PEM key): {e.Message}");
        }

        if (leaf.NotBefore.ToUniversalTime() > now.UtcDateTime)
        {
            return (null, $"the client certificate {leaf.Subject} in {source} is not valid before {leaf.NotBefore.ToUniversalTime():u}");
        }

        if (leaf.NotAfter.ToUniversalTime() <= now.UtcDateTime)
        {
            return (null, $"the client certificate {leaf.Subject} in {source} expired at {leaf.NotAfter.ToUniversalTime():u}; renew the Secret");
        }

        var eku = leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault();
        if (eku is not null && !eku.EnhancedKeyUsages.Cast<Oid>().Any(o => o.Value == "1.3.6.1.5.5.7.3.2"))
        {
            return (null, $"the client certificate {leaf.Subject} in {source} does not allow client authentication (its extendedKeyUsage lacks clientAuth); reissue it with clientAuth");
        }

        var intermediates = new X509Certificate2Collection();
        foreach (var certificate in chain.Skip(1))
        {
            intermediates.Add(certificate);
        }

        var context = SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
        return (new ClientCertificate(context, leaf.Subject, leaf.Issuer, new DateTimeOffset(leaf.NotAfter.ToUniversalTime()), leaf.GetCertHashString(HashAlgorithmName.SHA256)), null);
    }
}
