using System.Text.Json.Nodes;
using BackendTls.Policy.Destinations;
using BackendTls.Tests.Shared;
using BackendTls.Webhook.Cluster;
using BackendTls.Webhook.Injection;
using BackendTls.Webhook.Tests.Support;
using k8s;
using Microsoft.Extensions.Logging.Abstractions;

namespace BackendTls.Webhook.Tests.Cluster;

/// <summary>
/// The webhook's watch caches against the API stand-in (list, then watch events): namespaces for admission,
/// capture ports, and the destination index with per-Service revisions, deltas and tombstones.
/// </summary>
public sealed class ClusterViewTests
{
    private static JsonObject Obj(string json) => JsonNode.Parse(json)!.AsObject();

    private static JsonObject Slice(string name, string service, params string[] addresses)
    {
        var slice = Obj($$$"""
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"{{{name}}}","namespace":"be1","labels":{"kubernetes.io/service-name":"{{{service}}}"}},
             "addressType":"IPv4","ports":[{"name":"https","port":8443}]}
            """);
        slice["endpoints"] = new JsonArray(addresses.Select(a => (JsonNode)new JsonObject { ["addresses"] = new JsonArray(a) }).ToArray());
        return slice;
    }

    private static async Task<ApiStandIn> SeededAsync()
    {
        var api = new ApiStandIn();
        await api.StartAsync();
        api.Seed("namespaces", null, Obj("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"gw","labels":{"backendtls.io/inject":"enabled"}}}"""));
        api.Seed("namespaces", null, Obj("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"locked","labels":{"backendtls.io/inject":"enabled","pod-security.kubernetes.io/enforce":"restricted"}}}"""));
        api.Seed("services", "be1", Obj("""{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"be1"},"spec":{"clusterIP":"198.19.0.10","clusterIPs":["198.19.0.10"],"ports":[{"name":"https","port":443,"targetPort":"https"}]}}"""));
        api.Seed("services", "be1", Obj("""{"apiVersion":"v1","kind":"Service","metadata":{"name":"plain","namespace":"be1"},"spec":{"clusterIP":"198.19.0.11","ports":[{"name":"http","port":80}]}}"""));
        api.Seed("endpointslices", "be1", Slice("web-a", "web", "198.18.1.2"));
        api.Seed("backendtlspolicies", "be1", Obj("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"BackendTLSPolicy","metadata":{"name":"web","namespace":"be1"},
             "spec":{"targetRefs":[{"group":"","kind":"Service","name":"web"}],"validation":{"wellKnownCACertificates":"System","hostname":"web.example.com"}}}
            """));
        return api;
    }

    private static ServiceDestinations? Entry(DestinationUpdate update, string name) => update.Services.SingleOrDefault(s => s.Name == name);

    [Fact]
    public async Task ListThenWatch_IndexNamespacesAndCapturePorts_ThenDeltasAndTombstones()
    {
        await using var api = await SeededAsync();
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = api.Url });
        var feed = new DestinationFeed();
        using var view = new ClusterView(client, feed, NullLogger<ClusterView>.Instance);
        await view.StartAsync(CancellationToken.None);
        try
        {
            // Listed: every Service (policy or not) with its slices; the policy target's Service and endpoint ports.
            await Eventually.HoldsAsync(() => Task.FromResult((view.Synced && feed.Ready && view.Ports.Count == 2, $"synced={view.Synced} ready={feed.Ready} ports={string.Join(",", view.Ports)}")),
                "the caches listed and the capture ports computed");
            Assert.Equal([443, 8443], view.Ports);
            var full = feed.Since(null, 0);
            Assert.True(full.Full);
            Assert.Equal(["198.18.1.2"], Entry(full, "web")!.Endpoints.Single().Addresses);
            Assert.Equal(["198.19.0.11"], Entry(full, "plain")!.ClusterIPs);
            Assert.Equal(NamespaceInjection.Enabled, (await view.GetAsync("gw", CancellationToken.None)).Injection);
            Assert.Equal("restricted", (await view.GetAsync("locked", CancellationToken.None)).PodSecurityEnforce);
            Assert.Equal(NamespaceInjection.Unknown, (await view.GetAsync("nowhere", CancellationToken.None)).Injection);

            // A watch event: an endpoint added. The delta since the last revision names only that Service.
            var known = full.Revision;
            var woke = feed.WaitBeyondAsync(full.Epoch, known, TimeSpan.FromSeconds(10), CancellationToken.None);
            api.Seed("endpointslices", "be1", Slice("web-a", "web", "198.18.1.2", "198.18.1.5"));
            Assert.True(await woke);
            var delta = await Eventually.HoldsAsync(() =>
            {
                var update = feed.Since(full.Epoch, known);
                return Task.FromResult((Entry(update, "web")?.Endpoints.Single().Addresses.Count == 2, System.Text.Json.JsonSerializer.Serialize(update, DestinationUpdateJsonContext.Default.DestinationUpdate)));
            }, "the new endpoint in a delta");
            Assert.DoesNotContain("\"full\":true", delta, StringComparison.Ordinal);
            Assert.DoesNotContain("plain", delta, StringComparison.Ordinal);

            // The same object again (a resync, a status-only change): no new revision.
            var steady = feed.Revision;
            api.Seed("services", "be1", Obj("""{"apiVersion":"v1","kind":"Service","metadata":{"name":"plain","namespace":"be1","labels":{"touched":"yes"}},"spec":{"clusterIP":"198.19.0.11","ports":[{"name":"http","port":80}]}}"""));
            Assert.False(await feed.WaitBeyondAsync(full.Epoch, steady, TimeSpan.FromMilliseconds(300), CancellationToken.None));

            // Deleted: a tombstone in the next delta; its slice going away changes the policy target's ports.
            api.Remove("services", "be1", "plain");
            await Eventually.HoldsAsync(() => Task.FromResult((feed.Since(full.Epoch, steady).Removed.Contains("be1/plain"), string.Join(",", feed.Since(full.Epoch, steady).Removed))),
                "a tombstone for the deleted Service");
            api.Remove("endpointslices", "be1", "web-a");
            await Eventually.HoldsAsync(() => Task.FromResult((view.Ports.SequenceEqual([443]), string.Join(",", view.Ports))), "the endpoint port gone from the capture ports");
        }
        finally
        {
            await view.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public void Feed_AnotherEpochTooOldOrFutureRevision_GetsEverything_PrunedTombstonesMoveTheHorizon()
    {
        var feed = new DestinationFeed(maxTombstones: 4);
        for (var i = 0; i < 6; i++)
        {
            feed.Set($"ns/s{i}", new ServiceDestinations { Namespace = "ns", Name = $"s{i}", ClusterIPs = [$"198.19.0.{i + 1}"] });
        }

        var epoch = feed.Epoch;
        Assert.False(feed.Since(epoch, 3).Full);
        Assert.Equal(3, feed.Since(epoch, 3).Services.Count);
        Assert.True(feed.Since("another-replica", 3).Full);
        Assert.True(feed.Since(epoch, 99).Full);
        Assert.True(feed.Since(epoch, 0).Full);

        for (var i = 0; i < 6; i++)
        {
            feed.Set($"ns/s{i}", null);
        }

        // Six tombstones, at most four kept: the oldest half went, and a sidecar that knew a revision from then starts over.
        Assert.True(feed.Since(epoch, 6).Full);
        var recent = feed.Since(epoch, feed.Revision - 1);
        Assert.False(recent.Full);
        Assert.Equal(["ns/s5"], recent.Removed);
        Assert.Equal(0, feed.Services);
    }
}
