using System.Net;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using BackendTls.Policy.Destinations;
using BackendTls.Policy.Rendering;
using BackendTls.Webhook.Admission;
using BackendTls.Webhook.Injection;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace BackendTls.Webhook.Cluster;

/// <summary>
/// What every webhook replica keeps of the cluster, from watches, for the requests it answers without an
/// API call: namespaces (injection label, Pod Security level) and the capture ports (the policy targets'
/// Service ports and the endpoint ports behind them) for admission; every Service's addresses for the
/// destination index it serves to sidecars (<see cref="DestinationFeed"/>).
/// </summary>
internal sealed partial class ClusterView : BackgroundService, ICapturePortSource, INamespaceInjectionSource
{
    private const int WatchSeconds = 300;
    private static readonly string[] PolicyVersions = ["v1", "v1alpha3"];
    private readonly IKubernetes _client;
    private readonly ILogger _logger;
    private readonly ObjectCache<V1Namespace, NamespaceInfo> _namespaces;
    private readonly ObjectCache<V1Service, KubeObject> _services;
    private readonly ObjectCache<V1EndpointSlice, SliceItem> _slices;
    private readonly Dictionary<string, HashSet<string>> _slicesOfService = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _portsDirty = new(0, 1);
    private ObjectCache<JsonElement, KubeObject>? _policies;
    private IReadOnlyCollection<int> _ports = [];

    /// <summary>An EndpointSlice as kept: which Service it serves, and its addresses and ports.</summary>
    private sealed record SliceItem(string ServiceKey, EndpointSet Set);

