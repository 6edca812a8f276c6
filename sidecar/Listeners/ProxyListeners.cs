using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using BackendTls.Sidecar.Configuration;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Forwarding;
using BackendTls.Sidecar.Telemetry;

namespace BackendTls.Sidecar.Listeners;

/// <summary>What the admin listener reports about the proxy's listening sockets.</summary>
internal interface IListenerStatus
{
    /// <summary>Every bound proxy address, e.g. <c>127.0.0.1:15001</c>.</summary>
    IReadOnlyCollection<string> Bound { get; }

    /// <summary>Ports a config asked for that could not be bound, with the reason.</summary>
    IReadOnlyDictionary<int, string> Problems { get; }
}

/// <summary>
/// The proxy's listening sockets: the explicit listener and one per target <c>listenPort</c> (bound at start
/// and whenever a reload adds one). Accepts connections and runs each as a <see cref="ProxyConnection"/>.
/// On shutdown it stops accepting, lets in-flight exchanges finish (their responses say Connection: close)
/// and closes idle connections at once; what is still running when the drain timeout ends is cut.
/// </summary>
internal sealed class ProxyListeners : IHostedService, IListenerStatus, IDisposable
{
    private readonly IPEndPoint _explicit;
    private readonly int _capturePort;
    private readonly List<Socket> _capture = [];
    private readonly ConfigStore _config;
    private readonly ProxyContext _context;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<int, Socket> _dedicated = new();
    private readonly ConcurrentDictionary<int, string> _problems = new();
    private readonly ConcurrentDictionary<ProxyConnection, byte> _connections = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Socket? _explicitSocket;
    private volatile bool _draining;

    public ProxyListeners(IPEndPoint explicitListener, int capturePort, ConfigStore config, ProxyContext context, ILoggerFactory loggers)
    {
        _explicit = explicitListener;
        _capturePort = capturePort;
        _config = config;
        _context = context;
        _logger = loggers.CreateLogger("BackendTls.Sidecar");
        context.Heartbeat.EverySecond(SweepPools);
    }

    public IReadOnlyCollection<string> Bound =>
        [.. new[] { _explicitSocket?.LocalEndPoint?.ToString() }.Concat(_capture.Select(s => s.LocalEndPoint?.ToString()))
            .Concat(_dedicated.Values.Select(s => s.LocalEndPoint?.ToString())).OfType<string>()];

    public IReadOnlyDictionary<int, string> Problems => _problems;

    public int OpenConnections => _connections.Count;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // Load first so that dedicated ports are known; an invalid config still starts the process (not
        // ready), so the problem is visible in logs and on /healthz/ready.
        _config.ReloadIfChanged();
        _explicitSocket = Bind(_explicit, "--listen");
        Accept(_explicitSocket, ListenerRole.Explicit);
        if (_capturePort != 0)
        {
            // IPv4 and IPv6 loopback: the capture rules REDIRECT each family to its own loopback.
            _capture.Add(Bind(new IPEndPoint(IPAddress.Loopback, _capturePort), "--capture-port"));
            try
            {
                _capture.Add(Bind(new IPEndPoint(IPAddress.IPv6Loopback, _capturePort), "--capture-port"));
            }
            catch (IOException e)
            {
                Log.CaptureIpv6Unavailable(_logger, e.Message);
            }

            _capture.ForEach(socket => Accept(socket, ListenerRole.Capture));
            Log.CaptureListening(_logger, string.Join(", ", _capture.Select(s => s.LocalEndPoint)));
        }
        BindDedicatedPorts(_config.Current);
        _config.Changed += BindDedicatedPorts;
        return Task.CompletedTask;
    }

    private void BindDedicatedPorts(ProxySnapshot? snapshot)
    {
        foreach (var target in snapshot?.Targets ?? [])
        {
            if (target.Config.ListenPort is not { } port || _dedicated.ContainsKey(port) || _stopping.IsCancellationRequested)
            {
                continue;
            }

            try
            {
                var socket = Bind(new IPEndPoint(_explicit.Address, port), $"listenPort of {target.Id}");
                _dedicated[port] = socket;
                _problems.TryRemove(port, out _);
                Log.DedicatedPort(_logger, port, target.Id);
                Accept(socket, ListenerRole.Dedicated);
            }
            catch (IOException e)
            {
                _problems[port] = e.Message;
                Log.ListenPortUnavailable(_logger, target.Id, port, e.Message);
            }
        }
    }

    private static Socket Bind(IPEndPoint endpoint, string what)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            if (endpoint.AddressFamily == AddressFamily.InterNetworkV6 && endpoint.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            socket.Bind(endpoint);
            socket.Listen(1024);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new IOException($"cannot listen on {endpoint} ({what}): {SocketErrorText.Describe(e.SocketErrorCode)}", e);
        }
    }

    private void Accept(Socket listener, ListenerRole role) => _ = AcceptLoopAsync(listener, role);

    private async Task AcceptLoopAsync(Socket listener, ListenerRole role)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stopping.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                // EMFILE and friends: the process is out of descriptors; back off instead of spinning.
                Log.AcceptFailed(_logger, SocketErrorText.Describe(e.SocketErrorCode));
                await Task.Delay(100);
                continue;
            }

            socket.NoDelay = true;
            _ = RunAsync(new ProxyConnection(socket, _context, role));
        }
    }

    private async Task RunAsync(ProxyConnection connection)
    {
        _connections.TryAdd(connection, 0);
        if (_draining)
        {
            connection.BeginDrain();
        }

        try
        {
            await connection.RunAsync();
        }
        finally
        {
            _connections.TryRemove(connection, out _);
            if (_draining && _connections.IsEmpty)
            {
                _drained.TrySetResult();
            }
        }
    }

    private void SweepPools()
    {
        foreach (var target in _config.Current?.Targets ?? [])
        {
            target.Pool.Sweep();
        }
    }

    /// <summary>SIGTERM: stop accepting, finish in-flight exchanges until <paramref name="cancellationToken"/> (the drain timeout) ends.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _config.Changed -= BindDedicatedPorts;
        _draining = true;
        await _stopping.CancelAsync();
        _explicitSocket?.Dispose();
        _capture.ForEach(socket => socket.Dispose());
        foreach (var socket in _dedicated.Values)
        {
            socket.Dispose();
        }

        foreach (var connection in _connections.Keys)
        {
            connection.BeginDrain();
        }

        if (_connections.IsEmpty)
        {
            return;
        }

        try
        {
            await _drained.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            Log.DrainTimedOut(_logger, _connections.Count);
            foreach (var connection in _connections.Keys)
            {
                connection.Abort();
            }
        }
    }

    public void Dispose()
    {
        _stopping.Dispose();
        _explicitSocket?.Dispose();
        _capture.ForEach(socket => socket.Dispose());
        foreach (var socket in _dedicated.Values)
        {
            socket.Dispose();
        }
    }
}
