using k8s;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;

namespace BackendTls.Webhook.Controller;

/// <summary>Controller settings (webhook flags).</summary>
internal sealed record ControllerOptions(string ConfigMapName, string LeaseNamespace, string LeaseName, string Identity, TimeSpan Resync, string WebhookConfiguration);

/// <summary>
/// Runs in every webhook replica; only the holder of a coordination.k8s.io Lease reconciles, so replicas
/// never write against each other (the webhook itself keeps serving on all of them). While leading:
/// read the cluster, reconcile (<see cref="PolicyReconciler"/>), write what changed, then again after the
/// resync interval; errors back off exponentially up to a minute.
/// </summary>
/// <remarks>
/// Level-triggered: each pass re-reads what it needs; watches on policies, Services and opted-in
/// namespaces/pods only trigger passes early (docs/controller.md).
/// </remarks>
internal sealed partial class PolicyController(
    IKubernetes client,
    ControllerOptions options,
    ILoggerFactory loggers,
    ILogger<PolicyController> logger) : BackgroundService
{
    private readonly ClusterReader _reader = new(client, options.WebhookConfiguration);
    private readonly ClusterWriter _writer = new(client, options.WebhookConfiguration, loggers.CreateLogger<ClusterWriter>());

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var leaseLock = new LeaseLock(client, options.LeaseNamespace, options.LeaseName, options.Identity);
        var config = new LeaderElectionConfig(leaseLock)
        {
            LeaseDuration = TimeSpan.FromSeconds(15),
            RenewDeadline = TimeSpan.FromSeconds(10),
            RetryPeriod = TimeSpan.FromSeconds(2),
        };
        using var elector = new LeaderElector(config);
        CancellationTokenSource? leading = null;
        Task? loop = null;
        elector.OnStartedLeading += () =>
        {
            LogLeading(logger, options.Identity);
            leading = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            loop = RunWhileLeadingAsync(leading.Token);
        };
        elector.OnStoppedLeading += () =>
        {
            LogNotLeading(logger, options.Identity);
            leading?.Cancel();
        };

        try
        {
            await elector.RunAndTryToHoldLeadershipForeverAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // shutting down
        }

        leading?.Cancel();
        if (loop is not null)
        {
            await loop.ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }

    private readonly SemaphoreSlim _changed = new(0, 1);
    private readonly HashSet<KubeEvent> _noticed = [];

    private void Signal()
    {
        try
        {
            _changed.Release();
        }
        catch (SemaphoreFullException)
        {
            // a pass is already pending
        }
    }

    private async Task RunWhileLeadingAsync(CancellationToken cancellationToken)
    {
        var backoff = TimeSpan.FromSeconds(1);
        List<Task>? watches = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await ReconcileOnceAsync(cancellationToken);
                backoff = TimeSpan.FromSeconds(1);
                // Watches make passes prompt; the resync interval still catches CA ConfigMap/Secret changes,
                // which are read on demand and not watched.
                watches ??= ClusterWatches.Create(client, _reader.PolicyVersion!, Signal, logger).Select(w => w.RunAsync(cancellationToken)).ToList();
                await _changed.WaitAsync(options.Resync, cancellationToken);
                await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken); // let a burst of events settle
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogPassFailed(logger, e.Message, backoff.TotalSeconds);
                await Task.Delay(backoff, cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromMinutes(1).Ticks));
            }
        }
    }

    /// <summary>One pass: read, decide, write only what changed.</summary>
    public async Task ReconcileOnceAsync(CancellationToken cancellationToken)
    {
        var state = await _reader.ReadAsync(cancellationToken);
        var result = PolicyReconciler.Reconcile(state, options.ConfigMapName, DateTimeOffset.UtcNow);
        foreach (var problem in result.Problems)
        {
            LogConfigMapTooLarge(logger, problem);
        }
        // A ConfigMap that cannot be written keeps its last content (never deleted for it).
        var written = result.Problems.Count > 0 ? 0 : await _writer.ApplyConfigMapsAsync(result.ConfigMaps, options.ConfigMapName, cancellationToken);
        var version = _reader.PolicyVersion!;
        foreach (var update in result.Statuses.Where(s => s.Changed))
        {
            await _writer.WriteStatusAsync(version, update, cancellationToken);
        }

        foreach (var policyEvent in result.Events)
        {
            await _writer.RecordEventAsync(policyEvent, version, cancellationToken);
        }

        // A notice holds while its cause lasts: recorded once per leader term, not once per pass.
        if (_noticed.Count > 50_000)
        {
            _noticed.Clear();
        }

        foreach (var notice in result.Notices.Where(n => _noticed.Add(n)))
        {
            await _writer.RecordEventAsync(notice, version, cancellationToken);
        }

        LogPass(logger, result.Statuses.Count, result.ConfigMaps.Count, written, result.Statuses.Count(s => s.Changed));
    }

    [LoggerMessage(60, LogLevel.Information, "{Identity} leads: reconciling BackendTLSPolicies", EventName = "LeaderStarted")]
    private static partial void LogLeading(ILogger logger, string identity);

    [LoggerMessage(61, LogLevel.Information, "{Identity} is no longer the leader", EventName = "LeaderStopped")]
    private static partial void LogNotLeading(ILogger logger, string identity);

    [LoggerMessage(62, LogLevel.Debug, "Reconciled {Policies} policies into {Namespaces} namespaces: {ConfigMapsWritten} ConfigMaps and {StatusesWritten} statuses written", EventName = "ReconcilePass")]
    private static partial void LogPass(ILogger logger, int policies, int namespaces, int configMapsWritten, int statusesWritten);

    [LoggerMessage(64, LogLevel.Error, "ConfigMaps not written: {Problem}", EventName = "ConfigMapTooLarge")]
    private static partial void LogConfigMapTooLarge(ILogger logger, string problem);

    [LoggerMessage(63, LogLevel.Warning, "Reconcile pass failed: {Problem}; retrying in {Seconds}s", EventName = "ReconcileFailed")]
    private static partial void LogPassFailed(ILogger logger, string problem, double seconds);
}
