using System.Text.Json.Nodes;
using BackendTls.Tests.Shared;
using BackendTls.Webhook.Certificates;
using BackendTls.Webhook.Controller;
using BackendTls.Webhook.Tests.Support;
using k8s;
using Microsoft.Extensions.Logging.Abstractions;

namespace BackendTls.Webhook.Tests.Controller;

/// <summary>
/// The controller's API plumbing (reads, writes only on change, owner references, status subresource,
/// Events, the Lease) against <see cref="ApiStandIn"/>. The k3s tests run the same against a real API server.
/// </summary>
public sealed class ControllerPlumbingStandInTests
{
    private static JsonObject Obj(string json) => JsonNode.Parse(json)!.AsObject();

    private static async Task<ApiStandIn> SeededAsync()
    {
        var api = new ApiStandIn();
        await api.StartAsync();
        var ca = ServingCertificates.CreateCaAndServing(["ca.test"], DateTimeOffset.UtcNow).CaCertificatePem;
        api.Seed("namespaces", null, Obj("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"gateway","labels":{"backendtls.io/inject":"enabled"}}}"""));
        api.Seed("namespaces", null, Obj("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"httpbin"}}"""));
        api.Seed("services", "httpbin", Obj("""{"apiVersion":"v1","kind":"Service","metadata":{"name":"httpbin","namespace":"httpbin"},"spec":{"ports":[{"name":"http","port":8000}]}}"""));
        var secret = Obj("""{"apiVersion":"v1","kind":"Secret","metadata":{"name":"httpbin-root-ca","namespace":"httpbin"},"data":{}}""");
        secret["data"]!["ca.crt"] = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(ca));
        secret["data"]!["tls.key"] = Convert.ToBase64String("PRIVATE"u8.ToArray());
        api.Seed("secrets", "httpbin", secret);
        api.Seed("backendtlspolicies", "httpbin", Obj("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"BackendTLSPolicy","metadata":{"name":"httpbin-backend-tls","namespace":"httpbin","generation":3},
             "spec":{"targetRefs":[{"group":"","kind":"Service","name":"httpbin"}],
                     "validation":{"caCertificateRefs":[{"group":"","kind":"Secret","name":"httpbin-root-ca"}],"hostname":"www.example.com"}}}
            """));
        api.Seed("mutatingwebhookconfigurations", null, Obj("""{"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration","metadata":{"name":"backendtls-sidecar-injector"},"webhooks":[]}"""));
        return api;
    }

    private static ControllerOptions Options(string identity = "replica-1", TimeSpan? resync = null) =>
        new("backendtls-policy", "backendtls-system", "backendtls-controller", identity, resync ?? TimeSpan.FromMinutes(10), "backendtls-sidecar-injector");

    [Fact]
    public async Task Pass_WritesConfigMapStatusAndEvent_ThenNothingWhenNothingChanged()
    {
        await using var api = await SeededAsync();
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = api.Url });
        using var controller = new PolicyController(client, Options(), NullLoggerFactory.Instance, NullLogger<PolicyController>.Instance);

        await controller.ReconcileOnceAsync(CancellationToken.None);

        var configMap = api.Get("configmaps", "gateway", "backendtls-policy")!;
        Assert.Contains("www.example.com", (string?)configMap["data"]!["backendtls.yaml"], StringComparison.Ordinal);
        Assert.DoesNotContain("PRIVATE", configMap.ToJsonString(), StringComparison.Ordinal);
        Assert.Equal("MutatingWebhookConfiguration", (string?)configMap["metadata"]!["ownerReferences"]![0]!["kind"]);
        Assert.Equal("backendtls-controller", (string?)configMap["metadata"]!["labels"]!["app.kubernetes.io/managed-by"]);
        var ancestor = api.Get("backendtlspolicies", "httpbin", "httpbin-backend-tls")!["status"]!["ancestors"]![0]!;
        Assert.Equal(PolicyReconciler.ControllerName, (string?)ancestor["controllerName"]);
        Assert.Equal(3, (long)ancestor["conditions"]![0]!["observedGeneration"]!);
        Assert.Equal("True", (string?)ancestor["conditions"]![0]!["status"]);
        Assert.Contains(api.All("events"), e => (string?)e["reason"] == "Rendered" && (string?)e["regarding"]!["name"] == "httpbin-backend-tls");
        Assert.Equal(["POST configmaps", "PUT backendtlspolicies/status", "POST events"], api.Writes);

        api.Writes.Clear();
        await controller.ReconcileOnceAsync(CancellationToken.None);

        Assert.Empty(api.Writes);
    }

    [Fact]
    public async Task TransparentPodsMissingAPolicyPort_EventOnEachPodOnce_ConditionOnThePolicy_IndexCaInTheConfigMap()
    {
        await using var api = await SeededAsync();
        var ca = ServingCertificates.CreateCaAndServing(["backendtls-webhook.backendtls-system.svc"], DateTimeOffset.UtcNow).CaCertificatePem;
        var configuration = api.Get("mutatingwebhookconfigurations", null, "backendtls-sidecar-injector")!;
        configuration["webhooks"] = new JsonArray(new JsonObject
        {
            ["name"] = "inject.backendtls.io",
            ["clientConfig"] = new JsonObject { ["caBundle"] = Convert.ToBase64String(System.Text.Encoding.ASCII.GetBytes(ca)) },
        });
        api.Seed("mutatingwebhookconfigurations", null, configuration);
        // httpbin's Service port 8000 goes to 8080 on the pods; the gateway pod started when only 8000 was known.
        api.Seed("endpointslices", "httpbin", Obj("""
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"httpbin-1","namespace":"httpbin","labels":{"kubernetes.io/service-name":"httpbin"}},
             "addressType":"IPv4","ports":[{"name":"http","port":8080}],"endpoints":[{"addresses":["198.18.3.2"]}]}
            """));
        api.Seed("pods", "gateway", Obj("""
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"edge-5f7c9-x2x","namespace":"gateway","labels":{"pod-template-hash":"5f7c9"},
             "annotations":{"backendtls.io/capture-config":"{\"mode\":\"transparent\",\"ports\":[8000],\"proxyUid\":15101}"},
             "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"edge-5f7c9","uid":"u1","controller":true}]},
             "status":{"phase":"Running"}}
            """));
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = api.Url });
        using var controller = new PolicyController(client, Options(), NullLoggerFactory.Instance, NullLogger<PolicyController>.Instance);

        await controller.ReconcileOnceAsync(CancellationToken.None);
        await controller.ReconcileOnceAsync(CancellationToken.None);

        Assert.Equal(ca, (string?)api.Get("configmaps", "gateway", "backendtls-policy")!["data"]![PolicyReconciler.IndexCaFile]);
        var podEvent = Assert.Single(api.All("events"), e => (string?)e["regarding"]!["kind"] == "Pod");
        Assert.Equal(("edge-5f7c9-x2x", "UncapturedPort"), ((string?)podEvent["regarding"]!["name"], (string?)podEvent["reason"]));
        Assert.Contains("kubectl -n gateway rollout restart deployment/edge", (string?)podEvent["note"], StringComparison.Ordinal);
        var condition = api.Get("backendtlspolicies", "httpbin", "httpbin-backend-tls")!["status"]!["ancestors"]![0]!["conditions"]!.AsArray()
            .Single(c => (string?)c!["type"] == CaptureCoverage.ConditionType)!;
        Assert.Equal("False", (string?)condition["status"]);
        Assert.Contains("port 8080 of Service httpbin/httpbin", (string?)condition["message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task NamespaceNoLongerInjected_ItsConfigMapIsDeleted()
    {
        await using var api = await SeededAsync();
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = api.Url });
        using var controller = new PolicyController(client, Options(), NullLoggerFactory.Instance, NullLogger<PolicyController>.Instance);
        await controller.ReconcileOnceAsync(CancellationToken.None);

        api.Seed("namespaces", null, Obj("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"gateway"}}"""));
        await controller.ReconcileOnceAsync(CancellationToken.None);

        Assert.Null(api.Get("configmaps", "gateway", "backendtls-policy"));
    }

    [Fact]
    public async Task SelfManagedCertificates_KubernetesStore_SharedSecret_CaBundleRepaired()
    {
        await using var api = new ApiStandIn();
        await api.StartAsync();
        api.Seed("mutatingwebhookconfigurations", null, Obj("""
            {"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration","metadata":{"name":"injector"},
             "webhooks":[{"name":"a.backendtls.io","admissionReviewVersions":["v1"],"sideEffects":"None","clientConfig":{"service":{"name":"w","namespace":"s"}}},
                         {"name":"b.backendtls.io","admissionReviewVersions":["v1"],"sideEffects":"None","clientConfig":{"service":{"name":"w","namespace":"s"}}}]}
            """));
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = api.Url });
        var store = new KubernetesCertificateStore(client, "backendtls-system", "backendtls-webhook-tls", "injector");
        SelfManagedCertificateSource Replica() => new(store, ["w.s.svc"], new BackendTls.Webhook.Admin.WebhookMetrics(), TimeProvider.System,
            NullLogger<SelfManagedCertificateSource>.Instance);
        var a = Replica();
        var b = Replica();

        await Task.WhenAll(a.ReconcileAsync(default), b.ReconcileAsync(default));

        Assert.Null(a.Problem);
        Assert.Null(b.Problem);
        Assert.Equal(a.Current!.Thumbprint, b.Current!.Thumbprint);
        Assert.Single(api.All("secrets")); // both tried to create it; the loser got 409 and used the winner's
        var ca = (await store.ReadAsync(default))!.Bundle.CaCertificatePem;
        var published = api.Get("mutatingwebhookconfigurations", null, "injector")!["webhooks"]!.AsArray()
            .Select(w => System.Text.Encoding.UTF8.GetString(Convert.FromBase64String((string)w!["clientConfig"]!["caBundle"]!)));
        Assert.All(published, p => Assert.Equal(ca, p));

        // Drift: someone re-applies the configuration without caBundle; the next pass repairs it.
        api.Seed("mutatingwebhookconfigurations", null, Obj("""
            {"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration","metadata":{"name":"injector"},
             "webhooks":[{"name":"a.backendtls.io","admissionReviewVersions":["v1"],"sideEffects":"None","clientConfig":{"service":{"name":"w","namespace":"s"}}}]}
            """));
        await a.ReconcileAsync(default);
        Assert.NotNull(api.Get("mutatingwebhookconfigurations", null, "injector")!["webhooks"]![0]!["clientConfig"]!["caBundle"]);
    }

    [Fact]
    public async Task HostedController_TakesTheLease_AndReconciles()
    {
        await using var api = await SeededAsync();
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = api.Url });
        using var controller = new PolicyController(client, Options("replica-7"), NullLoggerFactory.Instance, NullLogger<PolicyController>.Instance);
        using var stop = new CancellationTokenSource();

        await controller.StartAsync(stop.Token);
        await Eventually.HoldsAsync(() => Task.FromResult((api.Get("configmaps", "gateway", "backendtls-policy") is not null, "no ConfigMap yet")),
            "the leader's first pass", TimeSpan.FromSeconds(15));

        await stop.CancelAsync();
        await controller.StopAsync(CancellationToken.None);
        Assert.Equal("replica-7", (string?)api.Get("leases", "backendtls-system", "backendtls-controller")?["spec"]?["holderIdentity"]);
        Assert.NotNull(api.Get("configmaps", "gateway", "backendtls-policy"));
    }
}
