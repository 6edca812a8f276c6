using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Http1;
using BackendTls.Sidecar.Telemetry;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>Which deadline of a connection ran out.</summary>
internal enum TimeoutKind
{
    None,

    /// <summary>No next request on a keep-alive connection (closed silently).</summary>
    KeepAlive,

    /// <summary>The gateway began a request and did not finish its head (408).</summary>
    RequestHeaders,

    /// <summary>The gateway stopped sending the request body (408).</summary>
    RequestBody,

    /// <summary>The backend did not send response headers after the request was sent (504).</summary>
    ResponseHeaders,

    /// <summary>A body stopped moving while being forwarded to the backend or to the gateway.</summary>
    BodyStalled,

    /// <summary>An upgraded connection carried no byte either way for --upgrade-idle-timeout.</summary>
    UpgradeIdle,

    /// <summary>The sidecar is shutting down.</summary>
    Shutdown,
}

/// <summary>
/// One connection from the gateway: reads request heads strictly (<see cref="Http1Parser"/>), hands each
/// request to the <see cref="Forwarder"/>, and keeps the connection alive while both sides allow it.
/// Owns the connection's buffers and deadlines; the shared <see cref="Heartbeat"/> enforces them.
/// </summary>
internal sealed class ProxyConnection : IHeartbeatTarget, IDisposable
{
    private readonly Socket _socket;
    private readonly ProxyContext _context;
    private readonly CancellationTokenSource _cancellation = new();
    private long _deadline;
    private TimeoutKind _deadlineKind;
    private long _uploadDeadline;
    private TimeoutKind _uploadDeadlineKind;
    private volatile bool _idle;
    private volatile bool _draining;

    public ProxyConnection(Socket socket, ProxyContext context, ListenerRole role)
    {
        _socket = socket;
        _context = context;
        Role = role;
        Stream = new NetworkStream(socket, ownsSocket: true);
        Input = new InputBuffer(Stream);
        var remote = (socket.RemoteEndPoint as IPEndPoint)?.Address;
        if (remote?.IsIPv4MappedToIPv6 == true)
        {
            remote = remote.MapToIPv4();
        }

        RemoteAddress = Encoding.ASCII.GetBytes(remote?.ToString() ?? "unknown");
        LocalPort = (socket.LocalEndPoint as IPEndPoint)?.Port ?? 0;
    }

    public ListenerRole Role { get; }

    public Socket Socket => _socket;

    /// <summary>Capture: where the gateway was connecting to (SO_ORIGINAL_DST).</summary>
    public IPEndPoint? OriginalDestination { get; set; }

    public NetworkStream Stream { get; }

    public InputBuffer Input { get; }

    /// <summary>For heads and chunk framing written to the gateway (and the request head to the backend).</summary>
    public OutputBuffer Output { get; } = new();

    /// <summary>For the request body, which may be written to the backend while the response comes back.</summary>
    public OutputBuffer UploadOutput { get; } = new();

    public RequestHead Request { get; } = new();

    public BodyReader RequestBody { get; } = new();

    public ResponseHead Response { get; } = new();

    public BodyReader ResponseBody { get; } = new();

    /// <summary>The gateway's address as ASCII, for X-Forwarded-For.</summary>
    public byte[] RemoteAddress { get; }

    public int LocalPort { get; }

    /// <summary>Cancels every read and write of the current exchange when a deadline passes.</summary>
    public CancellationToken Token => _cancellation.Token;

    public TimeoutKind TimedOut { get; private set; }

    /// <summary>When the current request's head was complete (Stopwatch ticks).</summary>
    public long RequestStarted { get; private set; }

    /// <summary>Set on shutdown: the current response is the last (Connection: close).</summary>
    public bool Draining => _draining;

    public ProxyContext Context => _context;

    /// <summary>A timeout cancelled the token; later exchanges on this connection would fail at once.</summary>
    public bool IsCancelled => _cancellation.IsCancellationRequested;

