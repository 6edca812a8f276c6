namespace BackendTls.Sidecar.Tls;

/// <summary>
/// Thrown from the certificate validation callback; SocketsHttpHandler passes it up as the inner
/// exception of the request's <see cref="HttpRequestException"/>, so the reason reaches the response.
/// </summary>
internal sealed class UpstreamTlsException(string reason, string detail, PresentedCertificate? certificate)
    : Exception($"{reason}: {detail}")
{
    public string Reason { get; } = reason;

    /// <summary>For people: what is wrong and how to fix it.</summary>
    public string Detail { get; } = detail;

    public PresentedCertificate? Certificate { get; } = certificate;
}
