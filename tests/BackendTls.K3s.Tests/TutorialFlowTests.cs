using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using BackendTls.Policy.Yaml;
using BackendTls.Webhook.Certificates;
using k8s;
using k8s.Models;

namespace BackendTls.K3s.Tests;

/// <summary>
/// README's cluster section as a user on a laptop with Docker would run it: Gateway API CRDs, our three
/// images loaded into k3s, manifests/ applied (self-managed certificates), the tutorial's httpbin serving TLS
/// with a SAN certificate from the tutorial's CA, ingress-nginx (no BackendTLSPolicy support) with its
/// plain-HTTP Ingress to httpbin, the tutorial's policy, the ingress-nginx namespace labelled and the
/// controller restarted. Then, with no change to ingress-nginx: a request through it is 200 from httpbin
/// over TLS (the sidecar captured the connection to the pod IP), the sidecar counted a verified handshake,
/// the policy is Accepted/ResolvedRefs/PortsCaptured. Then a wrong hostname: 502 with the reason, and the
/// status stays True (a runtime failure, not a config error).
/// Needs the images built first (README: docker build ... backendtls-sidecar, backendtls-capture-init,
/// backendtls-webhook, all :0.1.0) and network for ingress-nginx's manifest and images.
/// </summary>
public sealed class TutorialFlowTests(K3sCluster cluster) : IClassFixture<K3sCluster>
{
    private const string IngressNginxManifest = "https://raw.githubusercontent.com/kubernetes/ingress-nginx/controller-v1.12.1/deploy/static/provider/cloud/deploy.yaml";
    private const string Gateway = "http://ingress-nginx-controller.ingress-nginx/headers";
    private static readonly string Root = BackendTls.Tests.Shared.Repository.Root;

    [SkippableFact]
    public async Task TutorialFlow_IngressNginxUnchanged_CapturedToVerifiedTls_StatusAccepted_ThenWrongHostname502()
    {
        Skip.If(cluster.Unavailable is not null, cluster.Unavailable);
        var client = cluster.Client!;
        await LoadImageAsync("backendtls-sidecar:0.1.0");
        await LoadImageAsync("backendtls-capture-init:0.1.0");
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

        // 2. httpbin serving TLS with a SAN certificate; 3. ingress-nginx and its plain-HTTP route to it.
        var bundle = ServingCertificates.CreateCaAndServing(["www.example.com"], DateTimeOffset.UtcNow);
        await ApplyYamlAsync(client, HttpbinManifests(bundle));
        using (var http = new HttpClient())
        {
            await ApplyYamlAsync(client, await http.GetStringAsync(new Uri(IngressNginxManifest)));
        }

        await WaitAsync(async () => (await client.AppsV1.ReadNamespacedDeploymentAsync("ingress-nginx-controller", "ingress-nginx")).Status?.ReadyReplicas >= 1, "ingress-nginx ready");
        await WaitAsync(async () => { await ApplyYamlAsync(client, IngressManifest); return true; }, "the Ingress accepted (ingress-nginx's admission webhook up)");
        var (plain, plainBody) = await CurlAsync(client, Gateway);
        Assert.True(plain == 400, $"before the sidecar ingress-nginx sends plain HTTP to the TLS pod: expected 400, got {plain}: {plainBody}");

        // 4. The policy; opt the gateway's namespace in; restart it so the capture rules are set at start.
        await ApplyYamlAsync(client, PolicyManifest);
        var ingressNamespace = await client.CoreV1.ReadNamespaceAsync("ingress-nginx");
        ingressNamespace.Metadata.Labels["backendtls.io/inject"] = "enabled";
        await client.CoreV1.ReplaceNamespaceAsync(ingressNamespace, "ingress-nginx");
        var controller = await client.AppsV1.ReadNamespacedDeploymentAsync("ingress-nginx-controller", "ingress-nginx");
        controller.Spec.Template.Metadata.Annotations ??= new Dictionary<string, string>();
        controller.Spec.Template.Metadata.Annotations["kubectl.kubernetes.io/restartedAt"] = DateTimeOffset.UtcNow.ToString("O");
        await client.AppsV1.ReplaceNamespacedDeploymentAsync(controller, "ingress-nginx-controller", "ingress-nginx");
        await WaitAsync(async () => await InjectedControllerAsync(client) is { } pod && pod.Status?.ContainerStatuses?.All(c => c.Ready) == true, "the restarted ingress-nginx pod injected and ready");
        var injected = (await InjectedControllerAsync(client))!;
        Assert.Contains("\"mode\":\"transparent\"", injected.Metadata.Annotations["backendtls.io/capture-config"], StringComparison.Ordinal);
        await ApplyYamlAsync(client, MetricsService);

        // 5. The same route is now verified TLS with SNI www.example.com.
        await WaitAsync(async () => (await CurlAsync(client, Gateway)).Status == 200, "200 through ingress-nginx");
        var (status, body) = await CurlAsync(client, Gateway);
        Assert.Equal(200, status);
        Assert.Contains("www.example.com", body, StringComparison.Ordinal);
        var metrics = (await CurlAsync(client, "http://gateway-metrics.ingress-nginx:15090/metrics")).Body;
        Assert.Contains("outcome=\"tls\"", metrics, StringComparison.Ordinal);
        Assert.Contains("result=\"ok\",reason=\"verified\"", metrics, StringComparison.Ordinal);
        await WaitAsync(async () => Conditions(await ReadPolicyAsync(client)).Any(c => (string?)c!["type"] == "backendtls.io/PortsCaptured" && (string?)c["status"] == "True"), "PortsCaptured");
        Assert.All(Conditions(await ReadPolicyAsync(client)), c => Assert.Equal("True", (string?)c!["status"]));

        // 6. Wrong hostname: the backend's certificate does not match; 502 with the reason; status unchanged.
        var policy = await ReadPolicyAsync(client);
        policy["spec"]!["validation"]!["hostname"] = "wrong.example.com";
        await client.CustomObjects.ReplaceNamespacedCustomObjectAsync(policy, "gateway.networking.k8s.io", "v1", "httpbin", "backendtlspolicies", "httpbin-backend-tls");
        await WaitAsync(async () => (await CurlAsync(client, Gateway)).Status == 502, "wrong hostname refused (kubelet ConfigMap propagation)", TimeSpan.FromMinutes(3));
        Assert.Contains("hostname_mismatch", (await CurlAsync(client, Gateway)).Body, StringComparison.Ordinal);
        Assert.All(Conditions(await ReadPolicyAsync(client)), c => Assert.Equal("True", (string?)c!["status"]));
    }

