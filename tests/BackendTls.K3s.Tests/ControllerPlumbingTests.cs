using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BackendTls.Policy.Yaml;
using BackendTls.Webhook.Certificates;
using BackendTls.Webhook.Controller;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging.Abstractions;

namespace BackendTls.K3s.Tests;

/// <summary>
/// The controller's and the self-managed certificates' API plumbing against a real API server: CRD
/// install, reading policies and referenced CA holders, writing ConfigMaps, status and Events, the
/// certificate Secret and the caBundle patch.
/// </summary>
public sealed class ControllerPlumbingTests(K3sCluster cluster) : IClassFixture<K3sCluster>
{
    private static string Reference(string file) =>
        Path.Combine(BackendTls.Tests.Shared.Repository.Root, "..", "shared", "reference", "gateway-api", file);


    private static async Task InstallCrdAsync(IKubernetes client)
    {
        var crd = YamlDocuments.Parse(File.ReadAllText(Reference("v1.6.1-standard-gateway.networking.k8s.io_backendtlspolicies.yaml")), "crd", typedScalars: true).Single();
        var typed = KubernetesJson.Deserialize<V1CustomResourceDefinition>(crd.ToJsonString());
        try
        {
            await client.ApiextensionsV1.CreateCustomResourceDefinitionAsync(typed);
        }
        catch (k8s.Autorest.HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.Conflict)
        {
        }

        for (var i = 0; i < 100; i++)
        {
            var current = await client.ApiextensionsV1.ReadCustomResourceDefinitionAsync(typed.Metadata.Name);
            if (current.Status?.Conditions?.Any(c => c.Type == "Established" && c.Status == "True") == true)
            {
                return;
            }

            await Task.Delay(100);
        }
    }

