namespace BackendTls.Sidecar.Failures;

/// <summary>
/// A backend could not be reached as the policy says: DNS, TCP, the TLS handshake or certificate
/// verification failed. Thrown where the failure is classified (and counted and logged, once), carried
/// to the forwarder, which answers the request with its reason.
/// </summary>
internal sealed class UpstreamFailureException(string reason, string detail, PresentedCertificate? certificate)
    : Exception($"{reason}: {detail}")
{
    public string Reason { get; } = reason;

    /// <summary>For people: what is wrong and how to fix it.</summary>
    public string Detail { get; } = detail;

    public PresentedCertificate? Certificate { get; } = certificate;
}