    public ClusterView(IKubernetes client, DestinationFeed feed, ILogger<ClusterView> logger)
    {
        _client = client;
        _logger = logger;
        Feed = feed;
        _namespaces = new ObjectCache<V1Namespace, NamespaceInfo>("namespaces",
            async ct => (await client.CoreV1.ListNamespaceAsync(cancellationToken: ct)) is var l ? (l.Items, l.Metadata.ResourceVersion) : default,
            (rv, ct) => client.CoreV1.WatchListNamespaceAsync(allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: WatchSeconds, cancellationToken: ct),
            n => n.Metadata.Name,
            n => new NamespaceInfo(n.Metadata.Name,
                n.Metadata.Labels?.TryGetValue(InjectionLabels.Inject, out var inject) == true && inject == InjectionLabels.Enabled ? NamespaceInjection.Enabled : NamespaceInjection.NotEnabled,
                n.Metadata.Labels?.TryGetValue(InjectionLabels.PodSecurityEnforce, out var level) == true ? level : null),
            logger);
        _services = new ObjectCache<V1Service, KubeObject>("services",
            async ct => (await client.CoreV1.ListServiceForAllNamespacesAsync(cancellationToken: ct)) is var l ? (l.Items, l.Metadata.ResourceVersion) : default,
            (rv, ct) => client.CoreV1.WatchListServiceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: WatchSeconds, cancellationToken: ct),
            s => $"{s.Metadata.NamespaceProperty}/{s.Metadata.Name}",
            s => ToKubeObject(new V1Service { Metadata = new V1ObjectMeta { Name = s.Metadata.Name, NamespaceProperty = s.Metadata.NamespaceProperty }, Spec = s.Spec }, "v1", "Service"),
            logger);
        _slices = new ObjectCache<V1EndpointSlice, SliceItem>("endpointslices",
            async ct => (await client.DiscoveryV1.ListEndpointSliceForAllNamespacesAsync(cancellationToken: ct)) is var l ? (l.Items, l.Metadata.ResourceVersion) : default,
            (rv, ct) => client.DiscoveryV1.WatchListEndpointSliceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: WatchSeconds, cancellationToken: ct),
            s => $"{s.Metadata.NamespaceProperty}/{s.Metadata.Name}",
            ProjectSlice,
            logger);
        _services.Changed += keys =>
        {
            OnServicesChanged(keys);
            MarkPortsDirty();
            MarkFeedReady();
        };
        _slices.Changed += keys =>
        {
            OnSlicesChanged(keys);
            MarkFeedReady();
        };
    }

    public DestinationFeed Feed { get; }

    public IReadOnlyCollection<int> Ports => Volatile.Read(ref _ports);

    /// <summary>Ready when every cache has listed once (admission before that uses what it has).</summary>
    public bool Synced => _namespaces.Synced && _services.Synced && _slices.Synced && _policies?.Synced == true;

    public ValueTask<NamespaceInfo> GetAsync(string ns, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_namespaces.Get(ns) ?? new NamespaceInfo(ns, NamespaceInjection.Unknown));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var version = await DiscoverPolicyVersionAsync(stoppingToken);
        _policies = new ObjectCache<JsonElement, KubeObject>("backendtlspolicies",
            async ct =>
            {
                var list = await _client.CustomObjects.ListCustomObjectForAllNamespacesAsync<JsonElement>(ClusterReaderGroup, version, "backendtlspolicies", cancellationToken: ct);
                var items = list.TryGetProperty("items", out var array) ? array.EnumerateArray().Select(e => e.Clone()).ToList() : [];
                return (items, list.TryGetProperty("metadata", out var m) && m.TryGetProperty("resourceVersion", out var rv) ? rv.GetString() : null);
            },
            (rv, ct) => PolicyEvents(version, rv, ct),
            p => $"{p.GetProperty("metadata").GetProperty("namespace").GetString()}/{p.GetProperty("metadata").GetProperty("name").GetString()}",
            ProjectPolicy,
            _logger);
        _policies.Changed += _ => MarkPortsDirty();
        await Task.WhenAll(_namespaces.RunAsync(stoppingToken), _services.RunAsync(stoppingToken), _slices.RunAsync(stoppingToken),
            _policies.RunAsync(stoppingToken), RecomputePortsAsync(stoppingToken));
    }

    private const string ClusterReaderGroup = "gateway.networking.k8s.io";

    private async Task<string> DiscoverPolicyVersionAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            foreach (var version in PolicyVersions)
            {
                try
                {
                    await _client.CustomObjects.ListCustomObjectForAllNamespacesAsync<JsonElement>(ClusterReaderGroup, version, "backendtlspolicies", limit: 1, cancellationToken: cancellationToken);
                    return version;
                }
                catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
                {
                    // not served; try the next
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogDiscoveryFailed(_logger, e.Message);
                }
            }

            await Task.Delay(TimeSpan.FromSeconds(10), cancellationToken);
        }
    }

    private async IAsyncEnumerable<(WatchEventType, JsonElement)> PolicyEvents(string version, string? resourceVersion, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var (type, item) in _client.CustomObjects.WatchListCustomObjectForAllNamespacesAsync(ClusterReaderGroup, version, "backendtlspolicies",
                           allowWatchBookmarks: true, resourceVersion: resourceVersion, timeoutSeconds: WatchSeconds, cancellationToken: cancellationToken))
        {
            yield return (type, item is JsonElement element ? element : JsonSerializer.SerializeToElement(item));
        }
    }

    private static KubeObject? ProjectPolicy(JsonElement policy)
    {
        try
        {
            return KubeObject.FromDocuments([JsonNode.Parse(policy.GetRawText())!], "the API").FirstOrDefault();
        }
        catch (RenderInputException)
        {
            return null; // not an object render can read (the API server validates policies; this is a guard)
        }
    }

    private static SliceItem? ProjectSlice(V1EndpointSlice slice)
    {
        if (slice.Metadata.Labels?.TryGetValue("kubernetes.io/service-name", out var service) != true || service is null)
        {
            return null;
        }

        var set = DestinationIndex.FromSlice(ToKubeObject(slice, "discovery.k8s.io/v1", "EndpointSlice"));
        return new SliceItem($"{slice.Metadata.NamespaceProperty}/{service}", set ?? new EndpointSet());
    }

    private void OnServicesChanged(IReadOnlyCollection<string> keys)
    {
        foreach (var key in keys)
        {
            Rebuild(key);
        }
    }

    private void OnSlicesChanged(IReadOnlyCollection<string> sliceKeys)
    {
        var services = new HashSet<string>(StringComparer.Ordinal);
        lock (_lock)
        {
            foreach (var sliceKey in sliceKeys)
            {
                // A slice's Service, now and before (a deleted slice is no longer in the cache).
                foreach (var (service, slices) in _slicesOfService.Where(p => p.Value.Remove(sliceKey)))
                {
                    services.Add(service);
                }

                if (_slices.Get(sliceKey) is { } item)
                {
                    if (!_slicesOfService.TryGetValue(item.ServiceKey, out var set))
                    {
                        _slicesOfService[item.ServiceKey] = set = new HashSet<string>(StringComparer.Ordinal);
                    }

                    set.Add(sliceKey);
                    services.Add(item.ServiceKey);
                }
            }
        }

        foreach (var service in services)
        {
            Rebuild(service);
        }

        MarkPortsDirty();
    }

    /// <summary>One Service's index entry from its Service object and its slices.</summary>
    private void Rebuild(string serviceKey)
    {
        if (_services.Get(serviceKey) is not { } service || DestinationIndex.FromService(service) is not { } entry)
        {
            Feed.Set(serviceKey, null);
            return;
        }

        string[] sliceKeys;
        lock (_lock)
        {
            sliceKeys = _slicesOfService.TryGetValue(serviceKey, out var set) ? [.. set] : [];
        }

        var sets = sliceKeys.Select(_slices.Get).OfType<SliceItem>().Select(s => s.Set).Where(s => s.Addresses.Count > 0).ToList();
        Feed.Set(serviceKey, entry with { Endpoints = sets });
    }

    /// <summary>Once both Services and EndpointSlices have been listed (and their entries built), the index may be served.</summary>
    private void MarkFeedReady()
    {
        if (_services.Synced && _slices.Synced)
        {
            Feed.MarkReady();
        }
    }

    private void MarkPortsDirty()
    {
        try
        {
            _portsDirty.Release();
        }
        catch (SemaphoreFullException)
        {
            // already pending
        }
    }

    /// <summary>The capture ports, recomputed at most five times a second while things change.</summary>
    private async Task RecomputePortsAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            await _portsDirty.WaitAsync(cancellationToken);
            await Task.Delay(200, cancellationToken);
            var services = _services.Snapshot().Values.ToList();
            var rendered = PolicyRenderer.Render([.. _policies?.Snapshot().Values ?? [], .. services], DestinationScope.None);
            var index = new DestinationIndex { Services = Feed.Since(null, 0).Services };
            var ports = index.CapturePorts(rendered.Config.Targets!);
            if (!ports.SequenceEqual(Volatile.Read(ref _ports)))
            {
                Volatile.Write(ref _ports, ports);
                LogPorts(_logger, string.Join(",", ports));
            }
        }
    }

    private static KubeObject ToKubeObject<T>(T item, string apiVersion, string kind)
    {
        var node = JsonNode.Parse(KubernetesJson.Serialize(item))!.AsObject();
        node["apiVersion"] = apiVersion;
        node["kind"] = kind;
        return KubeObject.FromDocuments([node], $"{kind} from the API").Single();
    }

    public override void Dispose()
    {
        _portsDirty.Dispose();
        base.Dispose();
    }

    [LoggerMessage(82, LogLevel.Information, "Transparent capture ports (policy targets' Service and endpoint ports): {Ports}", EventName = "CapturePorts")]
    private static partial void LogPorts(ILogger logger, string ports);

    [LoggerMessage(83, LogLevel.Warning, "Cannot tell which BackendTLSPolicy version the cluster serves: {Problem}; retrying", EventName = "PolicyVersionUnknown")]
    private static partial void LogDiscoveryFailed(ILogger logger, string problem);
}
