namespace BackendTls.Sidecar.Telemetry;

/// <summary>
/// Every log event of the sidecar, source-generated, with stable ids (dashboards and alerts key on them).
/// 1xx lifecycle, 2xx config, 3xx upstream, 4xx requests. Next free ids: 112, 213, 305, 411 (406, h2c refused, is retired: h2c is served now).
/// </summary>
internal static partial class Log
{
    [LoggerMessage(100, LogLevel.Information, "Proxy listening on http://{Listen} (admin on http://{Admin}), config directory {ConfigDir}", EventName = "Started")]
    public static partial void Started(ILogger logger, string listen, string admin, string configDir);

    [LoggerMessage(101, LogLevel.Information, "Shutting down: draining in-flight requests for up to {DrainSeconds}s", EventName = "Draining")]
    public static partial void Draining(ILogger logger, double drainSeconds);

    [LoggerMessage(102, LogLevel.Warning, "Listening on {Listen}, which is not loopback: anything that reaches this address can use the proxy", EventName = "NonLoopbackListener")]
    public static partial void NonLoopbackListener(ILogger logger, string listen);

    [LoggerMessage(103, LogLevel.Error, "Target {Target} asks for dedicated port {Port}, which cannot be bound: {Reason}; requests to that port are not served until it is free", EventName = "ListenPortUnavailable")]
    public static partial void ListenPortUnavailable(ILogger logger, string target, int port, string reason);

    [LoggerMessage(104, LogLevel.Information, "Listening on dedicated port {Port} for target {Target}", EventName = "DedicatedPort")]
    public static partial void DedicatedPort(ILogger logger, int port, string target);

    [LoggerMessage(105, LogLevel.Critical, "Cannot start: {Reason}", EventName = "StartFailed")]
    public static partial void StartFailed(ILogger logger, string reason);

    [LoggerMessage(106, LogLevel.Error, "A gateway connection failed on a defect (not its input); the connection was closed", EventName = "ConnectionFailed")]
    public static partial void ConnectionFailed(ILogger logger, Exception exception);

    [LoggerMessage(107, LogLevel.Error, "Cannot accept connections: {Reason}; retrying", EventName = "AcceptFailed")]
    public static partial void AcceptFailed(ILogger logger, string reason);

    [LoggerMessage(108, LogLevel.Warning, "Drain timeout: closing {Count} connection(s) that are still busy", EventName = "DrainTimedOut")]
    public static partial void DrainTimedOut(ILogger logger, int count);

    [LoggerMessage(110, LogLevel.Information, "Capture listener on {Addresses} (transparent mode)", EventName = "CaptureListening")]
    public static partial void CaptureListening(ILogger logger, string addresses);

    [LoggerMessage(111, LogLevel.Information, "No IPv6 capture listener: {Reason}; IPv4 only (a pod without IPv6)", EventName = "CaptureIpv6Unavailable")]
    public static partial void CaptureIpv6Unavailable(ILogger logger, string reason);

    [LoggerMessage(200, LogLevel.Information, "Config {Fingerprint} loaded from {Path}: {TargetCount} target(s)", EventName = "ConfigLoaded")]
    public static partial void ConfigLoaded(ILogger logger, string fingerprint, string path, int targetCount);

    [LoggerMessage(201, LogLevel.Error, "Config in {Path} is invalid; {Action}. Problem: {Problem}", EventName = "ConfigRejected")]
    public static partial void ConfigRejected(ILogger logger, string path, string action, string problem);

    [LoggerMessage(202, LogLevel.Warning, "Config warning: {Warning}", EventName = "ConfigWarning")]
    public static partial void ConfigWarning(ILogger logger, string warning);

    [LoggerMessage(203, LogLevel.Information, "Target {Target}: SNI {Sni}, verify {Verify}, trust {Trust}, TLS {MinVersion}-{MaxVersion}, ALPN {Alpn}, connect to {Address}", EventName = "TargetConfigured")]
    public static partial void TargetConfigured(ILogger logger, string target, string sni, string verify, string trust, string minVersion, string maxVersion, string alpn, string address);

    [LoggerMessage(204, LogLevel.Warning, "Target {Target} is fail-closed (requests get 503): {Reason}", EventName = "TargetFailClosed")]
    public static partial void TargetFailClosed(ILogger logger, string target, string reason);

    [LoggerMessage(205, LogLevel.Warning, "Config watcher error, falling back to polling: {Message}", EventName = "WatcherError")]
    public static partial void WatcherError(ILogger logger, string message);

    [LoggerMessage(206, LogLevel.Critical, "Loading the config failed on a defect; keeping the last good config", EventName = "ReloadCrashed")]
    public static partial void ReloadCrashed(ILogger logger, Exception exception);

    [LoggerMessage(207, LogLevel.Information, "Destination index {Revision}: {Services} Service(s), {Addresses} destination(s)", EventName = "DestinationIndexLoaded")]
    public static partial void DestinationIndexLoaded(ILogger logger, string revision, int services, int addresses);

    [LoggerMessage(208, LogLevel.Error, "Destination index {Path} refused, keeping the last good one: {Problem}", EventName = "DestinationIndexRejected")]
    public static partial void DestinationIndexRejected(ILogger logger, string path, string problem);

