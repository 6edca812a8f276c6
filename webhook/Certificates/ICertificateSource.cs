using System.Security.Cryptography.X509Certificates;

namespace BackendTls.Webhook.Certificates;

/// <summary>The serving certificate the HTTPS listener presents; may change at any time (rotation).</summary>
internal interface ICertificateSource
{
    /// <summary>The current certificate with its private key, or null when none is usable.</summary>
    X509Certificate2? Current { get; }

    /// <summary>Why there is no usable certificate, for readiness; null when healthy.</summary>
    string? Problem { get; }
}
