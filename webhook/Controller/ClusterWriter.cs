using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace BackendTls.Webhook.Controller;

/// <summary>
/// Writes the reconcile's decisions: ConfigMaps only when their content changed (and stale ones of ours
/// deleted), policy status only when it changed (optimistically: a conflict waits for the next pass),
/// Events on change.
/// </summary>
internal sealed partial class ClusterWriter(IKubernetes client, string ownerWebhookConfiguration, ILogger<ClusterWriter> logger)
{
    public const string ManagedByLabel = "app.kubernetes.io/managed-by";
    public const string ManagedBy = "backendtls-controller";
    private V1OwnerReference? _owner;

    /// <summary>
    /// The rendered ConfigMaps are owned by the installation's MutatingWebhookConfiguration (cluster-scoped,
    /// so it may own objects in any namespace): uninstalling it lets the garbage collector remove them.
    /// </summary>
    private async Task<V1OwnerReference?> OwnerAsync(CancellationToken cancellationToken)
    {
        if (_owner is null)
        {
            try
            {
                var configuration = await client.AdmissionregistrationV1.ReadMutatingWebhookConfigurationAsync(ownerWebhookConfiguration, cancellationToken: cancellationToken);
                _owner = new V1OwnerReference
                {
                    ApiVersion = "admissionregistration.k8s.io/v1",
                    Kind = "MutatingWebhookConfiguration",
                    Name = configuration.Metadata.Name,
                    Uid = configuration.Metadata.Uid,
                };
            }
            catch (HttpOperationException e) when (e.Response.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Forbidden)
            {
                LogNoOwner(logger, ownerWebhookConfiguration);
            }
        }

        return _owner;
    }

    public async Task<int> ApplyConfigMapsAsync(IReadOnlyList<DesiredConfigMap> desired, string name, CancellationToken cancellationToken)
    {
        var written = 0;
        var existing = await client.CoreV1.ListConfigMapForAllNamespacesAsync(labelSelector: $"{ManagedByLabel}={ManagedBy}", cancellationToken: cancellationToken);
        var wanted = desired.ToDictionary(d => d.Namespace, StringComparer.Ordinal);
        var owner = await OwnerAsync(cancellationToken);
        foreach (var stale in existing.Items.Where(c => c.Metadata.Name == name && !wanted.ContainsKey(c.Metadata.NamespaceProperty)))
        {
            await client.CoreV1.DeleteNamespacedConfigMapAsync(stale.Metadata.Name, stale.Metadata.NamespaceProperty, cancellationToken: cancellationToken);
            LogDeleted(logger, stale.Metadata.NamespaceProperty, name);
        }

        foreach (var configMap in desired)
        {
            var current = existing.Items.FirstOrDefault(c => c.Metadata.NamespaceProperty == configMap.Namespace && c.Metadata.Name == name);
            var data = configMap.Data.ToDictionary(p => p.Key, p => p.Value);
            var binary = configMap.BinaryData.ToDictionary(p => p.Key, p => p.Value);
            if (current is not null && Same(current.Data, data, (a, b) => a == b) && Same(current.BinaryData, binary, (a, b) => a.AsSpan().SequenceEqual(b)))
            {
                continue; // unchanged: no write, no kubelet churn
            }

            var body = new V1ConfigMap
            {
                ApiVersion = "v1",
                Kind = "ConfigMap",
                Metadata = new V1ObjectMeta
                {
                    Name = name,
                    NamespaceProperty = configMap.Namespace,
                    ResourceVersion = current?.Metadata.ResourceVersion,
                    Labels = new Dictionary<string, string> { [ManagedByLabel] = ManagedBy, ["app.kubernetes.io/part-of"] = "backendtls" },
                    OwnerReferences = owner is null ? null : [owner],
                },
                Data = data,
                BinaryData = binary.Count == 0 ? null : binary,
            };
            try
            {
                if (current is null)
                {
                    await client.CoreV1.CreateNamespacedConfigMapAsync(body, configMap.Namespace, cancellationToken: cancellationToken);
                }
                else
                {
                    await client.CoreV1.ReplaceNamespacedConfigMapAsync(body, name, configMap.Namespace, cancellationToken: cancellationToken);
                }

                written++;
                LogWritten(logger, configMap.Namespace, name);
            }
            catch (HttpOperationException e) when (e.Response.StatusCode is HttpStatusCode.Conflict)
            {
                LogConflict(logger, $"ConfigMap {configMap.Namespace}/{name}");
            }
        }

        return written;
    }

