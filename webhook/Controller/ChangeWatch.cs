using System.Net;
using k8s;
using k8s.Autorest;

namespace BackendTls.Webhook.Controller;

/// <summary>
/// Watches one kind of object and signals the controller when anything changes. Level-triggered: a pass
/// re-reads everything, so the watch only has to say "now"; missing an event costs at most one resync
/// interval. List, then watch from the list's resourceVersion (with bookmarks); on 410 Gone or an error
/// event, list again; on failures, back off exponentially up to 30 s.
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

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var backoff = TimeSpan.FromSeconds(1);
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                Lists++;
                var resourceVersion = await list(cancellationToken);
                signal();
                await foreach (var type in watch(resourceVersion, cancellationToken))
                {
                    if (type == WatchEventType.Error)
                    {
                        // Typically 410 Gone: our resourceVersion is too old. Relist.
                        LogRelist(logger, what);
                        break;
                    }

                    if (type != WatchEventType.Bookmark)
                    {
                        signal();
                    }
                }

                backoff = TimeSpan.FromSeconds(1); // the server ended the watch (timeout): relist and go on
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Gone)
            {
                LogRelist(logger, what);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogFailed(logger, what, e.Message, backoff.TotalSeconds);
                try
                {
                    await Task.Delay(backoff, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
            }
        }
    }

    [LoggerMessage(70, LogLevel.Debug, "Watch of {What}: resourceVersion expired, listing again", EventName = "WatchRelist")]
    private static partial void LogRelist(ILogger logger, string what);

    [LoggerMessage(71, LogLevel.Warning, "Watch of {What} failed: {Problem}; retrying in {Seconds}s", EventName = "WatchFailed")]
    private static partial void LogFailed(ILogger logger, string what, string problem, double seconds);
}
