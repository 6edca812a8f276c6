using System.Security.Cryptography.X509Certificates;
using System.Net;
using System.Net.Security;
using BackendTls.Policy.Loading;
using BackendTls.Policy.Validation;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Telemetry;
using BackendTls.Sidecar.Tls;
using Prometheus;

namespace BackendTls.Sidecar.Upstreams;

/// <summary>
/// The runtime side of one configured target: its TLS options, connection pool, HTTP/2 handler and metric
/// series. Reused across reloads while its config fingerprint is unchanged (pools stay warm); otherwise
/// retired and disposed once its last in-flight request ends, so a reload never cuts a request.
/// </summary>
internal sealed class UpstreamTarget : IDisposable
{
    private const int ProtocolUnknown = 0;
    private const int ProtocolHttp11 = 1;
    private const int ProtocolHttp2 = 2;

    private readonly SidecarMetrics _metrics;
    private readonly ILogger _logger;
    private readonly SslClientAuthenticationOptions _sslOptions;
    private readonly UpstreamSettings _settings;
    private bool _asksForClientCertificate;
    private HttpMessageInvoker? _http2Invoker;
    private Gauge.Child? _openConnections;
    private int _protocol;
    private int _inFlight;
    private int _retired;
    private int _disposed;

    public UpstreamTarget(LoadedTarget config, UpstreamSettings settings, SidecarMetrics metrics, ILogger logger)
    {
        Config = config;
        Id = config.Id;
        Sni = config.Hostname;
        _metrics = metrics;
        _logger = logger;
        Http2BaseUri = $"https://{config.Hostname}:{config.Service.Port}";
        var colon = config.Address.LastIndexOf(':');
        AddressEndPoint = new DnsEndPoint(config.Address[..colon].Trim('[', ']'), int.Parse(config.Address.AsSpan(colon + 1), System.Globalization.CultureInfo.InvariantCulture));
        ResponseTimeout = settings.ResponseTimeout;
        _settings = settings;
        Requests = metrics.RequestsFor(Id);
        Pool = new UpstreamPool(settings.IdleTimeout);
        _protocol = config.Tls.Alpn switch
        {
            AlpnMode.Http2Only => ProtocolHttp2,
            AlpnMode.Http11Only => ProtocolHttp11,
            _ => ProtocolUnknown,
        };

        if (config.CaBundles.Count > 0)
        {
            metrics.CaExpiry.WithLabels(Id).Set(config.EarliestCaExpiry!.Value.ToUnixTimeSeconds());
        }

        if (config.Trust == TrustMode.FailClosed)
        {
            _sslOptions = new SslClientAuthenticationOptions();
            return;
        }

        _sslOptions = new BackendCertificateVerifier(config, RecordVerificationFailure).CreateSslOptions();
        Connector = new UpstreamConnector(this, settings, logger);
    }

