using System.Text.Json;
using BackendTls.Policy.Destinations;

namespace BackendTls.Webhook.Cluster;

/// <summary>
/// The destination index as the webhook serves it to sidecars: each Service's entry with the revision it
/// last changed at, and tombstones of removed ones, so a sidecar that knows revision N gets only what
/// changed since (a delta), and one that knows nothing, or too old a revision, gets everything.
/// </summary>
internal sealed class DestinationFeed(int maxTombstones = 100_000)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, (ServiceDestinations Entry, string Json, long Revision)> _entries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _tombstones = new(StringComparer.Ordinal);
    private long _revision;
    private long _horizon; // deltas since revisions below this are no longer complete
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>This replica's numbering: revisions are counted per process, so a sidecar that moves to another replica starts over.</summary>
    public string Epoch { get; } = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));

    /// <summary>Whether Services and EndpointSlices have been listed once: before that the index is incomplete and not served.</summary>
    public bool Ready { get; private set; }

    public void MarkReady() => Ready = true;

    public long Revision
    {
        get
        {
            lock (_lock)
            {
                return _revision;
            }
        }
    }

    public int Services
    {
        get
        {
            lock (_lock)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Sets (or removes, with null) one Service's entry; a new revision only when it really changed.</summary>
    public void Set(string serviceKey, ServiceDestinations? entry)
    {
        TaskCompletionSource? wake = null;
        lock (_lock)
        {
            if (entry is null)
            {
                if (_entries.Remove(serviceKey))
                {
                    _tombstones[serviceKey] = ++_revision;
                    Prune();
                    wake = Rotate();
                }
            }
            else
            {
                var json = JsonSerializer.Serialize(entry, DestinationIndexJsonContext.Default.ServiceDestinations);
                if (!_entries.TryGetValue(serviceKey, out var current) || current.Json != json)
                {
                    _entries[serviceKey] = (entry, json, ++_revision);
                    _tombstones.Remove(serviceKey);
                    wake = Rotate();
                }
            }
        }

        wake?.TrySetResult();
    }

    /// <summary>What changed since <paramref name="since"/> of <paramref name="epoch"/> (everything for another epoch, 0, or a revision older than the horizon).</summary>
    public DestinationUpdate Since(string? epoch, long since)
    {
        lock (_lock)
        {
            if (epoch != Epoch || since <= 0 || since < _horizon || since > _revision)
            {
                return new DestinationUpdate { Epoch = Epoch, Revision = _revision, Full = true, Services = _entries.Values.Select(e => e.Entry).ToList() };
            }

            return new DestinationUpdate
            {
                Epoch = Epoch,
                Revision = _revision,
                Services = _entries.Values.Where(e => e.Revision > since).Select(e => e.Entry).ToList(),
                Removed = _tombstones.Where(t => t.Value > since).Select(t => t.Key).ToList(),
            };
        }
    }

    /// <summary>Completes when the revision passes <paramref name="since"/> (at once for another epoch), or at the timeout (then false).</summary>
    public async Task<bool> WaitBeyondAsync(string? epoch, long since, TimeSpan timeout, CancellationToken cancellationToken)
    {
        Task changed;
        lock (_lock)
        {
            if (epoch != Epoch || _revision > since)
            {
                return true;
            }

            changed = _changed.Task;
        }

        try
        {
            await changed.WaitAsync(timeout, cancellationToken);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private TaskCompletionSource Rotate()
    {
        var previous = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return previous;
    }

    private void Prune()
    {
        if (_tombstones.Count <= maxTombstones)
        {
            return;
        }

        // Forget the oldest half; a sidecar that knows an older revision gets everything instead of a delta.
        var cut = _tombstones.Values.Order().ElementAt(_tombstones.Count / 2);
        foreach (var stale in _tombstones.Where(t => t.Value <= cut).Select(t => t.Key).ToList())
        {
            _tombstones.Remove(stale);
        }

        _horizon = cut + 1;
    }
}
