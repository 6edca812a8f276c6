namespace BackendTls.Sidecar.Logging;

/// <summary>
/// Every log event of the sidecar, source-generated, with stable ids (dashboards and alerts key on them).
/// 1xx lifecycle, 2xx config, 3xx upstream, 4xx requests. Next free ids: 106, 206, 304, 402.
/// </summary>
internal static partial class Log
{
    [LoggerMessage(100, LogLevel.Information, "Proxy listening on http://{Listen} (admin on http://{Admin}), config directory {ConfigDir}", EventName = "Started")]
    public static partial void Started(ILogger logger, string listen, string admin, string configDir);

    [LoggerMessage(101, LogLevel.Information, "Shutting down: draining in-flight requests for up to {DrainSeconds}s", EventName = "Draining")]
    public static partial void Draining(ILogger logger, double drainSeconds);

    [LoggerMessage(102, LogLevel.Warning, "Listening on {Listen}, which is not loopback: anything that reaches this address can use the proxy", EventName = "NonLoopbackListener")]
    public static partial void NonLoopbackListener(ILogger logger, string listen);

    [LoggerMessage(103, LogLevel.Warning, "Target {Target} asks for dedicated port {Port}, which was not bound at start; restart the sidecar to listen on it", EventName = "ListenPortNeedsRestart")]
    public static partial void ListenPortNeedsRestart(ILogger logger, string target, int port);

    [LoggerMessage(104, LogLevel.Information, "Listening on dedicated port {Port} for target {Target}", EventName = "DedicatedPort")]
    public static partial void DedicatedPort(ILogger logger, int port, string target);

    [LoggerMessage(105, LogLevel.Critical, "Cannot start: {Reason}", EventName = "StartFailed")]
    public static partial void StartFailed(ILogger logger, string reason);

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

    [LoggerMessage(400, LogLevel.Information, "No target for {Host}{Path}: answered 404 (not forwarded)", EventName = "NoTarget")]
    public static partial void NoTarget(ILogger logger, string host, string path);

    [LoggerMessage(401, LogLevel.Warning, "Refused request to fail-closed target {Target} with 503: {Reason}", EventName = "FailClosedRequest")]
    public static partial void FailClosedRequest(ILogger logger, string target, string reason);
}
