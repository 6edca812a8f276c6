using System.Collections.Concurrent;
using BackendTls.Webhook.Injection;
using k8s;

namespace BackendTls.Webhook.Admission;

/// <summary>
/// Checks the namespace label in code too (the API server's namespaceSelector decided first), with a
/// short cache. If the API cannot be asked, the selector's decision stands: a lookup failure must not
/// block pod creation.
/// </summary>
internal sealed partial class KubernetesNamespaceSource(IKubernetes client, TimeProvider time, ILogger<KubernetesNamespaceSource> logger) : INamespaceInjectionSource
{
    private static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(30);
    private readonly ConcurrentDictionary<string, (NamespaceInfo State, DateTimeOffset Until)> _cache = new(StringComparer.Ordinal);

    public async ValueTask<NamespaceInfo> GetAsync(string ns, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (_cache.TryGetValue(ns, out var cached) && cached.Until > now)
        {
            return cached.State;
        }

        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            var namespaceObject = await client.CoreV1.ReadNamespaceAsync(ns, cancellationToken: timeout.Token);
            var labels = namespaceObject.Metadata.Labels;
            var state = new NamespaceInfo(ns,
                labels?.TryGetValue(InjectionLabels.Inject, out var value) == true && value == InjectionLabels.Enabled ? NamespaceInjection.Enabled : NamespaceInjection.NotEnabled,
                labels is not null && labels.TryGetValue(InjectionLabels.PodSecurityEnforce, out var level) ? level : null);
            _cache[ns] = (state, now + CacheFor);
            return state;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            LogLookupFailed(logger, ns, e.Message);
            return new NamespaceInfo(ns, NamespaceInjection.Unknown);
        }
    }

    [LoggerMessage(40, LogLevel.Warning, "Could not read namespace {Namespace} ({Problem}); trusting the webhook's namespaceSelector", EventName = "NamespaceLookupFailed")]
    private static partial void LogLookupFailed(ILogger logger, string @namespace, string problem);
}
