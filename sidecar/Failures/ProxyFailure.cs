namespace BackendTls.Sidecar.Failures;

/// <summary>
/// A request the sidecar answers itself instead of forwarding the backend's answer: the status, the reason
/// (the <c>x-backendtls-error</c> value and metric label) and a sentence that says what is wrong and how
/// to fix it. <see cref="ClientFault"/> separates the gateway's mistakes (4xx) from the backend's (5xx).
/// </summary>
internal sealed record ProxyFailure(int Status, string Reason, string Detail)
{
    public bool ClientFault => Status is >= 400 and < 500 and not 404;

    public static ProxyFailure From(UpstreamFailureException e) => new(502, e.Reason, e.Detail);
}

/// <summary>Carries a classified failure from where it happened to the one place that reports it.</summary>
internal sealed class ProxyFailureException(ProxyFailure failure, bool logged = false) : Exception(failure.Detail)
{
    public ProxyFailure Failure { get; } = failure;

    /// <summary>True when the classifier already logged it (connection and verification failures).</summary>
    public bool Logged { get; } = logged;
}
