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
/// injected pods, the EndpointSlices of policy targets (the ConfigMaps' bootstrap index, and the ports the
/// pods must capture), the injected pods' capture settings, and the webhook's serving CA.
/// </summary>
internal sealed class ClusterReader(IKubernetes client, string webhookConfiguration)
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
        objects.AddRange(await ReadTargetSlicesAsync(policies, cancellationToken));
        return new ClusterState(objects, injected)
        {
            Pods = await ReadInjectedPodsAsync(injected, cancellationToken),
            IndexCa = await ReadServingCaAsync(cancellationToken),
        };
    }

    /// <summary>The EndpointSlices of the Services the policies name (by the service-name label).</summary>
    private async Task<List<KubeObject>> ReadTargetSlicesAsync(List<KubeObject> policies, CancellationToken cancellationToken)
    {
        var slices = new List<KubeObject>();
        var services = policies.SelectMany(p => (p["spec.targetRefs"] as JsonArray ?? [])
                .Where(r => (KubeObject.AsString(r?["kind"]) ?? "Service") == "Service" && KubeObject.AsString(r?["name"]) is not null)
                .Select(r => (p.Namespace, Name: KubeObject.AsString(r?["name"])!)))
            .Distinct();
        foreach (var (ns, name) in services)
        {
            var list = await client.DiscoveryV1.ListNamespacedEndpointSliceAsync(ns, labelSelector: $"kubernetes.io/service-name={name}", cancellationToken: cancellationToken);
            slices.AddRange(list.Items.Select(s => ToKubeObject(s, "discovery.k8s.io/v1", "EndpointSlice")));
        }

        return slices;
    }

    /// <summary>Pods of the injected namespaces that carry the injector's capture-config annotation.</summary>
    private async Task<List<InjectedPod>> ReadInjectedPodsAsync(IEnumerable<string> namespaces, CancellationToken cancellationToken)
    {
        var pods = new List<InjectedPod>();
        foreach (var ns in namespaces.Order(StringComparer.Ordinal))
        {
            var list = await client.CoreV1.ListNamespacedPodAsync(ns, cancellationToken: cancellationToken);
            foreach (var pod in list.Items.Where(p => p.Status?.Phase is not ("Succeeded" or "Failed")))
            {
                if (CaptureConfig.TryParse((pod.Metadata.Annotations is { } annotations && annotations.TryGetValue(InjectionLabels.CaptureConfig, out var text) ? text : null)) is { } capture)
                {
                    var (owner, workload) = OwnerOf(pod);
                    pods.Add(new InjectedPod(ns, pod.Metadata.Name, capture, owner, workload));
                }
            }
        }

        return pods;
    }

    /// <summary>The pod's controller, as people know it: a ReplicaSet made by a Deployment is named for the Deployment.</summary>
    private static (EventSubject? Owner, string? Workload) OwnerOf(k8s.Models.V1Pod pod)
    {
        var owner = pod.Metadata.OwnerReferences?.FirstOrDefault(o => o.Controller == true);
        if (owner is null)
        {
            return (null, null);
        }

        var ns = pod.Metadata.NamespaceProperty;
        if (owner.Kind == "ReplicaSet" && pod.Metadata.Labels is { } labels && labels.TryGetValue("pod-template-hash", out var hash) && owner.Name.EndsWith("-" + hash, StringComparison.Ordinal))
        {
            var deployment = owner.Name[..^(hash.Length + 1)];
            return (new EventSubject("apps/v1", "Deployment", ns, deployment), $"deployment/{deployment}");
        }

        var workload = owner.Kind is "Deployment" or "StatefulSet" or "DaemonSet" ? $"{owner.Kind.ToLowerInvariant()}/{owner.Name}" : null;
        return (new EventSubject(owner.ApiVersion, owner.Kind, ns, owner.Name, owner.Uid), workload);
    }

    /// <summary>The CA bundle of our MutatingWebhookConfiguration (cert-manager's CA injector or the self-managed mode fills it).</summary>
    private async Task<string?> ReadServingCaAsync(CancellationToken cancellationToken)
    {
        try
        {
            var configuration = await client.AdmissionregistrationV1.ReadMutatingWebhookConfigurationAsync(webhookConfiguration, cancellationToken: cancellationToken);
            var bundle = configuration.Webhooks?.Select(w => w.ClientConfig?.CaBundle).FirstOrDefault(b => b is { Length: > 0 });
            return bundle is null ? null : System.Text.Encoding.ASCII.GetString(bundle);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Forbidden)
        {
            return null; // no index CA: sidecars keep the mounted destination index
        }
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
