using BackendTls.Webhook.Admin;
using BackendTls.Webhook.Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace BackendTls.Webhook.Tests.Certificates;

/// <summary>
/// The self-managed certificate logic against an in-memory stand-in of the Secret and webhook
/// configuration (with the API's optimistic-concurrency rules). The real API plumbing
/// (KubernetesCertificateStore) is covered against the API stand-in and by the k3s tests.
/// </summary>
public class SelfManagedCertificateTests
{
    private static readonly string[] Names = ["backendtls-webhook.backendtls-system.svc"];

    /// <summary>Stand-in for the API server: resourceVersion checks, AlreadyExists on create, caBundle per entry.</summary>
    private sealed class InMemoryCertificateStore(int webhookEntries = 2) : ICertificateStore
    {
        private readonly Lock _lock = new();
        private StoredBundle? _stored;
        private int _version;

        public string?[] CaBundles { get; } = new string?[webhookEntries];

        public int Writes { get; private set; }

        public Task<StoredBundle?> ReadAsync(CancellationToken cancellationToken)
        {
            lock (_lock)
            {
                return Task.FromResult(_stored);
            }
        }

        public Task<bool> TryCreateAsync(CertificateBundle bundle, CancellationToken cancellationToken)
        {
            lock (_lock)
            {
                if (_stored is not null)
                {
                    return Task.FromResult(false);
                }

                _stored = new StoredBundle(bundle, (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture));
                Writes++;
                return Task.FromResult(true);
            }
        }

        public Task<bool> TryReplaceAsync(CertificateBundle bundle, string resourceVersion, CancellationToken cancellationToken)
        {
            lock (_lock)
            {
                if (_stored?.ResourceVersion != resourceVersion)
                {
                    return Task.FromResult(false);
                }

                _stored = new StoredBundle(bundle, (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture));
                Writes++;
                return Task.FromResult(true);
            }
        }

        public Task<int> SyncCaBundleAsync(string caCertificatePem, CancellationToken cancellationToken)
        {
            var repaired = 0;
            for (var i = 0; i < CaBundles.Length; i++)
            {
                if (CaBundles[i] != caCertificatePem)
                {
                    CaBundles[i] = caCertificatePem;
                    repaired++;
                }
            }

            return Task.FromResult(repaired);
        }
    }

    private static SelfManagedCertificateSource Replica(ICertificateStore store, TimeProvider time) =>
        new(store, Names, new WebhookMetrics(), time, NullLogger<SelfManagedCertificateSource>.Instance);

    [Fact]
    public async Task TwoReplicas_AgreeOnOneCaAndCertificate_AndPublishTheCa()
    {
        var store = new InMemoryCertificateStore();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var a = Replica(store, time);
        var b = Replica(store, time);

        await Task.WhenAll(a.ReconcileAsync(default), b.ReconcileAsync(default));

        Assert.Null(a.Problem);
        Assert.Equal(a.Current!.Thumbprint, b.Current!.Thumbprint);
        Assert.Equal(1, store.Writes);
        var stored = (await store.ReadAsync(default))!.Bundle;
        Assert.All(store.CaBundles, ca => Assert.Equal(stored.CaCertificatePem, ca));
        Assert.Contains("backendtls-webhook.backendtls-system.svc", a.Current.GetNameInfo(System.Security.Cryptography.X509Certificates.X509NameType.DnsName, false), StringComparison.Ordinal);
    }

    [Fact]
    public async Task NearExpiry_RenewedOnce_SameCa()
    {
        var store = new InMemoryCertificateStore();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var a = Replica(store, time);
        var b = Replica(store, time);
        await a.ReconcileAsync(default);
        var first = a.Current!.Thumbprint;
        var ca = (await store.ReadAsync(default))!.Bundle.CaCertificatePem;

        time.Advance(ServingCertificates.ServingLifetime - ServingCertificates.RenewBefore + TimeSpan.FromHours(1));
        await Task.WhenAll(a.ReconcileAsync(default), b.ReconcileAsync(default));

        Assert.NotEqual(first, a.Current!.Thumbprint);
        Assert.Equal(a.Current.Thumbprint, b.Current!.Thumbprint);
        Assert.Equal(2, store.Writes); // one create, one renewal: the losing replica re-read instead of writing
        Assert.Equal(ca, (await store.ReadAsync(default))!.Bundle.CaCertificatePem);
    }

    [Fact]
    public async Task CaBundleDrift_Repaired()
    {
        var store = new InMemoryCertificateStore();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var replica = Replica(store, time);
        await replica.ReconcileAsync(default);

        store.CaBundles[1] = null; // someone re-applied the manifest with an empty caBundle
        await replica.ReconcileAsync(default);

        Assert.Equal(store.CaBundles[0], store.CaBundles[1]);
    }

    [Fact]
    public async Task StoreFailure_NotReady_WithTheReason()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var replica = Replica(new FailingStore(), time);

        await replica.ReconcileAsync(default);

        Assert.Null(replica.Current);
        Assert.Contains("forbidden: cannot get secrets", replica.Problem, StringComparison.Ordinal);
    }

    private sealed class FailingStore : ICertificateStore
    {
        public Task<StoredBundle?> ReadAsync(CancellationToken cancellationToken) => throw new InvalidOperationException("forbidden: cannot get secrets");

        public Task<bool> TryCreateAsync(CertificateBundle bundle, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<bool> TryReplaceAsync(CertificateBundle bundle, string resourceVersion, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<int> SyncCaBundleAsync(string caCertificatePem, CancellationToken cancellationToken) => throw new NotSupportedException();
    }
}
