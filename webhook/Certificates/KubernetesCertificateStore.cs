using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace BackendTls.Webhook.Certificates;

/// <summary>
/// <see cref="ICertificateStore"/> on the Kubernetes API: a Secret in the webhook's namespace, and JSON
/// patches of the MutatingWebhookConfiguration's caBundle.
/// </summary>
internal sealed class KubernetesCertificateStore(IKubernetes client, string ns, string secretName, string webhookConfigurationName) : ICertificateStore
{
    public async Task<StoredBundle?> ReadAsync(CancellationToken cancellationToken)
    {
        try
        {
            var secret = await client.CoreV1.ReadNamespacedSecretAsync(secretName, ns, cancellationToken: cancellationToken);
            string Key(string name) => secret.Data is not null && secret.Data.TryGetValue(name, out var bytes)
                ? Encoding.UTF8.GetString(bytes)
                : throw new InvalidOperationException($"Secret {ns}/{secretName} has no key {name}; delete it and the webhook recreates it");
            return new StoredBundle(new CertificateBundle(Key("ca.crt"), Key("ca.key"), Key("tls.crt"), Key("tls.key")), secret.Metadata.ResourceVersion);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    public async Task<bool> TryCreateAsync(CertificateBundle bundle, CancellationToken cancellationToken)
    {
        try
        {
            await client.CoreV1.CreateNamespacedSecretAsync(ToSecret(bundle, null), ns, cancellationToken: cancellationToken);
            return true;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict)
        {
            return false;
        }
    }

    public async Task<bool> TryReplaceAsync(CertificateBundle bundle, string resourceVersion, CancellationToken cancellationToken)
    {
        try
        {
            await client.CoreV1.ReplaceNamespacedSecretAsync(ToSecret(bundle, resourceVersion), secretName, ns, cancellationToken: cancellationToken);
            return true;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict)
        {
            return false;
        }
    }

    public async Task<int> SyncCaBundleAsync(string caCertificatePem, CancellationToken cancellationToken)
    {
        var configuration = await client.AdmissionregistrationV1.ReadMutatingWebhookConfigurationAsync(webhookConfigurationName, cancellationToken: cancellationToken);
        var wanted = Encoding.UTF8.GetBytes(caCertificatePem);
        var patch = new JsonArray();
        for (var i = 0; i < (configuration.Webhooks?.Count ?? 0); i++)
        {
            if (configuration.Webhooks![i].ClientConfig.CaBundle is not { } current || !current.SequenceEqual(wanted))
            {
                patch.Add(new JsonObject
                {
                    ["op"] = "add", // add replaces an existing member too
                    ["path"] = $"/webhooks/{i}/clientConfig/caBundle",
                    ["value"] = Convert.ToBase64String(wanted),
                });
            }
        }

        if (patch.Count > 0)
        {
            await client.AdmissionregistrationV1.PatchMutatingWebhookConfigurationAsync(
                new V1Patch(patch.ToJsonString(), V1Patch.PatchType.JsonPatch), webhookConfigurationName, cancellationToken: cancellationToken);
        }

        return patch.Count;
    }

    private V1Secret ToSecret(CertificateBundle bundle, string? resourceVersion) => new()
    {
        ApiVersion = "v1",
        Kind = "Secret",
        Metadata = new V1ObjectMeta
        {
            Name = secretName,
            NamespaceProperty = ns,
            ResourceVersion = resourceVersion,
            Labels = new Dictionary<string, string> { ["app.kubernetes.io/name"] = "backendtls-webhook", ["app.kubernetes.io/component"] = "serving-certificate" },
        },
        Type = "Opaque",
        Data = new Dictionary<string, byte[]>
        {
            ["ca.crt"] = Encoding.UTF8.GetBytes(bundle.CaCertificatePem),
            ["ca.key"] = Encoding.UTF8.GetBytes(bundle.CaKeyPem),
            ["tls.crt"] = Encoding.UTF8.GetBytes(bundle.CertificatePem),
            ["tls.key"] = Encoding.UTF8.GetBytes(bundle.KeyPem),
        },
    };
}
