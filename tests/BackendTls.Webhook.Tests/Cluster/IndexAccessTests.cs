using System.Text.Json.Nodes;
using BackendTls.Webhook.Admission;
using BackendTls.Webhook.Index;
using BackendTls.Webhook.Injection;
using BackendTls.Webhook.Tests.Support;
using k8s;
using Microsoft.Extensions.Time.Testing;

namespace BackendTls.Webhook.Tests.Cluster;

/// <summary>Who gets the destination index: injected sidecars only, decided by TokenReview and the injection state, cached.</summary>
public sealed class IndexAccessTests
{
    private sealed class Namespaces : INamespaceInjectionSource
    {
        public ValueTask<NamespaceInfo> GetAsync(string ns, CancellationToken cancellationToken) =>
            ValueTask.FromResult(new NamespaceInfo(ns, ns == "gw" ? NamespaceInjection.Enabled : NamespaceInjection.NotEnabled));
    }

    [Fact]
    public async Task InjectedNamespaceOrInjectedPod_Allowed_OthersRefusedSayingWhy_DecisionsCached()
    {
        await using var api = new ApiStandIn();
        await api.StartAsync();
        api.Seed("pods", "apps", JsonNode.Parse("""{"apiVersion":"v1","kind":"Pod","metadata":{"name":"edge-1","namespace":"apps","annotations":{"backendtls.io/status":"{}"}}}""")!.AsObject());
        api.Seed("pods", "apps", JsonNode.Parse("""{"apiVersion":"v1","kind":"Pod","metadata":{"name":"batch-1","namespace":"apps"}}""")!.AsObject());
        api.Tokens["gw"] = new StandInToken("system:serviceaccount:gw:gateway", SidecarTemplate.IndexTokenAudience);
        api.Tokens["opted-in-pod"] = new StandInToken("system:serviceaccount:apps:edge", SidecarTemplate.IndexTokenAudience, "edge-1");
        api.Tokens["other-pod"] = new StandInToken("system:serviceaccount:apps:batch", SidecarTemplate.IndexTokenAudience, "batch-1");
        api.Tokens["unbound"] = new StandInToken("system:serviceaccount:apps:batch", SidecarTemplate.IndexTokenAudience);
        api.Tokens["api-audience"] = new StandInToken("system:serviceaccount:gw:gateway", "https://kubernetes.default.svc");
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = api.Url });
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var access = new KubernetesIndexAccess(client, new Namespaces(), time);

        Assert.Equal(IndexAccessDecision.Allowed, await access.DecideAsync("gw", default));
        Assert.Equal(IndexAccessDecision.Allowed, await access.DecideAsync("opted-in-pod", default));
        var otherPod = await access.DecideAsync("other-pod", default);
        Assert.Equal((403, "pod apps/batch-1 has no injected sidecar; the index serves injected sidecars only"), (otherPod.Status, otherPod.Problem));
        var unbound = await access.DecideAsync("unbound", default);
        Assert.Equal(403, unbound.Status);
        Assert.Contains("not in a namespace labelled backendtls.io/inject=enabled", unbound.Problem, StringComparison.Ordinal);
        // A token for another audience (the API server's own) is not a key to the index.
        Assert.Equal(401, (await access.DecideAsync("api-audience", default)).Status);
        Assert.Equal(401, (await access.DecideAsync("forged", default)).Status);
        Assert.Equal(6, api.TokenReviews);

        // Cached: allowed for minutes, refused for seconds (a pod just injected is not kept out long).
        time.Advance(TimeSpan.FromSeconds(30));
        await access.DecideAsync("gw", default);
        await access.DecideAsync("forged", default);
        Assert.Equal(7, api.TokenReviews);
    }
}
