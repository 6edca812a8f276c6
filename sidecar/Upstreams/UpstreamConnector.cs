using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using BackendTls.Policy.Validation;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Telemetry;

namespace BackendTls.Sidecar.Upstreams;

/// <summary>
/// Opens verified TLS connections to one target: TCP with its own timeout, then the handshake with the
/// policy's SNI and verifier under the handshake timeout. Every failure is classified here, once, into a
/// reason, counted as a handshake outcome and logged, and thrown as <see cref="UpstreamFailureException"/>.
/// The HTTP/2 lane's SocketsHttpHandler gets TCP from here and does the handshake itself (it sends
/// <c>:scheme https</c> only then); its request URI carries the policy hostname, so the SNI is the same.
/// </summary>
internal sealed class UpstreamConnector(UpstreamTarget target, UpstreamSettings settings, ILogger logger)
{
    private static readonly HttpRequestOptionsKey<long> ConnectedAt = new("backendtls.connected-at");

    /// <summary>TCP, then a verified TLS handshake with the policy's SNI.</summary>
    /// <param name="endpoint">Where to connect: the Service address, or the original destination of a captured connection.</param>
    /// <param name="offerHttp2">Offer h2 in ALPN (the caller then checks what the backend chose).</param>
    /// <param name="cancellationToken">The client went away.</param>
    public async ValueTask<UpstreamConnection> ConnectAsync(EndPoint endpoint, bool offerHttp2, CancellationToken cancellationToken)
    {
        RefuseWithoutClientCertificate();
        var socket = await ConnectSocketAsync(endpoint, cancellationToken);
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        var started = Stopwatch.GetTimestamp();
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(settings.HandshakeTimeout);
            await ssl.AuthenticateAsClientAsync(target.SslOptionsFor(offerHttp2), timeout.Token);
        }
        catch (Exception e)
        {
            await ssl.DisposeAsync();
            throw ClassifyHandshakeFailure(e, endpoint, cancellationToken.IsCancellationRequested);
        }

