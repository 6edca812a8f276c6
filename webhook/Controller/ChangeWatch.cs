using BackendTls.Webhook.Cluster;
using k8s;

namespace BackendTls.Webhook.Controller;

/// <summary>
/// Watches one kind of object and signals the controller when anything changes. Level-triggered: a pass
/// re-reads everything, so the watch only has to say "now"; missing an event costs at most one resync
/// interval. The loop (list, watch from its resourceVersion, relist on 410 Gone or an error event, back off
/// up to 30 s) is <see cref="ListWatch"/>, the one the admission caches run.
/// </summary>
/// <param name="what">For logs.</param>
/// <param name="list">Lists the kind and returns the list's resourceVersion.</param>
/// <param name="watch">Watches from a resourceVersion; yields each event's type.</param>
/// <param name="signal">Called on every change (and after every list).</param>
/// <param name="logger">Logger.</param>
internal sealed partial class ChangeWatch(
    string what,
    Func<CancellationToken, Task<string?>> list,
    Func<string?, CancellationToken, IAsyncEnumerable<WatchEventType>> watch,
    Action signal,
    ILogger logger)
{
    public int Lists { get; private set; }

    public Task RunAsync(CancellationToken cancellationToken) => ListWatch.RunAsync(
        async token =>
        {
            Lists++;
            var resourceVersion = await list(token);
            signal();
            return resourceVersion;
        },
        (resourceVersion, token) => Events(watch(resourceVersion, token)),
        (_, _) => signal(),
        () => LogRelist(logger, what),
        (problem, seconds) => LogFailed(logger, what, problem, seconds),
        cancellationToken);

    private static async IAsyncEnumerable<(WatchEventType Type, bool Object)> Events(IAsyncEnumerable<WatchEventType> types)
    {
        await foreach (var type in types)
        {
            yield return (type, true); // only the type matters: a pass re-reads everything
        }
    }

    [LoggerMessage(70, LogLevel.Debug, "Watch of {What}: resourceVersion expired, listing again", EventName = "WatchRelist")]
    private static partial void LogRelist(ILogger logger, string what);

    [LoggerMessage(71, LogLevel.Warning, "Watch of {What} failed: {Problem}; retrying in {Seconds}s", EventName = "WatchFailed")]
    private static partial void LogFailed(ILogger logger, string what, string problem, double seconds);
}
