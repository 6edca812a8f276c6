using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using BackendTls.Policy.Loading;
using BackendTls.Policy.Model;
using BackendTls.Sidecar.Failures;

namespace BackendTls.Sidecar.Tls;

/// <summary>
/// Verifies a backend's certificate the way a BackendTLSPolicy says: the chain ends at the policy's CA
/// (or the system store for <c>wellKnownCACertificates: System</c>), the leaf is valid now and for
/// serverAuth, and its subjectAltName matches <c>validation.hostname</c>, or one of
/// <c>validation.subjectAltNames</c> when those are set (then the hostname is only the SNI).
/// There is no Common Name fallback and no way to skip a check.
/// </summary>
internal sealed class BackendCertificateVerifier
{
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1", "Server Authentication");
    private readonly LoadedTarget _target;
    private readonly string _trustDescription;
    private readonly Action<UpstreamFailureException> _onFailure;

    /// <param name="target">The target whose policy to enforce.</param>
    /// <param name="onFailure">Called with every rejection before the handshake is aborted (metrics, logs).</param>
    public BackendCertificateVerifier(LoadedTarget target, Action<UpstreamFailureException> onFailure)
    {
        _target = target;
        _onFailure = onFailure;
        _trustDescription = target.Trust == TrustMode.System
            ? "the system CA store (wellKnownCACertificates: System)"
            : "the policy's CA bundle (" + string.Join("; ", target.CaBundles.Select(b =>
                $"{b.Source ?? b.File}: {string.Join(", ", b.Certificates.Select(c => c.Subject))}")) + ")";
    }

    /// <summary>TLS client options for this target; the validation callback throws <see cref="UpstreamFailureException"/>.</summary>
    public SslClientAuthenticationOptions CreateSslOptions()
    {
        var chainPolicy = new X509ChainPolicy
        {
            RevocationMode = X509RevocationMode.NoCheck,
            VerificationFlags = X509VerificationFlags.NoFlag,
            // The chain is built from what the backend sends and the policy's anchors only: no fetching of
            // intermediates from a certificate's AIA URL (egress the policy never named, and a blocking
            // network call on the socket thread that runs this callback).
            DisableCertificateDownloads = true,
        };
        chainPolicy.ApplicationPolicy.Add(ServerAuth);
        if (_target.Trust == TrustMode.PolicyCertificates)
        {
            chainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chainPolicy.CustomTrustStore.AddRange(_target.TrustAnchors);
        }

        return new SslClientAuthenticationOptions
        {
            TargetHost = _target.Hostname, // the SNI
            EnabledSslProtocols = _target.Tls.Protocols,
            CipherSuitesPolicy = _target.Tls.CipherSuites is { } suites && !OperatingSystem.IsWindows() ? new CipherSuitesPolicy(suites) : null, // OpenSSL only
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            CertificateChainPolicy = chainPolicy,
            RemoteCertificateValidationCallback = Validate,
        };
    }