    private static JsonArray Conditions(JsonNode policy) => policy["status"]!["ancestors"]![0]!["conditions"]!.AsArray();

    private static async Task<V1Pod?> InjectedControllerAsync(IKubernetes client) =>
        (await client.CoreV1.ListNamespacedPodAsync("ingress-nginx", labelSelector: "app.kubernetes.io/component=controller")).Items
            .FirstOrDefault(p => p.Metadata.DeletionTimestamp is null && p.Metadata.Annotations?.ContainsKey("backendtls.io/status") == true);

    private static string HttpbinManifests(CertificateBundle bundle) => $$$"""
        apiVersion: v1
        kind: Namespace
        metadata: {name: httpbin}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: httpbin-tls, namespace: httpbin}
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
                args: ["-port", "8443", "-https-cert-file", "/tls/tls.crt", "-https-key-file", "/tls/tls.key"]
                volumeMounts: [{name: tls, mountPath: /tls, readOnly: true}]
              volumes: [{name: tls, secret: {secretName: httpbin-tls}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: httpbin, namespace: httpbin}
        spec:
          selector: {app: httpbin}
          ports: [{name: https, port: 8000, targetPort: 8443}]
        """;

    private const string IngressManifest = """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: httpbin, namespace: httpbin}
        spec:
          ingressClassName: nginx
          rules:
          - host: www.example.com
            http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: httpbin, port: {number: 8000}}}}]}
        """;

    private const string PolicyManifest = """
        apiVersion: gateway.networking.k8s.io/v1
        kind: BackendTLSPolicy
        metadata: {name: httpbin-backend-tls, namespace: httpbin}
        spec:
          targetRefs: [{group: "", kind: Service, name: httpbin}]
          validation:
            caCertificateRefs: [{group: "", kind: Secret, name: httpbin-root-ca}]
            hostname: www.example.com
        """;

    private const string MetricsService = """
        apiVersion: v1
        kind: Service
        metadata: {name: gateway-metrics, namespace: ingress-nginx}
        spec:
          selector: {app.kubernetes.io/component: controller}
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
                Containers = [new V1Container { Name = "curl", Image = "docker.io/curlimages/curl:8.10.1", Args = ["-s", "-H", "Host: www.example.com", "-w", "\n%{http_code}", url] }],
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