    private static SocketsHttpHandler CreateHttp2Handler(UpstreamSettings settings, UpstreamConnector connector, SslClientAuthenticationOptions ssl) => new()
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        UseCookies = false,
        ActivityHeadersPropagator = null, // a proxy forwards trace headers as they come
        EnableMultipleHttp2Connections = true,
        PooledConnectionIdleTimeout = settings.IdleTimeout,
        // Re-resolve Service DNS now and then; a Service's ClusterIP rarely changes but may.
        PooledConnectionLifetime = TimeSpan.FromMinutes(10),
        // Backstop only: the connector enforces the connect timeout, the handshake timeout is this one.
        ConnectTimeout = settings.ConnectTimeout + settings.HandshakeTimeout,
        ConnectCallback = connector.ConnectTcpAsync,
        PlaintextStreamFilter = connector.AfterHandshakeAsync,
        SslOptions = ssl,
    };

    public LoadedTarget Config { get; }

    public string Id { get; }

    public string Sni { get; }

    /// <summary><c>https://hostname:port</c> for the HTTP/2 lane.</summary>
    public string Http2BaseUri { get; }

    /// <summary>The Service address (or the config's <c>address</c>): where explicit-mode requests go.</summary>
    public DnsEndPoint AddressEndPoint { get; }

    public UpstreamConnector? Connector { get; }

    public UpstreamPool Pool { get; }

    /// <summary>
    /// The HTTP/2 lane's client, made when a backend first chooses h2: most targets never do, and a gateway
    /// with 5,000 targets should not hold 5,000 idle handlers.
    /// </summary>
    public HttpMessageInvoker? Http2Invoker => Connector is null
        ? null
        : LazyInitializer.EnsureInitialized(ref _http2Invoker, () =>
            new HttpMessageInvoker(CreateHttp2Handler(_settings, Connector, SslOptionsFor(offerHttp2: true, http2Only: true)), disposeHandler: true));

    public bool IsFailClosed => Connector is null;

    public TimeSpan ResponseTimeout { get; }

    public RequestSeries Requests { get; }

    /// <summary>Its open-connections series, from the first connection on (an unused target adds no series).</summary>
    public Gauge.Child OpenConnections => LazyInitializer.EnsureInitialized(ref _openConnections, () => _metrics.OpenConnections.WithLabels(Id));

    /// <summary>HTTP/2 once the backend chose h2 in ALPN (or h2 is all the policy allows).</summary>
    public bool UseHttp2 => Volatile.Read(ref _protocol) == ProtocolHttp2;

    /// <summary>Until the first handshake tells, the HTTP/1.1 lane offers both protocols.</summary>
    public bool ProtocolKnown => Volatile.Read(ref _protocol) != ProtocolUnknown;

    /// <summary>Options for one handshake, with ALPN for the HTTP version the connection is opened for.</summary>
    public SslClientAuthenticationOptions SslOptionsFor(bool offerHttp2, bool http2Only = false) => new()
    {
        TargetHost = _sslOptions.TargetHost,
        EnabledSslProtocols = _sslOptions.EnabledSslProtocols,
        CipherSuitesPolicy = _sslOptions.CipherSuitesPolicy,
        LocalCertificateSelectionCallback = SelectClientCertificate,
        CertificateRevocationCheckMode = _sslOptions.CertificateRevocationCheckMode,
        CertificateChainPolicy = _sslOptions.CertificateChainPolicy,
        RemoteCertificateValidationCallback = _sslOptions.RemoteCertificateValidationCallback,
        ApplicationProtocols = http2Only ? Http2Alpn : offerHttp2 ? BothAlpn : Http11Alpn,
    };

    private static readonly List<SslApplicationProtocol> Http2Alpn = [SslApplicationProtocol.Http2];
    private static readonly List<SslApplicationProtocol> Http11Alpn = [SslApplicationProtocol.Http11];
    private static readonly List<SslApplicationProtocol> BothAlpn = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11];

    /// <summary>
    /// True once the backend asked for a client certificate in a handshake. Some servers (.NET's among them)
    /// refuse a certificate, or its absence, by closing the connection after the handshake without an alert:
    /// then this is what tells that closing apart from any other reset.
    /// </summary>
    public bool BackendAsksForClientCertificate => Volatile.Read(ref _asksForClientCertificate);

    /// <summary>
    /// The current client certificate (so a renewal applies to the next handshake, in both lanes), or none.
    /// </summary>
    private X509Certificate2 SelectClientCertificate(object sender, string targetHost, X509CertificateCollection local, X509Certificate? remote, string[] issuers)
    {
        // .NET also asks once before the handshake (no server certificate yet): answering none then makes it
        // ask again when the backend sends a CertificateRequest, which is how that request is seen.
        if (remote is null)
        {
            return null!;
        }

        Volatile.Write(ref _asksForClientCertificate, true);

        return _settings.ClientCertificates?.Current?.Context.TargetCertificate!;
    }

    public void OnHandshakeCompleted(SslStream ssl, TimeSpan duration)
    {
        if (Volatile.Read(ref _protocol) == ProtocolUnknown)
        {
            var h2 = ssl.NegotiatedApplicationProtocol == SslApplicationProtocol.Http2;
            Interlocked.CompareExchange(ref _protocol, h2 ? ProtocolHttp2 : ProtocolHttp11, ProtocolUnknown);
        }

        _metrics.Handshakes.WithLabels(Id, "ok", "verified").Inc();
        _metrics.HandshakeDuration.WithLabels(Id).Observe(duration.TotalSeconds);
        if (ssl.RemoteCertificate is System.Security.Cryptography.X509Certificates.X509Certificate2 leaf)
        {
            var notAfter = new DateTimeOffset(leaf.NotAfter.ToUniversalTime());
            _metrics.BackendCertificateExpiry.WithLabels(Id).Set(notAfter.ToUnixTimeSeconds());
            if (_logger.IsEnabled(LogLevel.Debug))
            {
                Log.UpstreamVerified(_logger, Id, Sni, ssl.SslProtocol.ToString(), ssl.NegotiatedApplicationProtocol.ToString(),
                    leaf.Subject, leaf.Issuer, notAfter);
            }
        }
    }

    private void RecordVerificationFailure(UpstreamFailureException failure)
    {
        _metrics.Handshakes.WithLabels(Id, "error", failure.Reason).Inc();
        if (failure.Certificate is { } presented)
        {
            Log.UpstreamVerificationFailed(_logger, Id, failure.Reason, Sni, presented.Subject, presented.SanText,
                presented.Issuer, presented.NotBefore, presented.NotAfter, failure.Detail);
        }
        else
        {
            Log.UpstreamConnectFailed(_logger, Id, Config.Address, Sni, failure.Reason, failure.Detail);
        }
    }

    /// <summary>Counts a failed connection and returns the exception to throw.</summary>
    public UpstreamFailureException RecordFailure(string reason, string detail, PresentedCertificate? certificate)
    {
        _metrics.Handshakes.WithLabels(Id, "error", reason).Inc();
        return new UpstreamFailureException(reason, detail, certificate);
    }

    /// <summary>
    /// Marks a request in flight. False once the target was retired and disposed: the caller then
    /// resolves the target again from the current snapshot.
    /// </summary>
    public bool TryAcquire()
    {
        if (Interlocked.Increment(ref _inFlight) > 0)
        {
            return true;
        }

        Interlocked.Decrement(ref _inFlight);
        return false;
    }

    /// <summary>Ends a request that <see cref="TryAcquire"/> started.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && Volatile.Read(ref _retired) == 1)
        {
            DisposeIfIdle();
        }
    }

    /// <summary>No new requests will come; dispose when the last in-flight one ends.</summary>
    public void Retire()
    {
        Volatile.Write(ref _retired, 1);
        DisposeIfIdle();
    }

    private void DisposeIfIdle()
    {
        // The sentinel makes every later TryAcquire fail, so nothing can start on a disposed pool.
        if (Interlocked.CompareExchange(ref _inFlight, DisposedSentinel, 0) == 0)
        {
            Dispose();
        }
    }

    private const int DisposedSentinel = int.MinValue / 2;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Pool.Dispose();
            Volatile.Read(ref _http2Invoker)?.Dispose();
        }
    }
}