    [LoggerMessage(209, LogLevel.Warning, "Destination index {Url} unreachable: {Problem}; keeping the last index, retrying in {Seconds}s", EventName = "IndexWatchFailed")]
    public static partial void IndexWatchFailed(ILogger logger, string url, string problem, double seconds);

    [LoggerMessage(210, LogLevel.Information, "Destination index {Url} answers again", EventName = "IndexWatchRecovered")]
    public static partial void IndexWatchRecovered(ILogger logger, string url);

    [LoggerMessage(211, LogLevel.Information, "Client certificate for backends loaded: {Subject}, issued by {Issuer}, valid until {NotAfter:u}, SHA-256 {Fingerprint}, from {Directory}", EventName = "ClientCertificateLoaded")]
    public static partial void ClientCertificateLoaded(ILogger logger, string subject, string issuer, DateTimeOffset notAfter, string fingerprint, string directory);

    [LoggerMessage(212, LogLevel.Error, "Client certificate not used: {Problem}. In use: {InUse}", EventName = "ClientCertificateRejected")]
    public static partial void ClientCertificateRejected(ILogger logger, string problem, string inUse);

    [LoggerMessage(300, LogLevel.Warning,
        "Upstream TLS to {Target} failed: {Reason}. SNI {Sni}; presented certificate subject \"{Subject}\", SANs [{Sans}], issuer \"{Issuer}\", valid {NotBefore:u} to {NotAfter:u}. {Detail}",
        EventName = "UpstreamVerificationFailed")]
    public static partial void UpstreamVerificationFailed(ILogger logger, string target, string reason, string sni, string subject, string sans, string issuer, DateTimeOffset notBefore, DateTimeOffset notAfter, string detail);

    [LoggerMessage(301, LogLevel.Warning, "Upstream connection to {Target} ({Address}, SNI {Sni}) failed: {Reason}. {Detail}", EventName = "UpstreamConnectFailed")]
    public static partial void UpstreamConnectFailed(ILogger logger, string target, string address, string sni, string reason, string detail);

    [LoggerMessage(302, LogLevel.Debug, "Verified TLS to {Target}: SNI {Sni}, {Protocol}, ALPN {Alpn}, certificate \"{Subject}\" issued by \"{Issuer}\", expires {NotAfter:u}", EventName = "UpstreamVerified")]
    public static partial void UpstreamVerified(ILogger logger, string target, string sni, string protocol, string alpn, string subject, string issuer, DateTimeOffset notAfter);

    [LoggerMessage(303, LogLevel.Debug, "Upstream {Target} failed after the response started: {Message}", EventName = "UpstreamResponseAborted")]
    public static partial void UpstreamResponseAborted(ILogger logger, string target, string message);

    [LoggerMessage(304, LogLevel.Warning, "Request to {Target} failed: {Reason}. {Detail}", EventName = "UpstreamRequestFailed")]
    public static partial void UpstreamRequestFailed(ILogger logger, string target, string reason, string detail);

    [LoggerMessage(400, LogLevel.Information, "No target for {Host}{Path}: answered 404 (not forwarded)", EventName = "NoTarget")]
    public static partial void NoTarget(ILogger logger, string host, string path);

    [LoggerMessage(401, LogLevel.Warning, "Refused request to fail-closed target {Target} with 503: {Reason}", EventName = "FailClosedRequest")]
    public static partial void FailClosedRequest(ILogger logger, string target, string reason);

    [LoggerMessage(402, LogLevel.Information, "Refused a request from {Remote}: {Reason}. {Detail}", EventName = "BadRequest")]
    public static partial void BadRequest(ILogger logger, string remote, string reason, string detail);

    [LoggerMessage(403, LogLevel.Warning, "A connection reached the capture listener without being redirected (from {Remote}); closed. Connect to the original destination instead", EventName = "CaptureNotRedirected")]
    public static partial void CaptureNotRedirected(ILogger logger, string remote);

    [LoggerMessage(404, LogLevel.Debug, "Captured connection to {Destination} ({Service}): {Outcome}", EventName = "CapturedConnection")]
    public static partial void CapturedConnection(ILogger logger, string destination, string service, string outcome);

    [LoggerMessage(405, LogLevel.Warning, "Captured connection to {Destination} denied: {Detail}", EventName = "CaptureDenied")]
    public static partial void CaptureDenied(ILogger logger, string destination, string detail);

    [LoggerMessage(407, LogLevel.Warning, "Captured connection to {Destination} ({Target}): {Reason}; reset the gateway's connection so it can try another endpoint. {Detail}", EventName = "CaptureReset")]
    public static partial void CaptureReset(ILogger logger, string destination, string target, string reason, string detail);

    [LoggerMessage(408, LogLevel.Warning, "Pass-through connection to {Destination} failed: {Reason}; reset the gateway's connection", EventName = "PassthroughFailed")]
    public static partial void PassthroughFailed(ILogger logger, string destination, string reason);

    [LoggerMessage(409, LogLevel.Information, "Upgraded connection to {Target} closed: no byte either way for {IdleSeconds}s (--upgrade-idle-timeout)", EventName = "UpgradeIdle")]
    public static partial void UpgradeIdle(ILogger logger, string target, double idleSeconds);

    [LoggerMessage(410, LogLevel.Debug, "Upgraded connection to {Target} ended after {Seconds:0.###}s", EventName = "UpgradeEnded")]
    public static partial void UpgradeEnded(ILogger logger, string target, double seconds);
}
