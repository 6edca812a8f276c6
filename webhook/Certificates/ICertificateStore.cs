namespace BackendTls.Webhook.Certificates;

/// <summary>A certificate bundle as stored, with the version needed for an optimistic update.</summary>
internal sealed record StoredBundle(CertificateBundle Bundle, string ResourceVersion);

/// <summary>
/// Where self-managed certificates live so every replica uses the same CA and serving certificate
/// (a Secret), and where the CA is published (the MutatingWebhookConfiguration's caBundle).
/// Writes are optimistic: a replica that loses a race re-reads instead of overwriting.
/// </summary>
internal interface ICertificateStore
{
    Task<StoredBundle?> ReadAsync(CancellationToken cancellationToken);

    /// <summary>False when another replica created it first.</summary>
    Task<bool> TryCreateAsync(CertificateBundle bundle, CancellationToken cancellationToken);

    /// <summary>False when it changed since <paramref name="resourceVersion"/> was read.</summary>
    Task<bool> TryReplaceAsync(CertificateBundle bundle, string resourceVersion, CancellationToken cancellationToken);

    /// <summary>Sets every webhook entry's caBundle to the CA where it differs; returns how many were repaired.</summary>
    Task<int> SyncCaBundleAsync(string caCertificatePem, CancellationToken cancellationToken);
}
