using BackendTls.Sidecar.Configuration;
using BackendTls.Sidecar.Destinations;
using BackendTls.Sidecar.Telemetry;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>How a listener's connections are routed.</summary>
internal enum ListenerRole
{
    /// <summary>127.0.0.1:15001: the request names its target in the Host header.</summary>
    Explicit,

    /// <summary>A target's own <c>listenPort</c>: everything arriving there goes to that target.</summary>
    Dedicated,

    /// <summary>127.0.0.1/[::1]:15002: connections redirected by the capture rules; the original destination decides.</summary>
    Capture,
}

/// <summary>How the capture listener treats what the destination index does not know.</summary>
internal sealed record CaptureSettings(bool UnknownPassthrough, TimeSpan UnknownHold, TimeSpan ConnectTimeout);

/// <summary>The timeouts of the data path, from the command line.</summary>
internal sealed record ProxySettings(
    TimeSpan IdleTimeout,
    TimeSpan RequestHeadersTimeout,
    TimeSpan ResponseTimeout,
    TimeSpan BodyIdleTimeout,
    TimeSpan UpgradeIdleTimeout);

/// <summary>What every connection of the proxy shares.</summary>
internal sealed class ProxyContext(
    ProxySettings settings,
    CaptureSettings capture,
    IProxySnapshotSource snapshots,
    IDestinationSource destinations,
    SidecarMetrics metrics,
    Heartbeat heartbeat,
    ILogger logger)
{
    public ProxySettings Settings { get; } = settings;

    public CaptureSettings Capture { get; } = capture;

    public IDestinationSource Destinations { get; } = destinations;

    public IProxySnapshotSource Snapshots { get; } = snapshots;

    public SidecarMetrics Metrics { get; } = metrics;

    public Heartbeat Heartbeat { get; } = heartbeat;

    public ILogger Logger { get; } = logger;

    /// <summary>Requests that reached no target (404, 400, not ready).</summary>
    public RequestSeries UnknownTarget { get; } = metrics.RequestsFor(SidecarMetrics.UnknownTarget);

    public Forwarder Forwarder { get; set; } = null!;

    /// <summary>Where h2c connections go (Kestrel's HTTP/2 server, in the same host).</summary>
    public H2cHandoff H2c { get; set; } = null!;
}
