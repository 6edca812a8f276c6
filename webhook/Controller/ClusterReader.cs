using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using BackendTls.Policy.Rendering;
using BackendTls.Webhook.Injection;
using k8s;
using k8s.Autorest;

namespace BackendTls.Webhook.Controller;

/// <summary>
/// Reads what the reconcile needs from the API: BackendTLSPolicies (v1, or v1alpha3 where only that is
/// served), Services, only the ConfigMaps and Secrets the policies reference (of a Secret only
/// <c>ca.crt</c> is kept: private keys never enter the controller's state), and the namespaces running
/// injected pods.
/// </summary>
internal sealed class ClusterReader(IKubernetes client)
{
    public const string Group = "gateway.networking.k8s.io";
    private static readonly string[] Versions = ["v1", "v1alpha3"];
    private string? _version;

    /// <summary>The BackendTLSPolicy version the cluster serves (discovered once).</summary>
    public string? PolicyVersion => _version;

    public async Task<ClusterState> ReadAsync(CancellationToken cancellationToken)
    {
        var policies = await ReadPoliciesAsync(cancellationToken);
        var objects = new List<KubeObject>(policies);
        var services = await client.CoreV1.ListServiceForAllNamespacesAsync(cancellationToken: cancellationToken);
        objects.AddRange(services.Items.Select(s => ToKubeObject(s, "v1", "Service")));

        foreach (var (kind, ns, name) in ReferencedCaObjects(policies))
        {
            if (await ReadCaHolderAsync(kind, ns, name, cancellationToken) is { } holder)
            {
                objects.Add(holder);
            }
        }

        var injected = new HashSet<string>(StringComparer.Ordinal);
        var namespaces = await client.CoreV1.ListNamespaceAsync(labelSelector: $"{InjectionLabels.Inject}={InjectionLabels.Enabled}", cancellationToken: cancellationToken);
        injected.UnionWith(namespaces.Items.Select(n => n.Metadata.Name));
        var optedInPods = await client.CoreV1.ListPodForAllNamespacesAsync(labelSelector: $"{InjectionLabels.Inject}={InjectionLabels.Enabled}", cancellationToken: cancellationToken);
        injected.UnionWith(optedInPods.Items.Select(p => p.Metadata.NamespaceProperty));
        injected.ExceptWith(InjectorSettings.SystemNamespaces);
        return new ClusterState(objects, injected);
    }

    private async Task<List<KubeObject>> ReadPoliciesAsync(CancellationToken cancellationToken)
    {
        foreach (var version in _version is null ? Versions : [_version])
        {
            try
            {
                var list = await client.CustomObjects.ListCustomObjectForAllNamespacesAsync<JsonElement>(Group, version, "backendtlspolicies", cancellationToken: cancellationToken);
                _version = version;
                var items = JsonNode.Parse(list.GetRawText())?["items"] as JsonArray ?? [];
                return items.OfType<JsonObject>()
                    .SelectMany(item => KubeObject.FromDocuments([item.DeepClone()], $"{Group}/{version}"))
                    .ToList();
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
            {
                // this version is not served; try the next
            }
        }

        throw new InvalidOperationException($"the cluster serves no BackendTLSPolicy ({Group} v1 or v1alpha3); install the Gateway API CRDs");
    }

    private static IEnumerable<(string Kind, string Namespace, string Name)> ReferencedCaObjects(List<KubeObject> policies) =>
        policies.SelectMany(p => (p["spec.validation.caCertificateRefs"] as JsonArray ?? [])
                .Select(r => (Kind: KubeObject.AsString(r?["kind"]) ?? string.Empty, Group: KubeObject.AsString(r?["group"]) ?? string.Empty, Name: KubeObject.AsString(r?["name"])))
                .Where(r => r.Group is "" or "core" && r.Kind is "ConfigMap" or "Secret" && r.Name is not null)
                .Select(r => (r.Kind, p.Namespace, r.Name!)))
            .Distinct();

    private async Task<KubeObject?> ReadCaHolderAsync(string kind, string ns, string name, CancellationToken cancellationToken)
    {
        try
        {
            if (kind == "ConfigMap")
            {
                var configMap = await client.CoreV1.ReadNamespacedConfigMapAsync(name, ns, cancellationToken: cancellationToken);
                return ToKubeObject(configMap, "v1", "ConfigMap");
            }

            var secret = await client.CoreV1.ReadNamespacedSecretAsync(name, ns, cancellationToken: cancellationToken);
            // Keep ca.crt only; tls.key and anything else are dropped here, before any other code sees them.
            secret.Data = secret.Data?.Where(d => d.Key == PolicyRenderer.CaKey).ToDictionary(d => d.Key, d => d.Value);
            secret.StringData = null;
            return ToKubeObject(secret, "v1", "Secret");
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null; // render reports it as InvalidCACertificateRef
        }
    }

    private static KubeObject ToKubeObject<T>(T item, string apiVersion, string kind)
    {
        var node = JsonNode.Parse(KubernetesJson.Serialize(item))!.AsObject();
        node["apiVersion"] = apiVersion;
        node["kind"] = kind;
        return KubeObject.FromDocuments([node], $"{kind} from the API").Single();
    }
}
