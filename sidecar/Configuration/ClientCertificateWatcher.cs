using BackendTls.Sidecar.Telemetry;
using BackendTls.Sidecar.Tls;

namespace BackendTls.Sidecar.Configuration;

/// <summary>
/// Re-reads the mounted client certificate on the config poll interval (kubelet renews a Secret volume by
/// swapping its ..data link; file events on it are unreliable), logs each change once and keeps its expiry
/// in a metric. A bad renewal keeps the last good certificate and says why.
/// </summary>
internal sealed class ClientCertificateWatcher(ClientCertificates certificates, ConfigSettings settings, SidecarMetrics metrics, ILogger<ClientCertificateWatcher> logger)
    : BackgroundService
{
    private string? _reportedProblem;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (certificates.Directory is null)
        {
            return;
        }

        Report(changed: certificates.Current is not null);
        using var timer = new PeriodicTimer(settings.PollInterval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            Report(certificates.Reload());
        }
    }

    private void Report(bool changed)
    {
        if (changed && certificates.Current is { } current)
        {
            Log.ClientCertificateLoaded(logger, current.Subject, current.Issuer, current.NotAfter, current.Sha256, certificates.Directory!);
            metrics.ClientCertificateExpiry.Set(current.NotAfter.ToUnixTimeSeconds());
        }

        var problem = certificates.Problem ?? certificates.FailClosedReason;
        if (problem is not null && problem != _reportedProblem)
        {
            Log.ClientCertificateRejected(logger, problem, certificates.Current is null ? "none: connections are refused until one loads" : $"the last good one ({certificates.Current.Subject})");
        }

        _reportedProblem = problem;
    }
}
