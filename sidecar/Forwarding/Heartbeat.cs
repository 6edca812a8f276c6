using System.Collections.Concurrent;
using System.Diagnostics;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>Something with deadlines that one shared timer checks.</summary>
internal interface IHeartbeatTarget
{
    void OnHeartbeat(long now);
}

/// <summary>
/// One timer for every connection's deadlines (as Kestrel's heartbeat does), instead of a timer armed and
/// disarmed per request: a deadline is a field write on the hot path, and this checks them four times a second.
/// </summary>
internal sealed class Heartbeat : IDisposable
{
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(250);

    private readonly ConcurrentDictionary<IHeartbeatTarget, byte> _targets = new();
    private readonly List<Action> _periodic = [];
    private readonly Timer _timer;
    private long _ticks;

    public Heartbeat()
    {
        _timer = new Timer(_ => Tick(), null, Interval, Interval);
    }

    public void Register(IHeartbeatTarget target) => _targets.TryAdd(target, 0);

    public void Unregister(IHeartbeatTarget target) => _targets.TryRemove(target, out _);

    /// <summary>Work to do once a second (closing idle upstream connections).</summary>
    public void EverySecond(Action action)
    {
        lock (_periodic)
        {
            _periodic.Add(action);
        }
    }

    private void Tick()
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var target in _targets.Keys)
        {
            target.OnHeartbeat(now);
        }

        if (++_ticks % 4 == 0)
        {
            lock (_periodic)
            {
                foreach (var action in _periodic)
                {
                    action();
                }
            }
        }
    }

    /// <summary>A deadline <paramref name="after"/> from now, in <see cref="Stopwatch"/> ticks.</summary>
    public static long DeadlineAfter(TimeSpan after) => Stopwatch.GetTimestamp() + (long)(after.TotalSeconds * Stopwatch.Frequency);

    public void Dispose() => _timer.Dispose();
}