    [SkippableFact]
    public async Task Policy_RenderedIntoInjectedNamespace_StatusAcceptedOnTheService_EventRecorded()
    {
        Skip.If(cluster.Unavailable is not null, cluster.Unavailable);
        var client = cluster.Client!;
        await InstallCrdAsync(client);
        var ca = ServingCertificates.CreateCaAndServing(["ca.test"], DateTimeOffset.UtcNow).CaCertificatePem;
        await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "httpbin" } });
        await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "gateway", Labels = new Dictionary<string, string> { ["backendtls.io/inject"] = "enabled" } } });
        await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "backendtls-system" } });
        await client.CoreV1.CreateNamespacedServiceAsync(new V1Service
        {
            Metadata = new V1ObjectMeta { Name = "httpbin" },
            Spec = new V1ServiceSpec { Ports = [new V1ServicePort { Name = "http", Port = 8000 }], Selector = new Dictionary<string, string> { ["app"] = "httpbin" } },
        }, "httpbin");
        await client.CoreV1.CreateNamespacedSecretAsync(new V1Secret
        {
            Metadata = new V1ObjectMeta { Name = "httpbin-root-ca" },
            Data = new Dictionary<string, byte[]> { ["ca.crt"] = Encoding.UTF8.GetBytes(ca), ["tls.key"] = "secret-key"u8.ToArray() },
        }, "httpbin");
        var policy = JsonNode.Parse("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"BackendTLSPolicy","metadata":{"name":"httpbin-backend-tls","namespace":"httpbin"},
             "spec":{"targetRefs":[{"group":"","kind":"Service","name":"httpbin"}],
                     "validation":{"caCertificateRefs":[{"group":"","kind":"Secret","name":"httpbin-root-ca"}],"hostname":"www.example.com"}}}
            """)!;
        await client.CustomObjects.CreateNamespacedCustomObjectAsync(policy, ClusterReader.Group, "v1", "httpbin", "backendtlspolicies");

        var controller = new PolicyController(client, new ControllerOptions("backendtls-policy", "backendtls-system", "backendtls-controller", "test", TimeSpan.FromSeconds(1), "backendtls-sidecar-injector"),
            NullLoggerFactory.Instance, NullLogger<PolicyController>.Instance);
        await controller.ReconcileOnceAsync(CancellationToken.None);

        var configMap = await client.CoreV1.ReadNamespacedConfigMapAsync("backendtls-policy", "gateway");
        Assert.Contains("www.example.com", configMap.Data["backendtls.yaml"], StringComparison.Ordinal);
        Assert.DoesNotContain(configMap.Data.Values, v => v.Contains("secret-key", StringComparison.Ordinal));
        var stored = JsonNode.Parse(((JsonElement)await client.CustomObjects.GetNamespacedCustomObjectAsync<JsonElement>(
            ClusterReader.Group, "v1", "httpbin", "backendtlspolicies", "httpbin-backend-tls")).GetRawText())!;
        var ancestor = stored["status"]!["ancestors"]![0]!;
        Assert.Equal(PolicyReconciler.ControllerName, (string?)ancestor["controllerName"]);
        Assert.Equal("True", (string?)ancestor["conditions"]![0]!["status"]);
        var events = await client.EventsV1.ListNamespacedEventAsync("httpbin");
        Assert.Contains(events.Items, e => e.Regarding.Name == "httpbin-backend-tls" && e.Reason == "Rendered");

        // A second pass changes nothing: no writes when nothing changed.
        var before = (await client.CoreV1.ReadNamespacedConfigMapAsync("backendtls-policy", "gateway")).Metadata.ResourceVersion;
        await controller.ReconcileOnceAsync(CancellationToken.None);
        Assert.Equal(before, (await client.CoreV1.ReadNamespacedConfigMapAsync("backendtls-policy", "gateway")).Metadata.ResourceVersion);
    }

    [SkippableFact]
    public async Task HostedController_TakesTheLease_AndFollowsChangesThroughWatches()
    {
        Skip.If(cluster.Unavailable is not null, cluster.Unavailable);
        var client = cluster.Client!;
        await InstallCrdAsync(client);
        foreach (var name in new[] { "watch-app", "watch-gw", "backendtls-lease" })
        {
            await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = name } });
        }

        await client.CoreV1.CreateNamespacedServiceAsync(new V1Service
        {
            Metadata = new V1ObjectMeta { Name = "svc" },
            Spec = new V1ServiceSpec { Ports = [new V1ServicePort { Name = "https", Port = 443 }] },
        }, "watch-app");
        // A resync far in the future: whatever happens below within seconds is the watches' doing.
        var options = new ControllerOptions("backendtls-policy", "backendtls-lease", "backendtls-controller", "replica-1", TimeSpan.FromMinutes(10), "none");
        using var controller = new PolicyController(client, options, NullLoggerFactory.Instance, NullLogger<PolicyController>.Instance);
        using var stop = new CancellationTokenSource();
        await controller.StartAsync(stop.Token);

        await Eventually(async () => (await client.CoordinationV1.ReadNamespacedLeaseAsync("backendtls-controller", "backendtls-lease")).Spec.HolderIdentity == "replica-1");
        var ns = await client.CoreV1.ReadNamespaceAsync("watch-gw");
        ns.Metadata.Labels = new Dictionary<string, string> { ["backendtls.io/inject"] = "enabled" };
        await client.CoreV1.ReplaceNamespaceAsync(ns, "watch-gw");
        var policy = JsonNode.Parse("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"BackendTLSPolicy","metadata":{"name":"p","namespace":"watch-app"},
             "spec":{"targetRefs":[{"group":"","kind":"Service","name":"svc"}],"validation":{"wellKnownCACertificates":"System","hostname":"svc.example.com"}}}
            """)!;
        await client.CustomObjects.CreateNamespacedCustomObjectAsync(policy, ClusterReader.Group, "v1", "watch-app", "backendtlspolicies");

        await Eventually(async () => (await client.CoreV1.ReadNamespacedConfigMapAsync("backendtls-policy", "watch-gw")).Data["backendtls.yaml"].Contains("svc.example.com", StringComparison.Ordinal));

        await stop.CancelAsync();
        await controller.StopAsync(CancellationToken.None);
    }

    private static async Task Eventually(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (k8s.Autorest.HttpOperationException)
            {
                // not there yet
            }

            await Task.Delay(200);
        }

        Assert.Fail("condition not met within 20 s");
    }

    [SkippableFact]
    public async Task SelfManagedCertificates_SecretCreatedOnce_CaBundlePublished()
    {
        Skip.If(cluster.Unavailable is not null, cluster.Unavailable);
        var client = cluster.Client!;
        try
        {
            await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "backendtls-certs" } });
        }
        catch (k8s.Autorest.HttpOperationException)
        {
        }

        await client.AdmissionregistrationV1.CreateMutatingWebhookConfigurationAsync(new V1MutatingWebhookConfiguration
        {
            Metadata = new V1ObjectMeta { Name = "backendtls-test-injector" },
            Webhooks =
            [
                new V1MutatingWebhook
                {
                    Name = "namespace.inject.backendtls.io",
                    AdmissionReviewVersions = ["v1"],
                    SideEffects = "None",
                    ClientConfig = new Admissionregistrationv1WebhookClientConfig { Service = new Admissionregistrationv1ServiceReference { Name = "x", NamespaceProperty = "backendtls-certs" } },
                },
            ],
        });
        var store = new KubernetesCertificateStore(client, "backendtls-certs", "webhook-tls", "backendtls-test-injector");
        var a = new SelfManagedCertificateSource(store, ["x.backendtls-certs.svc"], new BackendTls.Webhook.Admin.WebhookMetrics(), TimeProvider.System, NullLogger<SelfManagedCertificateSource>.Instance);
        var b = new SelfManagedCertificateSource(store, ["x.backendtls-certs.svc"], new BackendTls.Webhook.Admin.WebhookMetrics(), TimeProvider.System, NullLogger<SelfManagedCertificateSource>.Instance);

        await Task.WhenAll(a.ReconcileAsync(default), b.ReconcileAsync(default));

        Assert.Null(a.Problem);
        Assert.Equal(a.Current!.Thumbprint, b.Current!.Thumbprint);
        var configuration = await client.AdmissionregistrationV1.ReadMutatingWebhookConfigurationAsync("backendtls-test-injector");
        Assert.Equal((await store.ReadAsync(default))!.Bundle.CaCertificatePem, Encoding.UTF8.GetString(configuration.Webhooks[0].ClientConfig.CaBundle));
    }
}