    private static bool Same<T>(IDictionary<string, T>? current, Dictionary<string, T> wanted, Func<T, T, bool> equal) =>
        (current?.Count ?? 0) == wanted.Count && wanted.All(p => current!.TryGetValue(p.Key, out var value) && equal(value, p.Value));

    public async Task WriteStatusAsync(string version, PolicyStatusUpdate update, CancellationToken cancellationToken)
    {
        try
        {
            var current = await client.CustomObjects.GetNamespacedCustomObjectAsync<JsonElement>(ClusterReader.Group, version, update.Namespace, "backendtlspolicies", update.Name, cancellationToken: cancellationToken);
            var body = JsonNode.Parse(current.GetRawText())!.AsObject();
            body["status"] = update.Status.DeepClone(); // resourceVersion stays: a concurrent change is a 409
            await client.CustomObjects.ReplaceNamespacedCustomObjectStatusAsync(body, ClusterReader.Group, version, update.Namespace, "backendtlspolicies", update.Name, cancellationToken: cancellationToken);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode is HttpStatusCode.Conflict or HttpStatusCode.NotFound)
        {
            LogConflict(logger, $"BackendTLSPolicy {update.Namespace}/{update.Name} status");
        }
    }

    public async Task RecordEventAsync(KubeEvent kubeEvent, string policyVersion, CancellationToken cancellationToken)
    {
        var subject = kubeEvent.Regarding;
        var body = new Eventsv1Event
        {
            ApiVersion = "events.k8s.io/v1",
            Kind = "Event",
            Metadata = new V1ObjectMeta { GenerateName = subject.Name + ".", NamespaceProperty = subject.Namespace },
            EventTime = DateTime.UtcNow,
            Type = kubeEvent.Type,
            Reason = kubeEvent.Reason,
            Note = kubeEvent.Message.Length <= 1024 ? kubeEvent.Message : kubeEvent.Message[..1021] + "...", // the API's limit
            Action = "Reconcile",
            ReportingController = PolicyReconciler.ControllerName,
            ReportingInstance = Environment.MachineName,
            Regarding = new V1ObjectReference
            {
                ApiVersion = subject.ApiVersion ?? $"{ClusterReader.Group}/{policyVersion}",
                Kind = subject.Kind,
                Name = subject.Name,
                NamespaceProperty = subject.Namespace,
                Uid = subject.Uid,
            },
        };
        try
        {
            await client.EventsV1.CreateNamespacedEventAsync(body, subject.Namespace, cancellationToken: cancellationToken);
        }
        catch (HttpOperationException e)
        {
            LogConflict(logger, $"Event on {subject.Kind} {subject.Namespace}/{subject.Name} ({(int)e.Response.StatusCode})");
        }
    }

    [LoggerMessage(50, LogLevel.Information, "Wrote ConfigMap {Namespace}/{Name}", EventName = "ConfigMapWritten")]
    private static partial void LogWritten(ILogger logger, string @namespace, string name);

    [LoggerMessage(51, LogLevel.Information, "Deleted ConfigMap {Namespace}/{Name}: no injected pods there any more", EventName = "ConfigMapDeleted")]
    private static partial void LogDeleted(ILogger logger, string @namespace, string name);

    [LoggerMessage(53, LogLevel.Warning, "MutatingWebhookConfiguration {Name} not readable: rendered ConfigMaps get no owner and are not garbage-collected on uninstall (delete them by label app.kubernetes.io/managed-by=backendtls-controller)", EventName = "NoOwner")]
    private static partial void LogNoOwner(ILogger logger, string name);

    [LoggerMessage(52, LogLevel.Information, "{What} changed meanwhile; the next pass retries", EventName = "WriteConflict")]
    private static partial void LogConflict(ILogger logger, string what);
}
