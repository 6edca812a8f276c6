using System.Diagnostics;
using System.Net;

namespace BackendTls.Sidecar.Upstreams;

/// <summary>
/// Idle keep-alive connections of one target, per backend endpoint, last in first out: the most recently
/// used connection is the one least likely to have been closed by the backend, and the rest age out.
/// A pool belongs to one target, so a connection verified for one policy is never used for another.
/// </summary>
internal sealed class UpstreamPool(TimeSpan idleTimeout, int maxIdlePerEndpoint = 256) : IDisposable
{
    private readonly Dictionary<EndPoint, Stack<UpstreamConnection>> _idle = [];
    private readonly Lock _lock = new();
    private bool _disposed;

    /// <summary>An idle connection to the endpoint that still looks usable, or null.</summary>
    public UpstreamConnection? Rent(EndPoint endpoint)
    {
        while (true)
        {
            UpstreamConnection? connection;
            lock (_lock)
            {
                if (!_idle.TryGetValue(endpoint, out var stack) || !stack.TryPop(out connection))
                {
                    return null;
                }
            }

            if (Stopwatch.GetElapsedTime(connection.IdleSince) < idleTimeout && connection.LooksUsable())
            {
                return connection;
            }

            connection.Dispose();
        }
    }

    /// <summary>Keeps a connection whose last exchange ended cleanly; disposes it when the pool is full or gone.</summary>
    public void Return(UpstreamConnection connection)
    {
        connection.IdleSince = Stopwatch.GetTimestamp();
        connection.Input.Release();
        lock (_lock)
        {
            if (!_disposed)
            {
                if (!_idle.TryGetValue(connection.Endpoint, out var stack))
                {
                    _idle[connection.Endpoint] = stack = new Stack<UpstreamConnection>();
                }

                if (stack.Count < maxIdlePerEndpoint)
                {
                    stack.Push(connection);
                    return;
                }
            }
        }

        connection.Dispose();
    }

    /// <summary>Closes connections idle for longer than the idle timeout (called by the heartbeat).</summary>
    public void Sweep()
    {
        List<UpstreamConnection>? expired = null;
        lock (_lock)
        {
            foreach (var stack in _idle.Values)
            {
                // Newest first: when the oldest (last) has not expired, none has.
                var connections = stack.ToArray();
                if (connections.Length == 0 || Stopwatch.GetElapsedTime(connections[^1].IdleSince) < idleTimeout)
                {
                    continue;
                }

                stack.Clear();
                for (var i = connections.Length - 1; i >= 0; i--)
                {
                    if (Stopwatch.GetElapsedTime(connections[i].IdleSince) < idleTimeout)
                    {
                        stack.Push(connections[i]);
                    }
                    else
                    {
                        (expired ??= []).Add(connections[i]);
                    }
                }
            }
        }

        expired?.ForEach(c => c.Dispose());
    }

    public void Dispose()
    {
        List<UpstreamConnection> all;
        lock (_lock)
        {
            _disposed = true;
            all = _idle.Values.SelectMany(s => s).ToList();
            _idle.Clear();
        }

        all.ForEach(c => c.Dispose());
    }
}
