using Prometheus;

namespace BackendTls.Sidecar.Telemetry;

/// <summary>
/// Every metric the sidecar exports, prefixed <c>backendtls_</c>. One registry per host, so several
/// sidecars in one test process don't share counters. Label values are bounded: the target label is
/// a configured Service port or <c>unknown</c>.
/// </summary>
internal sealed class SidecarMetrics
{
    public const string UnknownTarget = "unknown";

    public SidecarMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        Requests = factory.CreateCounter("backendtls_requests_total",
            "Requests received from the gateway, by target (namespace/service:port) and response status code.",
            ["target", "code"]);
        RequestDuration = factory.CreateHistogram("backendtls_request_duration_seconds",
            "Time from receiving a request to sending the last byte of the response.",
            new HistogramConfiguration
            {
                LabelNames = ["target"],
                Buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
            });
        Handshakes = factory.CreateCounter("backendtls_upstream_handshakes_total",
            "TLS connections to backends, by target, result (ok or error) and reason (verified or a failure reason).",
            ["target", "result", "reason"]);
        HandshakeDuration = factory.CreateHistogram("backendtls_upstream_handshake_duration_seconds",
            "TLS handshake time to a backend, TCP connected to handshake done, including certificate verification.",
            new HistogramConfiguration
            {
                LabelNames = ["target"],
                Buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
            });
        OpenConnections = factory.CreateGauge("backendtls_upstream_connections_open",
            "Open TCP connections to backends.", ["target"]);
        ClientCertificateExpiry = factory.CreateGauge("backendtls_client_certificate_expiry_timestamp_seconds",
            "Unix time at which the client certificate the sidecar presents to backends (mutual TLS) expires.");
        UpgradedConnections = factory.CreateGauge("backendtls_upgraded_connections_open",
            "Gateway connections switched to another protocol (WebSocket) after a 101, tunnelled over verified TLS.");
        Reloads = factory.CreateCounter("backendtls_config_reloads_total",
            "Config directory loads, by result: success, failure (last good config kept) or unchanged.", ["result"]);
        LastReloadSuccess = factory.CreateGauge("backendtls_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.");
        ConfigValid = factory.CreateGauge("backendtls_config_valid",
            "1 if the config directory's current content is valid, 0 if the last load failed (the last good config is in use, if any).");
        Targets = factory.CreateGauge("backendtls_targets",
            "Configured targets, by state: verifying (CA or System trust) or fail_closed (no valid CA, answering 503).", ["state"]);
        CaExpiry = factory.CreateGauge("backendtls_ca_certificate_earliest_expiry_timestamp_seconds",
            "Unix time at which the first CA certificate of the target's trust bundle expires.", ["target"]);
        BackendCertificateExpiry = factory.CreateGauge("backendtls_backend_certificate_expiry_timestamp_seconds",
            "Unix time at which the certificate the backend last presented (and passed verification) expires.", ["target"]);
        CapturedConnections = factory.CreateCounter("backendtls_captured_connections_total",
            "Connections captured from the gateway (transparent mode), by outcome (tls, passthrough_tls, passthrough, denied, unknown, ambiguous, reset) and target (none if no policy).",
            ["outcome", "target"]);
        DestinationIndexAddresses = factory.CreateGauge("backendtls_destination_index_addresses",
            "Distinct (address, port) destinations in the index the capture listener looks original destinations up in.");
        DestinationIndexWatchConnected = factory.CreateGauge("backendtls_destination_index_watch_connected",
            "1 while the webhook's live destination index answers, 0 when it cannot be reached (the last index stays in use).");
    }

    public CollectorRegistry Registry { get; }

    public Counter Requests { get; }

    public Histogram RequestDuration { get; }

    public Counter Handshakes { get; }

    public Histogram HandshakeDuration { get; }

    public Gauge OpenConnections { get; }

    public Gauge UpgradedConnections { get; }

    public Gauge ClientCertificateExpiry { get; }

    public Counter Reloads { get; }

    public Gauge LastReloadSuccess { get; }

    public Gauge ConfigValid { get; }

    public Gauge Targets { get; }

    public Gauge CaExpiry { get; }

    public Gauge BackendCertificateExpiry { get; }

    public Counter CapturedConnections { get; }

    public Gauge DestinationIndexAddresses { get; }

    public Gauge DestinationIndexWatchConnected { get; }

    /// <summary>The request counters and duration of one target, with the label lookups done once.</summary>
    public RequestSeries RequestsFor(string target) => new(Requests, RequestDuration, target);

    /// <summary>Drops every series of a target that is no longer configured.</summary>
    public void RemoveTarget(string target)
    {
        foreach (var labels in Requests.GetAllLabelValues().Where(l => l[0] == target).ToList())
        {
            Requests.RemoveLabelled(labels);
        }

        foreach (var labels in Handshakes.GetAllLabelValues().Where(l => l[0] == target).ToList())
        {
            Handshakes.RemoveLabelled(labels);
        }

        RequestDuration.RemoveLabelled(target);
        HandshakeDuration.RemoveLabelled(target);
        OpenConnections.RemoveLabelled(target);
        CaExpiry.RemoveLabelled(target);
        BackendCertificateExpiry.RemoveLabelled(target);
    }
}

/// <summary>
/// A target's request counter children by status code and its duration child, created on first use: a
/// label lookup per request would cost more than the rest of the bookkeeping, and a target that gets no
/// requests (most of 5,000) holds no series and no table.
/// </summary>
internal sealed class RequestSeries(Counter requests, Histogram durations, string target)
{
    private Counter.Child?[]? _byStatus;
    private Histogram.Child? _duration;

    public void Record(int status, TimeSpan elapsed)
    {
        var index = status is >= 0 and < 600 ? status : 0;
        var byStatus = LazyInitializer.EnsureInitialized(ref _byStatus, () => new Counter.Child?[600]);
        var counter = Volatile.Read(ref byStatus[index]);
        if (counter is null)
        {
            counter = requests.WithLabels(target, index.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Volatile.Write(ref byStatus[index], counter);
        }

        counter.Inc();
        LazyInitializer.EnsureInitialized(ref _duration, () => durations.WithLabels(target)).Observe(elapsed.TotalSeconds);
    }
}
