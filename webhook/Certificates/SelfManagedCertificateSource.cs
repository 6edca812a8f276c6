using System.Security.Cryptography.X509Certificates;
using BackendTls.Webhook.Admin;

namespace BackendTls.Webhook.Certificates;

/// <summary>
/// Certificates without cert-manager: a CA and a serving certificate kept in one Secret that all
/// replicas share (the first creates it; the others read it), renewed a third of the lifetime before
/// expiry by whichever replica notices first, and the CA kept in the webhook configuration's caBundle
/// (drift, e.g. a re-applied manifest with an empty caBundle, is repaired on the next pass).
/// </summary>
internal sealed partial class SelfManagedCertificateSource(
    ICertificateStore store,
    IReadOnlyList<string> dnsNames,
    WebhookMetrics metrics,
    TimeProvider time,
    ILogger<SelfManagedCertificateSource> logger) : BackgroundService, ICertificateSource
{
    public static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);

    private X509Certificate2? _current;
    private string? _problem = "no certificate yet";

    public X509Certificate2? Current
    {
        get
        {
            var current = Volatile.Read(ref _current);
            return current is not null && current.NotAfter.ToUniversalTime() > time.GetUtcNow().UtcDateTime ? current : null;
        }
    }

    public string? Problem => Current is null ? _problem : null;

    /// <summary>One pass: make sure a valid shared certificate exists, use it, publish its CA.</summary>
    public async Task ReconcileAsync(CancellationToken cancellationToken)
    {
        try
        {
            var bundle = await EnsureBundleAsync(cancellationToken);
            var serving = bundle.LoadServing();
            if (Volatile.Read(ref _current)?.Thumbprint != serving.Thumbprint)
            {
                Volatile.Write(ref _current, serving);
                metrics.CertificateExpiry.Set(new DateTimeOffset(serving.NotAfter.ToUniversalTime()).ToUnixTimeSeconds());
                metrics.CertificateReloads.WithLabels("success").Inc();
                LogUsing(logger, serving.NotAfter.ToUniversalTime());
            }

            var repaired = await store.SyncCaBundleAsync(bundle.CaCertificatePem, cancellationToken);
            if (repaired > 0)
            {
                LogCaBundleRepaired(logger, repaired);
            }

            _problem = null;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _problem = $"self-managed certificate: {e.Message}";
            metrics.CertificateReloads.WithLabels("failure").Inc();
            LogFailed(logger, e.Message);
        }
    }

    private async Task<CertificateBundle> EnsureBundleAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var now = time.GetUtcNow();
            var stored = await store.ReadAsync(cancellationToken);
            if (stored is null)
            {
                var created = ServingCertificates.CreateCaAndServing(dnsNames, now);
                if (await store.TryCreateAsync(created, cancellationToken))
                {
                    LogCreated(logger);
                    return created;
                }

                continue; // another replica won the race: use theirs
            }

            using var serving = stored.Bundle.LoadServing();
            if (serving.NotAfter.ToUniversalTime() - now.UtcDateTime > ServingCertificates.RenewBefore)
            {
                return stored.Bundle;
            }

            var renewed = ServingCertificates.IssueServing(stored.Bundle.CaCertificatePem, stored.Bundle.CaKeyPem, dnsNames, now);
            if (await store.TryReplaceAsync(renewed, stored.ResourceVersion, cancellationToken))
            {
                LogRenewed(logger, serving.NotAfter.ToUniversalTime());
                return renewed;
            }
        }

        throw new InvalidOperationException("the certificate Secret kept changing under us (5 attempts)");
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await ReconcileAsync(stoppingToken);
        using var timer = new PeriodicTimer(Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            await ReconcileAsync(stoppingToken);
        }
    }

    [LoggerMessage(30, LogLevel.Information, "Created the webhook CA and serving certificate", EventName = "SelfManagedCreated")]
    private static partial void LogCreated(ILogger logger);

    [LoggerMessage(31, LogLevel.Information, "Renewed the serving certificate (the old one expires {NotAfter:u})", EventName = "SelfManagedRenewed")]
    private static partial void LogRenewed(ILogger logger, DateTime notAfter);

    [LoggerMessage(32, LogLevel.Information, "Serving with the shared certificate, valid until {NotAfter:u}", EventName = "SelfManagedInUse")]
    private static partial void LogUsing(ILogger logger, DateTime notAfter);

    [LoggerMessage(33, LogLevel.Warning, "caBundle of {Count} webhook entr(ies) differed from our CA; repaired", EventName = "CaBundleRepaired")]
    private static partial void LogCaBundleRepaired(ILogger logger, int count);

    [LoggerMessage(34, LogLevel.Error, "Self-managed certificate pass failed: {Problem}", EventName = "SelfManagedFailed")]
    private static partial void LogFailed(ILogger logger, string problem);
}