    private bool Validate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        try
        {
            if (certificate is not X509Certificate2 leaf || chain is null)
            {
                throw new UpstreamFailureException(FailureReason.NoCertificate, "the backend sent no certificate", null);
            }

            // Verify throws with the reason on any failure; the handshake is aborted with it.
            return Verify(leaf, chain, errors) is not null;
        }
        catch (UpstreamFailureException e)
        {
            _onFailure(e);
            throw;
        }
    }

    /// <summary>Throws <see cref="UpstreamFailureException"/> unless the certificate passes every check.</summary>
    public PresentedCertificate Verify(X509Certificate2 leaf, X509Chain chain, SslPolicyErrors errors)
    {
        var names = CertificateNames.Read(leaf);
        var presented = PresentedCertificate.From(leaf, names.Display);
        if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
        {
            var (reason, detail) = ExplainChain(leaf, chain);
            throw new UpstreamFailureException(reason, detail, presented);
        }

        // SslPolicyErrors.RemoteCertificateNameMismatch is deliberately ignored: the platform check may
        // fall back to the CN; ours below does not.
        CheckNames(leaf, names, presented);
        return presented;
    }

    private (string Reason, string Detail) ExplainChain(X509Certificate2 leaf, X509Chain chain)
    {
        var flags = chain.ChainStatus.Aggregate(X509ChainStatusFlags.NoError, (f, s) => f | s.Status);
        var subject = $"certificate \"{leaf.Subject}\" (issuer \"{leaf.Issuer}\")";
        if ((flags & (X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.PartialChain)) != 0)
        {
            return (FailureReason.UntrustedRoot,
                $"{subject} does not chain to {_trustDescription}; put the CA that issued the backend certificate in the policy's ca.crt " +
                "(and make the backend send its intermediates)");
        }

        if ((flags & X509ChainStatusFlags.NotSignatureValid) != 0)
        {
            return (FailureReason.BadSignature, $"{subject}: a signature in the chain is invalid");
        }

        if ((flags & X509ChainStatusFlags.NotTimeValid) != 0)
        {
            var now = DateTime.Now;
            foreach (var element in chain.ChainElements)
            {
                var c = element.Certificate;
                if (c.NotAfter < now)
                {
                    return (FailureReason.Expired,
                        $"certificate \"{c.Subject}\" expired at {c.NotAfter.ToUniversalTime():u}; renew it");
                }

                if (c.NotBefore > now)
                {
                    return (FailureReason.NotYetValid,
                        $"certificate \"{c.Subject}\" is not valid before {c.NotBefore.ToUniversalTime():u}; check the clocks or reissue it");
                }
            }
        }

        if ((flags & (X509ChainStatusFlags.NotValidForUsage | X509ChainStatusFlags.InvalidExtension)) != 0)
        {
            var eku = leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault();
            var usages = eku is null ? "none" : string.Join(", ", eku.EnhancedKeyUsages.Cast<Oid>().Select(o => o.FriendlyName ?? o.Value));
            return (FailureReason.BadEku,
                $"{subject} is not valid for TLS server authentication (extendedKeyUsage: {usages}); reissue it with extendedKeyUsage=serverAuth");
        }

        var statuses = string.Join("; ", chain.ChainStatus.Select(s => $"{s.Status}: {s.StatusInformation.Trim()}"));
        return (FailureReason.ChainInvalid, $"{subject}: chain validation failed: {statuses}");
    }

    private void CheckNames(X509Certificate2 leaf, CertificateNames names, PresentedCertificate presented)
    {
        var sans = _target.SubjectAltNames;
        if (!names.HasSanExtension)
        {
            var version = leaf.Version < 3 ? $" (an X.509 v{leaf.Version} certificate cannot carry extensions)" : string.Empty;
            var wanted = sans.Count > 0 ? string.Join(",", sans.Select(s => s.ToString())) : "DNS:" + _target.Hostname;
            throw new UpstreamFailureException(FailureReason.NoSan,
                $"certificate \"{leaf.Subject}\" has no subjectAltName extension{version}; the Common Name is never used to verify a " +
                $"backend (RFC 6125/9525). Reissue it with subjectAltName={wanted}, e.g. openssl x509 -req ... " +
                $"-extfile <(printf 'subjectAltName={wanted}')",
                presented);
        }

        if (sans.Count == 0)
        {
            if (!names.DnsNames.Any(dns => HostnameMatcher.Matches(dns, _target.Hostname)))
            {
                throw new UpstreamFailureException(FailureReason.HostnameMismatch,
                    $"certificate \"{leaf.Subject}\" names [{presented.SanText}] do not match validation.hostname \"{_target.Hostname}\"; " +
                    $"reissue it with subjectAltName=DNS:{_target.Hostname}, or correct the policy's hostname",
                    presented);
            }

            return;
        }

        foreach (var san in sans)
        {
            var matched = san.Type == SubjectAltName.UriType
                ? names.Uris.Any(u => string.Equals(u, san.Uri, StringComparison.Ordinal))
                : names.DnsNames.Any(dns => HostnameMatcher.MatchesPolicyName(dns, san.Hostname!));
            if (matched)
            {
                return;
            }
        }

        throw new UpstreamFailureException(FailureReason.SanMismatch,
            $"certificate \"{leaf.Subject}\" names [{presented.SanText}] match none of validation.subjectAltNames " +
            $"[{string.Join(", ", sans)}] (validation.hostname is only the SNI when subjectAltNames are set)",
            presented);
    }
}
