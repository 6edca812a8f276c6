using System.Net;
using k8s;
using k8s.Autorest;

namespace BackendTls.Webhook.Cluster;

/// <summary>
/// The list-then-watch loop of every watch in the webhook (the admission caches and the controller's change
/// triggers): list, watch from the list's resourceVersion; on an error event, 410 Gone or the server ending
/// the watch, list again; on failures back off from 1 s to 30 s. Bookmarks only move the resourceVersion.
/// </summary>
internal static class ListWatch
{
    /// <param name="list">Lists (and takes in) the kind; returns the list's resourceVersion.</param>
    /// <param name="watch">Watches from a resourceVersion.</param>
    /// <param name="onEvent">Each added, modified or deleted object.</param>
    /// <param name="relisting">The resourceVersion expired: listing again (for the caller's log).</param>
    /// <param name="failing">A failure and the backoff before the next try, in seconds (for the caller's log).</param>
    /// <param name="cancellationToken">Ends the loop.</param>
    public static async Task RunAsync<TObject>(
        Func<CancellationToken, Task<string?>> list,
        Func<string?, CancellationToken, IAsyncEnumerable<(WatchEventType Type, TObject Object)>> watch,
        Action<WatchEventType, TObject> onEvent,
        Action relisting,
        Action<string, double> failing,
        CancellationToken cancellationToken)
    {
        var backoff = TimeSpan.FromSeconds(1);
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var resourceVersion = await list(cancellationToken);
                await foreach (var (type, obj) in watch(resourceVersion, cancellationToken))
                {
                    if (type == WatchEventType.Error)
                    {
                        relisting(); // typically 410 Gone as an event: our resourceVersion is too old
                        break;
                    }

                    if (type != WatchEventType.Bookmark)
                    {
                        onEvent(type, obj);
                    }
                }

                backoff = TimeSpan.FromSeconds(1); // the server ended the watch: list again
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Gone)
            {
                relisting();
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                failing(e.Message, backoff.TotalSeconds);
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
}
