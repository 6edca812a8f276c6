namespace BackendTls.Sidecar.Failures;

/// <summary>
/// Machine-readable reasons a request could not reach its backend. Each is sent in the
/// <c>x-backendtls-error</c> response header and body, is a metric label and a log field.
/// </summary>
internal static class FailureReason
{
    // Certificate verification
    public const string NoCertificate = "no_certificate";
    public const string UntrustedRoot = "untrusted_root";
    public const string Expired = "expired";
    public const string NotYetValid = "not_yet_valid";
    public const string BadEku = "bad_eku";
    public const string BadSignature = "bad_signature";
    public const string ChainInvalid = "chain_invalid";
    public const string NoSan = "no_san";
    public const string HostnameMismatch = "hostname_mismatch";
    public const string SanMismatch = "san_mismatch";

    // Handshake and transport
    public const string ProtocolVersion = "protocol_version";
    public const string HandshakeFailed = "handshake_failed";
    public const string HandshakeTimeout = "handshake_timeout";
    public const string ConnectionRefused = "connection_refused";
    public const string ConnectTimeout = "connect_timeout";
    public const string DnsFailure = "dns_failure";
    public const string ConnectionFailed = "connection_failed";
    public const string UpstreamReset = "upstream_reset";
    public const string UpstreamProtocolError = "upstream_protocol_error";
    public const string UpstreamTimeout = "upstream_timeout";

    // Mutual TLS: the sidecar's own client certificate
    public const string ClientCertificateRejected = "client_certificate_rejected";
    public const string ClientCertificateInvalid = "client_certificate_invalid";

    // The gateway's request (answered 4xx/5xx by the sidecar, counted as the client's)
    public const string BadRequest = "bad_request";
    public const string HeadersTooLarge = "headers_too_large";
    public const string RequestTimeout = "request_timeout";
    public const string VersionNotSupported = "version_not_supported";
    public const string TransferCodingNotSupported = "transfer_coding_not_supported";
    public const string MethodNotAllowed = "method_not_allowed";
    public const string UpgradeNotSupported = "upgrade_not_supported";

    // Transparent capture
    public const string UnknownDestination = "unknown_destination";
    public const string AmbiguousDestination = "ambiguous_destination";

    // Policy
    public const string InvalidPolicy = "invalid_ca_ref";
    public const string NoPolicy = "no_policy";
    public const string NotReady = "not_ready";
}
