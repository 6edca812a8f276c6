using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace BackendTls.Sidecar.Tls;

/// <summary>
/// Loads the platform's trust store once, off the request path. On Linux the first X509Chain build reads
/// every system root (even when a policy trusts only its own CA), which otherwise delays the first
/// proxied request (docs/performance.md, startup).
/// </summary>
internal static class TrustStoreWarmup
{
    private static readonly Lazy<Task> Warmup = new(() => Task.Run(Run));

    /// <summary>Starts the warm-up once per process; readiness waits for it, so traffic never pays for it.</summary>
    public static Task Started => Warmup.Value;

    private static void Run()
    {
        try
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            using var certificate = new CertificateRequest("CN=backendtls-warmup", key, HashAlgorithmName.SHA256)
                .CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));
            using var chain = new X509Chain();
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            chain.Build(certificate);
        }
        catch (CryptographicException)
        {
            // Only a warm-up: the real handshake reports real problems.
        }
    }
}
