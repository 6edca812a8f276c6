using k8s;

namespace BackendTls.Webhook.Cluster;

/// <summary>
/// One kind of object, kept current by list-then-watch (an informer): every replica reads from memory, so
/// admission never calls the API per review. Each object is projected to what we keep (a fraction of it)
/// as it arrives. The loop (relist on 410 Gone or a broken watch, backoff up to 30 s) is <see cref="ListWatch"/>.
/// </summary>
/// <typeparam name="TObject">The API object.</typeparam>
/// <typeparam name="TItem">What is kept of it (null: nothing).</typeparam>
internal sealed partial class ObjectCache<TObject, TItem>(
    string what,
    Func<CancellationToken, Task<(IEnumerable<TObject> Items, string? ResourceVersion)>> list,
    Func<string?, CancellationToken, IAsyncEnumerable<(WatchEventType Type, TObject Object)>> watch,
    Func<TObject, string> key,
    Func<TObject, TItem?> project,
    ILogger logger)
    where TItem : class
{
    private readonly Lock _lock = new();
    private Dictionary<string, TItem> _items = new(StringComparer.Ordinal);

    /// <summary>Raised after every change (with the keys that changed; all of them after a list).</summary>
    public event Action<IReadOnlyCollection<string>>? Changed;

    public bool Synced { get; private set; }

    public string What => what;

    public IReadOnlyDictionary<string, TItem> Snapshot()
    {
        lock (_lock)
        {
            return new Dictionary<string, TItem>(_items, StringComparer.Ordinal);
        }
    }

    public TItem? Get(string itemKey)
    {
        lock (_lock)
        {
            return _items.GetValueOrDefault(itemKey);
        }
    }

    public Task RunAsync(CancellationToken cancellationToken) => ListWatch.RunAsync(
        async token =>
        {
            var (objects, resourceVersion) = await list(token);
            var fresh = new Dictionary<string, TItem>(StringComparer.Ordinal);
            foreach (var obj in objects)
            {
                if (project(obj) is { } item)
                {
                    fresh[key(obj)] = item;
                }
            }

            IReadOnlyCollection<string> changed;
            lock (_lock)
            {
                changed = _items.Keys.Union(fresh.Keys).ToList();
                _items = fresh;
            }

            Synced = true;
            Changed?.Invoke(changed);
            return resourceVersion;
        },
        watch,
        (type, obj) =>
        {
            var itemKey = key(obj);
            var item = type == WatchEventType.Deleted ? null : project(obj);
            lock (_lock)
            {
                if (item is null)
                {
                    _items.Remove(itemKey);
                }
                else
                {
                    _items[itemKey] = item;
                }
            }

            Changed?.Invoke([itemKey]);
        },
        () => LogRelist(logger, what),
        (problem, seconds) => LogFailed(logger, what, problem, seconds),
        cancellationToken);

    [LoggerMessage(80, LogLevel.Debug, "Cache of {What}: resourceVersion expired, listing again", EventName = "CacheRelist")]
    private static partial void LogRelist(ILogger logger, string what);

    [LoggerMessage(81, LogLevel.Warning, "Cache of {What} could not be filled: {Problem}; retrying in {Seconds}s", EventName = "CacheFailed")]
    private static partial void LogFailed(ILogger logger, string what, string problem, double seconds);
}
