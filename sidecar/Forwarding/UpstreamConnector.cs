using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using BackendTls.Sidecar.Logging;
using BackendTls.Sidecar.Tls;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>
/// Opens connections to one target for its two SocketsHttpHandlers.
/// HTTP/1.1 lane: TCP and the TLS handshake are done here, because the handler would take the SNI from
/// the Host header while a BackendTLSPolicy fixes it to <c>validation.hostname</c>; this also gives
/// separate connect and handshake timeouts and an exact reason for every failure.
/// HTTP/2 lane: the handler must do TLS itself (HTTP/2 sends <c>:scheme https</c> only then), so its
/// request URI carries the policy hostname (the SNI) and this class only connects TCP to the Service.
/// </summary>
internal sealed class UpstreamConnector(UpstreamTarget target, UpstreamSettings settings, ILogger logger)
{
    private static readonly HttpRequestOptionsKey<long> ConnectedAt = new("backendtls.connected-at");

    /// <summary>HTTP/1.1 lane: TCP, then a verified TLS handshake with the policy's SNI.</summary>
    public async ValueTask<Stream> ConnectTlsAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var socket = await ConnectSocketAsync(context.DnsEndPoint, cancellationToken);
        var stream = new TrackedNetworkStream(socket, target.OpenConnections);
        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
        var started = Stopwatch.GetTimestamp();
        var wantsHttp2 = context.InitialRequestMessage.Version.Major == 2;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(settings.HandshakeTimeout);
            await ssl.AuthenticateAsClientAsync(target.SslOptionsFor(wantsHttp2), timeout.Token);
        }
        catch (Exception e)
        {
            await ssl.DisposeAsync();
            throw Classify(e, cancellationToken);
        }

        target.OnHandshakeCompleted(ssl, Stopwatch.GetElapsedTime(started));
        if (!wantsHttp2 && ssl.NegotiatedApplicationProtocol == SslApplicationProtocol.Http2)
        {
            // First contact offered h2 and http/1.1 and the backend chose h2: this connection was
            // requested for HTTP/1.1, so drop it; the forwarder resends on an h2 connection.
            await ssl.DisposeAsync();
            throw new UpstreamProtocolSwitchException();
        }

        return ssl;
    }

    /// <summary>HTTP/2 lane: TCP to the Service address (the URI names the policy hostname); the handler does TLS.</summary>
    public async ValueTask<Stream> ConnectTcpAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var socket = await ConnectSocketAsync(target.AddressEndPoint, cancellationToken);
        context.InitialRequestMessage.Options.Set(ConnectedAt, Stopwatch.GetTimestamp());
        return new TrackedNetworkStream(socket, target.OpenConnections);
    }

    /// <summary>HTTP/2 lane: runs after the handler's handshake; records it as the HTTP/1.1 lane does.</summary>
    public ValueTask<Stream> AfterHandshakeAsync(SocketsHttpPlaintextStreamFilterContext context, CancellationToken cancellationToken)
    {
        if (context.PlaintextStream is SslStream ssl)
        {
            var started = context.InitialRequestMessage.Options.TryGetValue(ConnectedAt, out var at) ? at : Stopwatch.GetTimestamp();
            target.OnHandshakeCompleted(ssl, Stopwatch.GetElapsedTime(started));
        }

        return ValueTask.FromResult(context.PlaintextStream);
    }

    private async ValueTask<Socket> ConnectSocketAsync(DnsEndPoint endpoint, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(settings.ConnectTimeout);
        try
        {
            if (settings.Resolve.TryGetValue($"{endpoint.Host}:{endpoint.Port}", out var overridden))
            {
                await socket.ConnectAsync(IPEndPoint.Parse(overridden), timeout.Token);
            }
            else
            {
                await socket.ConnectAsync(endpoint, timeout.Token);
            }

            return socket;
        }
        catch (Exception e)
        {
            socket.Dispose();
            throw e switch
            {
                OperationCanceledException when !cancellationToken.IsCancellationRequested => Fail(FailureReason.ConnectTimeout,
                    $"no TCP connection to {endpoint.Host}:{endpoint.Port} within {settings.ConnectTimeout.TotalSeconds:0.###}s"),
                SocketException { SocketErrorCode: SocketError.ConnectionRefused } => Fail(FailureReason.ConnectionRefused,
                    $"{endpoint.Host}:{endpoint.Port} refused the connection; is the backend listening on that port?"),
                SocketException { SocketErrorCode: SocketError.HostNotFound or SocketError.TryAgain or SocketError.NoData } => Fail(FailureReason.DnsFailure,
                    $"cannot resolve {endpoint.Host}: {e.Message}"),
                SocketException se => Fail(FailureReason.ConnectionFailed, $"{endpoint.Host}:{endpoint.Port}: {se.Message}"),
                _ => e,
            };
        }

        UpstreamTlsException Fail(string reason, string detail)
        {
            Log.UpstreamConnectFailed(logger, target.Id, $"{endpoint.Host}:{endpoint.Port}", target.Sni, reason, detail);
            return target.RecordFailure(reason, detail, null);
        }
    }

    private Exception Classify(Exception e, CancellationToken cancellationToken)
    {
        if (e is UpstreamTlsException)
        {
            return e; // thrown by the verifier, which has counted and logged it
        }

        return ClassifyHandshakeError(e, cancellationToken.IsCancellationRequested) ?? e;
    }

    /// <summary>
    /// Maps a handshake exception that is not a verification failure to a reason, counts and logs it.
    /// Null when it is not a handshake problem (e.g. the client went away).
    /// </summary>
    public UpstreamTlsException? ClassifyHandshakeError(Exception e, bool clientCancelled)
    {
        if (e is HttpRequestException { InnerException: { } inner })
        {
            return ClassifyHandshakeError(inner, clientCancelled);
        }

        var failure = e switch
        {
            OperationCanceledException when !clientCancelled => new UpstreamTlsException(FailureReason.HandshakeTimeout,
                $"the TLS handshake with SNI {target.Sni} did not finish within {settings.HandshakeTimeout.TotalSeconds:0.###}s", null),
            AuthenticationException or IOException when IsProtocolVersion(e) => new UpstreamTlsException(FailureReason.ProtocolVersion,
                $"the backend and the sidecar share no TLS version: the sidecar allows TLS {target.Config.Tls.MinVersionText}-{target.Config.Tls.MaxVersionText}; " +
                $"upgrade the backend to TLS 1.2 or later ({Innermost(e).Message})", null),
            AuthenticationException or IOException => new UpstreamTlsException(FailureReason.HandshakeFailed,
                $"TLS handshake with SNI {target.Sni} failed: {Innermost(e).Message}", null),
            _ => null,
        };

        if (failure is null)
        {
            return null;
        }

        Log.UpstreamConnectFailed(logger, target.Id, target.Config.Address, target.Sni, failure.Reason, failure.Detail);
        return target.RecordFailure(failure.Reason, failure.Detail, null);
    }

    private static bool IsProtocolVersion(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            var m = x.Message;
            if (m.Contains("protocol version", StringComparison.OrdinalIgnoreCase)
                || m.Contains("unsupported protocol", StringComparison.OrdinalIgnoreCase)
                || m.Contains("no protocols available", StringComparison.OrdinalIgnoreCase)
                || m.Contains("wrong version number", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null)
        {
            e = e.InnerException;
        }

        return e;
    }

    /// <summary>A NetworkStream that keeps the open-connections gauge right, whoever disposes it.</summary>
    private sealed class TrackedNetworkStream : NetworkStream
    {
        private readonly Prometheus.Gauge.Child _gauge;
        private int _disposed;

        public TrackedNetworkStream(Socket socket, Prometheus.Gauge.Child gauge)
            : base(socket, ownsSocket: true)
        {
            _gauge = gauge;
            gauge.Inc();
        }

        protected override void Dispose(bool disposing)
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                _gauge.Dec();
            }

            base.Dispose(disposing);
        }
    }
}

/// <summary>Settings every target's connector shares, from the command line.</summary>
internal sealed record UpstreamSettings(
    TimeSpan ConnectTimeout,
    TimeSpan HandshakeTimeout,
    TimeSpan IdleTimeout,
    IReadOnlyDictionary<string, string> Resolve,
    TimeSpan ResponseTimeout);

/// <summary>The backend picked h2 on a connection opened for HTTP/1.1; resend the request over h2.</summary>
internal sealed class UpstreamProtocolSwitchException() : Exception("backend selected h2; retry over HTTP/2");