    public async Task RunAsync()
    {
        _context.Heartbeat.Register(this);
        try
        {
            if (Role != ListenerRole.Capture || await CaptureEntry.AcceptAsync(this))
            {
                await ServeAsync();
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // The gateway went away, or a deadline closed the connection: nothing left to answer.
        }
        catch (Exception e)
        {
            // A defect, not an input problem: log it with its stack, keep the process serving others.
            Log.ConnectionFailed(_context.Logger, e);
        }
        finally
        {
            _context.Heartbeat.Unregister(this);
            Dispose();
        }
    }

    private async Task ServeAsync()
    {
        var options = _context.Settings;
        for (var first = true; ; first = false)
        {
            _idle = true;
            if (_draining)
            {
                return;
            }

            SetDeadline(TimeoutKind.KeepAlive, options.IdleTimeout);
            if (Input.Available == 0)
            {
                await Input.WaitForDataAsync(Token);
                if (!await Input.FillAsync(Http1Parser.MaxRequestHeadBytes, Token))
                {
                    return; // the gateway closed an idle connection
                }
            }

            _idle = false;
            SetDeadline(TimeoutKind.RequestHeaders, options.RequestHeadersTimeout);
            if (first && await StartsWithH2cPrefaceAsync())
            {
                await HandOffH2cAsync();
                return;
            }

            ParseStatus status;
            ParseError error;
            int consumed;
            try
            {
                while ((status = Http1Parser.ParseRequest(Input.Array, Input.Start, Input.Available, Request, out consumed, out error)) == ParseStatus.Incomplete)
                {
                    if (!await Input.FillAsync(Http1Parser.MaxRequestHeadBytes + InputBuffer.BlockSize, Token))
                    {
                        return; // closed in the middle of a head
                    }
                }
            }
            catch (OperationCanceledException) when (TimedOut == TimeoutKind.RequestHeaders)
            {
                await AnswerAfterTimeoutAsync(new ProxyFailure(408, FailureReason.RequestTimeout,
                    $"the request head did not arrive within {options.RequestHeadersTimeout.TotalSeconds:0.###}s (--request-headers-timeout)"),
                    SidecarMetrics.UnknownTarget, _context.UnknownTarget, Stopwatch.GetTimestamp());
                return;
            }

            ClearDeadline();
            var started = RequestStarted = Stopwatch.GetTimestamp();
            if (status == ParseStatus.Invalid)
            {
                Log.BadRequest(_context.Logger, Encoding.ASCII.GetString(RemoteAddress), error.Reason, error.Detail);
                _context.UnknownTarget.Record(error.Status, Stopwatch.GetElapsedTime(started));
                await WriteErrorAsync(new ProxyFailure(error.Status, error.Reason, error.Detail), SidecarMetrics.UnknownTarget, close: true, CancellationToken.None);
                return;
            }

            Input.Consume(consumed);
            if (!await _context.Forwarder.ForwardAsync(this, started))
            {
                return;
            }
        }
    }

    /// <summary>Whether the connection opens with the HTTP/2 preface ("PRI * HTTP/2.0", h2c with prior knowledge, as gRPC clients send it).</summary>
    public async ValueTask<bool> StartsWithH2cPrefaceAsync()
    {
        while (Input.Available < Preface.Length && Preface.StartsWith(Input.Span))
        {
            if (!await Input.FillAsync(Http1Parser.MaxRequestHeadBytes, Token))
            {
                return false;
            }
        }

        return Input.Span.StartsWith(Preface);
    }

    private static ReadOnlySpan<byte> Preface => "PRI * HTTP/2.0\r\n"u8;

    /// <summary>
    /// Gives an h2c connection, with what was read of it, to Kestrel's HTTP/2 server (<see cref="H2cHandoff"/>,
    /// served by <see cref="H2cLane"/>) and returns when Kestrel is done with it; shutdown and the drain
    /// timeout close it as they close any connection.
    /// </summary>
    public async Task HandOffH2cAsync()
    {
        ClearDeadline();
        var alreadyRead = Input.Memory.ToArray();
        Input.Consume(Input.Available);
        Input.Release();
        var feature = new H2cConnectionFeature(Role, LocalPort, OriginalDestination, Encoding.ASCII.GetString(RemoteAddress));
        using var stop = Token.Register(static socket => ((Socket)socket!).Close(), _socket);
        // Ends when Kestrel is done with it, or when the connection is cut (drain timeout, shutdown), even
        // if Kestrel, stopping itself, never took it.
        await _context.H2c.RunAsync(Stream, alreadyRead, _socket.LocalEndPoint, _socket.RemoteEndPoint, feature, Abort).WaitAsync(Token);
    }

    /// <summary>After a timeout cancelled the exchange: answer with a fresh token, count it; the connection then closes.</summary>
    public async Task AnswerAfterTimeoutAsync(ProxyFailure failure, string target, RequestSeries series, long started)
    {
        series.Record(failure.Status, Stopwatch.GetElapsedTime(started));
        using var write = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await WriteErrorAsync(failure, target, close: true, write.Token);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
        {
            // The gateway is gone too.
        }
    }

    /// <summary>Writes the sidecar's own answer: the reason in a header and a small JSON body.</summary>
    public async ValueTask WriteErrorAsync(ProxyFailure failure, string target, bool close, CancellationToken cancellationToken)
    {
        ErrorResponse.Compose(Output, failure, target, close || !Request.KeepAlive || _draining, Request.IsHead);
        await Output.FlushToAsync(Stream, cancellationToken);
    }

    public void SetDeadline(TimeoutKind kind, TimeSpan after)
    {
        _deadlineKind = kind;
        Volatile.Write(ref _deadline, Heartbeat.DeadlineAfter(after));
    }

    public void ClearDeadline() => Volatile.Write(ref _deadline, 0);

    public void SetUploadDeadline(TimeoutKind kind, TimeSpan after)
    {
        _uploadDeadlineKind = kind;
        Volatile.Write(ref _uploadDeadline, Heartbeat.DeadlineAfter(after));
    }

    public void ClearUploadDeadline() => Volatile.Write(ref _uploadDeadline, 0);

    public void OnHeartbeat(long now)
    {
        var deadline = Volatile.Read(ref _deadline);
        if (deadline != 0 && now > deadline)
        {
            Expire(_deadlineKind);
            return;
        }

        var upload = Volatile.Read(ref _uploadDeadline);
        if (upload != 0 && now > upload)
        {
            Expire(_uploadDeadlineKind);
        }
    }

    /// <summary>Shutdown: the current exchange finishes (Connection: close); an idle connection closes now.</summary>
    public void BeginDrain()
    {
        _draining = true;
        if (_idle)
        {
            Expire(TimeoutKind.Shutdown);
        }
    }

    /// <summary>Ends the exchange's pending reads and writes; the connection then closes.</summary>
    public void CancelExchange() => Expire(TimeoutKind.None);

    /// <summary>Why the request body was refused, for the 400's detail.</summary>
    public string? UploadError { get; set; }

    /// <summary>The drain timeout passed: cut whatever is still running.</summary>
    public void Abort() => Expire(TimeoutKind.Shutdown);

    /// <summary>Closes with RST: to the gateway, a connection that failed, so its own retry logic runs.</summary>
    public void Reset()
    {
        Expire(TimeoutKind.None);
        BackendTls.Sidecar.Capture.Tunnel.Reset(_socket);
    }

    private void Expire(TimeoutKind kind)
    {
        Volatile.Write(ref _deadline, 0);
        Volatile.Write(ref _uploadDeadline, 0);
        if (TimedOut == TimeoutKind.None)
        {
            TimedOut = kind;
        }

        try
        {
            _cancellation.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Closed meanwhile.
        }
    }

    public void Dispose()
    {
        Input.Dispose();
        Output.Dispose();
        UploadOutput.Dispose();
        RequestBody.Dispose();
        ResponseBody.Dispose();
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed by the peer.
        }

        Stream.Dispose();
        _cancellation.Dispose();
    }
}
