using System.Runtime.CompilerServices;
using System.Text.Json;
using BackendTls.Webhook.Injection;
using k8s;

namespace BackendTls.Webhook.Controller;

/// <summary>The watches that make a reconcile pass prompt: policies, Services, and opted-in namespaces and pods.</summary>
internal static class ClusterWatches
{
    private const int WatchSeconds = 300;
    private static readonly string InjectSelector = $"{InjectionLabels.Inject}={InjectionLabels.Enabled}";

    public static IReadOnlyList<ChangeWatch> Create(IKubernetes client, string policyVersion, Action signal, ILogger logger) =>
    [
        new("backendtlspolicies",
            async ct => ResourceVersion(await client.CustomObjects.ListCustomObjectForAllNamespacesAsync<JsonElement>(ClusterReader.Group, policyVersion, "backendtlspolicies", limit: 1, cancellationToken: ct)),
            (rv, ct) => Types(client.CustomObjects.WatchListCustomObjectForAllNamespacesAsync(ClusterReader.Group, policyVersion, "backendtlspolicies",
                allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: WatchSeconds, cancellationToken: ct), ct),
            signal, logger),
        new("services",
            async ct => (await client.CoreV1.ListServiceForAllNamespacesAsync(limit: 1, cancellationToken: ct)).Metadata.ResourceVersion,
            (rv, ct) => Types(client.CoreV1.WatchListServiceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: WatchSeconds, cancellationToken: ct), ct),
            signal, logger),
        new("namespaces",
            async ct => (await client.CoreV1.ListNamespaceAsync(labelSelector: InjectSelector, limit: 1, cancellationToken: ct)).Metadata.ResourceVersion,
            (rv, ct) => Types(client.CoreV1.WatchListNamespaceAsync(labelSelector: InjectSelector, allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: WatchSeconds, cancellationToken: ct), ct),
            signal, logger),
        new("opted-in pods",
            async ct => (await client.CoreV1.ListPodForAllNamespacesAsync(labelSelector: InjectSelector, limit: 1, cancellationToken: ct)).Metadata.ResourceVersion,
            (rv, ct) => Types(client.CoreV1.WatchListPodForAllNamespacesAsync(labelSelector: InjectSelector, allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: WatchSeconds, cancellationToken: ct), ct),
            signal, logger),
    ];

    private static string? ResourceVersion(JsonElement list) =>
        list.TryGetProperty("metadata", out var metadata) && metadata.TryGetProperty("resourceVersion", out var rv) ? rv.GetString() : null;

    private static async IAsyncEnumerable<WatchEventType> Types<T>(IAsyncEnumerable<(WatchEventType, T)> events, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var (type, _) in events.WithCancellation(cancellationToken))
        {
            yield return type;
        }
    }
}
