namespace BackendTls.Webhook.Admin;

/// <summary>
/// Gives memory back after a burst of admissions. The GC only runs when something allocates, so after a
/// rollout of hundreds of pods an idle webhook would keep the heap (and the freed Kestrel buffers) it grew to,
/// measured at over 2x its idle RSS (docs/performance.md). Once no review has arrived for a while, one
/// aggressive collection decommits what the burst left behind; a busy webhook is never interrupted.
/// </summary>
internal sealed partial class IdleMemoryTrimmer(WebhookMetrics metrics, TimeProvider time, ILogger<IdleMemoryTrimmer> logger) : BackgroundService
{
    public static readonly TimeSpan QuietPeriod = TimeSpan.FromSeconds(10);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(QuietPeriod, time);
        double seen = 0;
        var trimmed = true;
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            var answered = metrics.Duration.Count;
            if (answered != seen)
            {
                seen = answered; // busy in the last period: wait for a quiet one
                trimmed = false;
                continue;
            }

            if (!trimmed)
            {
                trimmed = true;
                var before = Environment.WorkingSet;
                GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
                LogTrimmed(logger, before / (1024 * 1024), Environment.WorkingSet / (1024 * 1024));
            }
        }
    }

    [LoggerMessage(20, LogLevel.Debug, "Idle after admissions: collected, working set {BeforeMiB} MiB -> {AfterMiB} MiB", EventName = "MemoryTrimmed")]
    private static partial void LogTrimmed(ILogger logger, long beforeMiB, long afterMiB);
}