        target.OnHandshakeCompleted(ssl, Stopwatch.GetElapsedTime(started));
        return new UpstreamConnection(socket, ssl, endpoint, target.OpenConnections);
    }

    /// <summary>
    /// HTTP/2 lane: TCP to the Service address when the URI names the policy hostname, or to the IP the URI
    /// names (a captured connection's original destination); the handler does TLS.
    /// </summary>
    public async ValueTask<Stream> ConnectTcpAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        EndPoint endpoint = IPAddress.TryParse(context.DnsEndPoint.Host, out var ip) ? new IPEndPoint(ip, context.DnsEndPoint.Port) : target.AddressEndPoint;
        RefuseWithoutClientCertificate();
        var socket = await ConnectSocketAsync(endpoint, cancellationToken);
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

    /// <summary>A client certificate is configured but none can be presented: fail closed, never connect without it.</summary>
    private void RefuseWithoutClientCertificate()
    {
        if (settings.ClientCertificates?.FailClosedReason is { } reason)
        {
            var detail = reason + " (the sidecar presents it to every backend; it is not sent without one)";
            Log.UpstreamConnectFailed(logger, target.Id, target.Config.Address, target.Sni, FailureReason.ClientCertificateInvalid, detail);
            throw target.RecordFailure(FailureReason.ClientCertificateInvalid, detail, null);
        }
    }

    /// <summary>
    /// A TLS alert the backend sent about a certificate: the sidecar sends certificates only as a client, so
    /// such an alert refuses its client certificate (or its absence). During the handshake with TLS 1.2;
    /// with TLS 1.3 on the first read after it, so the lanes ask here too. Null when it is no such alert.
    /// </summary>
    /// <param name="e">The failure.</param>
    /// <param name="closedBeforeAnswer">The connection ended before any response byte, right after its handshake.</param>
    public UpstreamFailureException? ClientCertificateRefusal(Exception e, bool closedBeforeAnswer = false)
    {
        var text = Innermost(e);
        string? alert = closedBeforeAnswer && target.BackendAsksForClientCertificate ? "none: it asked for a client certificate, then closed the connection without answering" : null;
        foreach (var name in alert is not null ? [] : (ReadOnlySpan<string>)["certificate required", "bad certificate", "unknown ca", "certificate unknown", "certificate expired",
                     "certificate revoked", "unsupported certificate", "access denied"])
        {
            if (text.Contains("alert " + name, StringComparison.OrdinalIgnoreCase))
            {
                alert = name;
                break;
            }
        }

        if (alert is null)
        {
            return null;
        }

        var presented = settings.ClientCertificates?.Current is { } current
            ? $"the sidecar's client certificate {current.Subject} (issued by {current.Issuer})"
            : "the connection, which carried no client certificate";
        var fix = settings.ClientCertificates?.Current is null
            ? "the backend requires mutual TLS: give the gateway's pods a client certificate (backendtls.io/client-certificate-secret, docs/proxy-behaviour.md)"
            : "make the backend trust its issuer, or mount a certificate the backend accepts";
        var detail = $"the backend refused {presented} (TLS alert: {alert}); {fix}";
        Log.UpstreamConnectFailed(logger, target.Id, target.Config.Address, target.Sni, FailureReason.ClientCertificateRejected, detail);
        return target.RecordFailure(FailureReason.ClientCertificateRejected, detail, null);
    }

    private async ValueTask<Socket> ConnectSocketAsync(EndPoint endpoint, CancellationToken cancellationToken)
    {
        var address = Describe(endpoint);
        var destination = endpoint is DnsEndPoint dns && settings.Resolve.TryGetValue($"{dns.Host}:{dns.Port}", out var overridden)
            ? IPEndPoint.Parse(overridden)
            : endpoint;
        var socket = destination is IPEndPoint ip
            ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true }
            : new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(settings.ConnectTimeout);
        try
        {
            await socket.ConnectAsync(destination, timeout.Token);
            return socket;
        }
        catch (Exception e)
        {
            socket.Dispose();
            if (cancellationToken.IsCancellationRequested)
            {
                throw;
            }

            throw e switch
            {
                OperationCanceledException => Fail(FailureReason.ConnectTimeout,
                    $"no TCP connection to {address} within {settings.ConnectTimeout.TotalSeconds:0.###}s (--connect-timeout)"),
                SocketException { SocketErrorCode: SocketError.ConnectionRefused } => Fail(FailureReason.ConnectionRefused,
                    $"{address} refused the connection; is the backend listening on that port?"),
                SocketException { SocketErrorCode: SocketError.HostNotFound or SocketError.TryAgain or SocketError.NoData } se => Fail(FailureReason.DnsFailure,
                    $"cannot resolve {address}: {SocketErrorText.Describe(se.SocketErrorCode)}"),
                SocketException se => Fail(FailureReason.ConnectionFailed, $"{address}: {SocketErrorText.Describe(se.SocketErrorCode)}"),
                _ => e,
            };
        }

        UpstreamFailureException Fail(string reason, string detail)
        {
            Log.UpstreamConnectFailed(logger, target.Id, address, target.Sni, reason, detail);
            return target.RecordFailure(reason, detail, null);
        }
    }

    /// <summary>
    /// The one classifier of handshake failures (also for the HTTP/2 lane, whose handler does the handshake):
    /// an <see cref="UpstreamFailureException"/> with the reason, counted and logged; other exceptions as they are.
    /// </summary>
    public Exception ClassifyHandshakeFailure(Exception e, EndPoint endpoint, bool clientCancelled)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is UpstreamFailureException verification)
            {
                return verification; // thrown by the verifier, which has counted and logged it
            }
        }

        if (clientCancelled)
        {
            return e;
        }

        if (ClientCertificateRefusal(e) is { } refused)
        {
            return refused;
        }

        var failure = e switch
        {
            OperationCanceledException => new UpstreamFailureException(FailureReason.HandshakeTimeout,
                $"the TLS handshake with SNI {target.Sni} did not finish within {settings.HandshakeTimeout.TotalSeconds:0.###}s (--handshake-timeout)", null),
            AuthenticationException or IOException when IsProtocolVersion(e) => new UpstreamFailureException(FailureReason.ProtocolVersion,
                $"the backend and the sidecar share no TLS version: the sidecar allows TLS {target.Config.Tls.MinVersionText}-{target.Config.Tls.MaxVersionText}; " +
                $"upgrade the backend to TLS 1.2 or later ({Innermost(e)})", null),
            AuthenticationException or IOException => new UpstreamFailureException(FailureReason.HandshakeFailed,
                $"TLS handshake with SNI {target.Sni} failed: {Innermost(e)}" + (target.Config.Tls.Tls12CipherSuites is null ? string.Empty
                    : $"; over TLS 1.2 the policy allows only {target.Config.Tls.CipherSuitesText} ({TlsSettings.CipherSuitesKey}): check the backend offers one of them"), null),
            _ => null,
        };

        if (failure is null)
        {
            return e;
        }

        Log.UpstreamConnectFailed(logger, target.Id, Describe(endpoint), target.Sni, failure.Reason, failure.Detail);
        return target.RecordFailure(failure.Reason, failure.Detail, null);
    }

    private static string Describe(EndPoint endpoint) => endpoint switch
    {
        DnsEndPoint dns => $"{dns.Host}:{dns.Port}",
        _ => endpoint.ToString() ?? "?",
    };

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

    /// <summary>OpenSSL's own text when there is one (it survives the AOT build), else the socket error in words.</summary>
    private static string Innermost(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is SocketException socket)
            {
                return SocketErrorText.Describe(socket.SocketErrorCode);
            }
        }

        while (e.InnerException is not null)
        {
            e = e.InnerException;
        }

        return e is IOException && e.Message.StartsWith("net_", StringComparison.Ordinal)
            ? "the backend closed the connection during the handshake"
            : e.Message;
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
    TimeSpan ResponseTimeout,
    BackendTls.Sidecar.Tls.ClientCertificates? ClientCertificates = null);
