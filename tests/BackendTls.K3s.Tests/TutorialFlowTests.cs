using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using BackendTls.Policy.Yaml;
using BackendTls.Webhook.Certificates;
using k8s;
using k8s.Models;

namespace BackendTls.K3s.Tests;

/// <summary>
/// The tutorial's flow in a real cluster, as a user on a laptop with Docker would run it: Gateway API CRDs,
/// our two images loaded into k3s, manifests/ applied (self-managed certificates), a labelled gateway
/// namespace with nginx as the plain-HTTP gateway, the tutorial's httpbin with a certificate that has a SAN,
/// the tutorial's BackendTLSPolicy. Then: a request through the gateway is 200 and the backend saw SNI
/// www.example.com; the sidecar counted a verified handshake; the policy is Accepted/ResolvedRefs. Then a
/// wrong hostname: 502 with the reason, and the status stays True (a runtime failure, not a config error).
/// Needs the images built first: docker build -f Dockerfile.sidecar -t backendtls-sidecar:0.1.0 . (and webhook).
/// </summary>
public sealed class TutorialFlowTests(K3sCluster cluster) : IClassFixture<K3sCluster>
{
    private static readonly string Root = BackendTls.Tests.Shared.Repository.Root;

    [SkippableFact]
    public async Task TutorialFlow_InjectedGateway_VerifiesTls_StatusAccepted_ThenWrongHostname502()
    {
        Skip.If(cluster.Unavailable is not null, cluster.Unavailable);
        var client = cluster.Client!;
        await LoadImageAsync("backendtls-sidecar:0.1.0");
        await LoadImageAsync("backendtls-webhook:0.1.0");
        await ApplyFileAsync(client, Path.Combine(Root, "..", "shared", "reference", "gateway-api", "v1.6.1-standard-gateway.networking.k8s.io_backendtlspolicies.yaml"));
        foreach (var file in Directory.GetFiles(Path.Combine(Root, "manifests", "base"), "*.yaml").Where(f => !f.EndsWith("kustomization.yaml", StringComparison.Ordinal)))
        {
            await ApplyFileAsync(client, file);
        }

        await ApplyFileAsync(client, Path.Combine(Root, "manifests", "overlays", "self-managed", "rbac-certificates.yaml"));
        var deployment = await client.AppsV1.ReadNamespacedDeploymentAsync("backendtls-webhook", "backendtls-system");
        deployment.Spec.Template.Spec.Containers[0].Args = [.. deployment.Spec.Template.Spec.Containers[0].Args, "--certificate-mode=self-managed"];
        await client.AppsV1.ReplaceNamespacedDeploymentAsync(deployment, "backendtls-webhook", "backendtls-system");
        await WaitAsync(async () => (await client.AppsV1.ReadNamespacedDeploymentAsync("backendtls-webhook", "backendtls-system")).Status?.ReadyReplicas >= 1, "webhook ready");

        // httpbin serving TLS with a SAN certificate, its CA in a Secret, the tutorial's policy.
        var bundle = ServingCertificates.CreateCaAndServing(["www.example.com"], DateTimeOffset.UtcNow);
        await ApplyYamlAsync(client, Manifests(bundle));
        await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "gateway", Labels = new Dictionary<string, string> { ["backendtls.io/inject"] = "enabled" } } });
        await ApplyYamlAsync(client, GatewayManifests);
        await WaitAsync(async () => (await client.AppsV1.ReadNamespacedDeploymentAsync("gateway", "gateway")).Status?.ReadyReplicas >= 1, "injected gateway ready");

        var (status, body) = await CurlAsync(client, "http://gateway.gateway/headers");
        Assert.Equal(200, status);
        Assert.Contains("www.example.com", body, StringComparison.Ordinal);
        var metrics = (await CurlAsync(client, "http://gateway-metrics.gateway:15090/metrics")).Body;
        Assert.Contains("result=\"ok\",reason=\"verified\"", metrics, StringComparison.Ordinal);
        var policy = await ReadPolicyAsync(client);
        Assert.All(policy["status"]!["ancestors"]![0]!["conditions"]!.AsArray(), c => Assert.Equal("True", (string?)c!["status"]));

        // Wrong hostname: the backend's certificate does not match; 502 with the reason; status unchanged.
        policy["spec"]!["validation"]!["hostname"] = "wrong.example.com";
        await client.CustomObjects.ReplaceNamespacedCustomObjectAsync(policy, "gateway.networking.k8s.io", "v1", "httpbin", "backendtlspolicies", "httpbin-backend-tls");
        await WaitAsync(async () => (await CurlAsync(client, "http://gateway.gateway/headers")).Status == 502, "wrong hostname refused (kubelet ConfigMap propagation)", TimeSpan.FromMinutes(3));
        Assert.Contains("hostname_mismatch", (await CurlAsync(client, "http://gateway.gateway/headers")).Body, StringComparison.Ordinal);
        Assert.All((await ReadPolicyAsync(client))["status"]!["ancestors"]![0]!["conditions"]!.AsArray(), c => Assert.Equal("True", (string?)c!["status"]));
    }

    private static string Manifests(CertificateBundle bundle) => $$$"""
        apiVersion: v1
        kind: Namespace
        metadata: {name: httpbin}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: httpbin, namespace: httpbin}
        type: kubernetes.io/tls
        data:
          tls.crt: {{{B64(bundle.CertificatePem)}}}
          tls.key: {{{B64(bundle.KeyPem)}}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: httpbin-root-ca, namespace: httpbin}
        data:
          ca.crt: {{{B64(bundle.CaCertificatePem)}}}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: httpbin, namespace: httpbin}
        spec:
          selector: {matchLabels: {app: httpbin}}
          template:
            metadata: {labels: {app: httpbin}}
            spec:
              containers:
              - name: httpbin
                image: docker.io/mccutchen/go-httpbin:v2.15.0
                args: ["-port", "8080", "-https-cert-file", "/etc/tls/tls.crt", "-https-key-file", "/etc/tls/tls.key"]
                ports: [{containerPort: 8080}]
                volumeMounts: [{name: tls, mountPath: /etc/tls, readOnly: true}]
              volumes: [{name: tls, secret: {secretName: httpbin}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: httpbin, namespace: httpbin}
        spec:
          selector: {app: httpbin}
          ports: [{name: https, port: 8000, targetPort: 8080}]
        ---
        apiVersion: gateway.networking.k8s.io/v1
        kind: BackendTLSPolicy
        metadata: {name: httpbin-backend-tls, namespace: httpbin}
        spec:
          targetRefs: [{group: "", kind: Service, name: httpbin}]
          validation:
            caCertificateRefs: [{group: "", kind: Secret, name: httpbin-root-ca}]
            hostname: www.example.com
        """;

    private const string GatewayManifests = """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: gateway-nginx, namespace: gateway}
        data:
          default.conf: |
            server {
              listen 8080;
              location / { proxy_pass http://127.0.0.1:15001; proxy_set_header Host www.example.com; proxy_http_version 1.1; proxy_set_header Connection ""; }
            }
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: gateway, namespace: gateway}
        spec:
          selector: {matchLabels: {app: gateway}}
          template:
            metadata: {labels: {app: gateway}}
            spec:
              containers:
              - name: nginx
                image: docker.io/library/nginx:1.27
                ports: [{containerPort: 8080}]
                volumeMounts: [{name: conf, mountPath: /etc/nginx/conf.d}]
              volumes: [{name: conf, configMap: {name: gateway-nginx}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: gateway, namespace: gateway}
        spec:
          selector: {app: gateway}
          ports: [{port: 80, targetPort: 8080}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: gateway-metrics, namespace: gateway}
        spec:
          selector: {app: gateway}
          ports: [{port: 15090, targetPort: 15090}]
        """;

    private static string B64(string text) => Convert.ToBase64String(Encoding.UTF8.GetBytes(text));

    private static async Task<JsonNode> ReadPolicyAsync(IKubernetes client) =>
        JsonNode.Parse((await client.CustomObjects.GetNamespacedCustomObjectAsync<System.Text.Json.JsonElement>(
            "gateway.networking.k8s.io", "v1", "httpbin", "backendtlspolicies", "httpbin-backend-tls")).GetRawText())!;

    /// <summary>Runs curl in a pod inside the cluster and returns the HTTP status and body.</summary>
    private static async Task<(int Status, string Body)> CurlAsync(IKubernetes client, string url)
    {
        var name = "curl-" + Guid.NewGuid().ToString("N")[..8];
        await client.CoreV1.CreateNamespacedPodAsync(new V1Pod
        {
            Metadata = new V1ObjectMeta { Name = name, Labels = new Dictionary<string, string> { ["backendtls.io/inject"] = "disabled" } },
            Spec = new V1PodSpec
            {
                RestartPolicy = "Never",
                Containers = [new V1Container { Name = "curl", Image = "docker.io/curlimages/curl:8.10.1", Args = ["-s", "-w", "\n%{http_code}", url] }],
            },
        }, "default");
        await WaitAsync(async () => (await client.CoreV1.ReadNamespacedPodAsync(name, "default")).Status?.Phase is "Succeeded" or "Failed", $"curl {url}");
        using var log = await client.CoreV1.ReadNamespacedPodLogAsync(name, "default");
        var text = (await new StreamReader(log).ReadToEndAsync()).TrimEnd();
        await client.CoreV1.DeleteNamespacedPodAsync(name, "default");
        var split = text.LastIndexOf('\n');
        return (int.Parse(text[(split + 1)..], System.Globalization.CultureInfo.InvariantCulture), split < 0 ? string.Empty : text[..split]);
    }

    private static async Task ApplyFileAsync(IKubernetes client, string path) => await ApplyYamlAsync(client, await File.ReadAllTextAsync(path));

    /// <summary>Creates every object of a YAML text (server-side apply via the generic API).</summary>
    private static async Task ApplyYamlAsync(IKubernetes client, string yaml)
    {
        foreach (var document in YamlDocuments.Parse(yaml, "manifest", typedScalars: true))
        {
            var apiVersion = (string)document["apiVersion"]!;
            var kind = (string)document["kind"]!;
            var name = (string)document["metadata"]!["name"]!;
            var ns = (string?)document["metadata"]!["namespace"];
            var plural = kind.ToLowerInvariant() switch
            {
                "customresourcedefinition" => "customresourcedefinitions",
                "policy" => "policies",
                var k when k.EndsWith('s') => k + "es",
                var k when k.EndsWith('y') => k[..^1] + "ies",
                var k => k + "s",
            };
            var (group, version) = apiVersion.Contains('/', StringComparison.Ordinal) ? (apiVersion[..apiVersion.IndexOf('/', StringComparison.Ordinal)], apiVersion[(apiVersion.IndexOf('/', StringComparison.Ordinal) + 1)..]) : (string.Empty, apiVersion);
            var patch = new V1Patch(document.ToJsonString(), V1Patch.PatchType.ApplyPatch);
            if (group.Length == 0)
            {
                // Core objects through the generic client (the custom-objects API cannot address the core group).
                var generic = new GenericClient(client, version, plural, disposeClient: false);
                _ = ns is null
                    ? await generic.PatchAsync<JsonObjectWrapper>(patch, name)
                    : await generic.PatchNamespacedAsync<JsonObjectWrapper>(patch, ns, name);
            }
            else if (ns is null)
            {
                await client.CustomObjects.PatchClusterCustomObjectAsync(patch, group, version, plural, name, fieldManager: "backendtls-tests", force: true);
            }
            else
            {
                await client.CustomObjects.PatchNamespacedCustomObjectAsync(patch, group, version, ns, plural, name, fieldManager: "backendtls-tests", force: true);
            }
        }
    }

    /// <summary>Loads a locally built image into k3s's containerd (docker save | ctr images import).</summary>
    private async Task LoadImageAsync(string image)
    {
        var tar = Path.Combine(Path.GetTempPath(), image.Replace(':', '_').Replace('/', '_') + ".tar");
        await RunAsync("docker", $"save -o {tar} {image}");
        var container = cluster.ContainerId!;
        await RunAsync("docker", $"cp {tar} {container}:/tmp/image.tar");
        await RunAsync("docker", $"exec {container} ctr -n k8s.io images import /tmp/image.tar");
        File.Delete(tar);
    }

    private static async Task RunAsync(string file, string arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"{file} {arguments}: {await process.StandardError.ReadToEndAsync()}");
    }

    private static async Task WaitAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromMinutes(5));
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

            await Task.Delay(TimeSpan.FromSeconds(1));
        }

        Assert.Fail($"timed out waiting for: {what}");
    }


    /// <summary>Any object, for the generic client (we only need the call to succeed).</summary>
    private sealed class JsonObjectWrapper : IKubernetesObject<V1ObjectMeta>
    {
        public string ApiVersion { get; set; } = string.Empty;

        public string Kind { get; set; } = string.Empty;

        public V1ObjectMeta Metadata { get; set; } = new();
    }
}
