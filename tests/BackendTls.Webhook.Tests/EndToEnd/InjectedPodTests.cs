using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using BackendTls.Policy.Rendering;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Shared;
using TestManifests = BackendTls.Tests.Shared.Manifests;
using BackendTls.Webhook.Injection;
using BackendTls.Webhook.Tests.Patching;
using BackendTls.Webhook.Tests.Support;
using k8s;
using k8s.Models;

namespace BackendTls.Webhook.Tests.EndToEnd;

/// <summary>
/// The webhook's output, run: a gateway pod goes through /mutate over HTTPS, the patch is applied, and
/// the sidecar is started exactly as the patched pod spec says (args, env, ports, probes, the mounted
/// config directory at its mount path's stand-in), with nginx as the gateway in front and a TLS backend
/// behind. Only --resolve (the cluster DNS stand-in) is added, through the environment.
/// </summary>
public sealed class InjectedPodTests
{
    private const string GatewayPod = """
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"gateway","namespace":"edge","labels":{"app":"gateway"}},
         "spec":{"containers":[{"name":"nginx","image":"nginx:1.27","ports":[{"containerPort":8080}]}]}}
        """;

    [SkippableFact]
    public async Task GatewayPod_FromTheWebhook_RunsAsItsSpecSays_AndProxiesWithVerification()
    {
        Skip.IfNot(Nginx.Available, "nginx is not installed (apt-get install nginx-light)");

        // 1. The API server's view: the pod goes through the webhook; the patch is applied independently.
        await using var webhook = await WebhookFixture.StartAsync();
        var pod = JsonNode.Parse(GatewayPod)!;
        var review = new JsonObject
        {
            ["apiVersion"] = "admission.k8s.io/v1",
            ["kind"] = "AdmissionReview",
            ["request"] = new JsonObject
            {
                ["uid"] = "e2e", ["kind"] = new JsonObject { ["group"] = "", ["version"] = "v1", ["kind"] = "Pod" },
                ["namespace"] = "edge", ["operation"] = "CREATE", ["object"] = pod.DeepClone(),
            },
        };
        using var answer = await webhook.Client.PostAsync("/mutate", new StringContent(review.ToJsonString(), Encoding.UTF8, "application/json"));
        var response = JsonNode.Parse(await answer.Content.ReadAsStringAsync())!["response"]!;
        var patch = JsonNode.Parse(Convert.FromBase64String((string)response["patch"]!))!.AsArray();
        var injected = KubernetesJson.Deserialize<V1Pod>(JsonPatchDiffTests.Apply(pod, patch).ToJsonString());
        var sidecar = injected.Spec.InitContainers.Single(c => c.Name == InjectorSettings.ContainerName);
        Assert.Equal("Always", sidecar.RestartPolicy); // native: starts before the gateway

        // 2. The kubelet's view: the policy ConfigMap mounted at the container's mountPath (here a directory
        //    standing in for it), the container's args and env as given.
        using var ca = CertificateAuthority.Create("CN=E2E Root");
        using var leaf = ca.Issue("CN=httpbin", dnsNames: ["www.example.com"]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        var mount = sidecar.VolumeMounts.Single(m => m.Name == InjectorSettings.VolumeName);
        var volume = injected.Spec.Volumes.Single(v => v.Name == mount.Name);
        var mounted = Directory.CreateTempSubdirectory("configmap-").FullName;
        var policy = TestManifests.Service("httpbin", "httpbin", 8000, "http") + TestManifests.CaConfigMap("root-ca", ca.CertificatePem, "httpbin")
                     + TestManifests.Policy("httpbin", "httpbin", "www.example.com", ns: "httpbin");
        BackendTls.Sidecar.Cli.RenderCommand.WriteDirectory(mounted, PolicyRenderer.RenderYaml([("policy.yaml", policy)]).Files);

        Assert.Equal("backendtls-policy", volume.ConfigMap.Name);
        var args = sidecar.Args.Select(a => a == mount.MountPath ? mounted : a).ToList();
        Assert.Equal("run", args[0]);
        var environment = (sidecar.Env ?? []).ToDictionary(e => e.Name, e => e.Value);
        environment["BACKENDTLS_RESOLVE"] = $"httpbin.httpbin.svc.cluster.local:8000:127.0.0.1:{backend.Port}";
        await using var process = ExternalProcess.Start("dotnet", [Path.Combine(AppContext.BaseDirectory, "backendtls-sidecar.dll"), .. args], environment);

        // kubelet runs the startup probe before it starts the gateway container.
        var probe = sidecar.StartupProbe.HttpGet;
        await process.WaitForHttpOkAsync($"http://127.0.0.1:{probe.Port.Value}{probe.Path}");
        var listen = IPEndPoint.Parse(args[args.IndexOf("--listen") + 1]);
        Assert.True(IPAddress.IsLoopback(listen.Address), "the injected proxy must listen on loopback only");

        // 3. The gateway container, sending plain HTTP to the sidecar on the pod's loopback.
        var gatewayPort = ExternalProcess.FreePort();
        await using var gateway = await Nginx.StartAsync($$"""
              server {
                listen 127.0.0.1:{{gatewayPort}};
                location / { proxy_pass http://{{listen}}; proxy_set_header Host httpbin.httpbin; proxy_http_version 1.1; proxy_set_header Connection ""; }
              }
            """, gatewayPort);
        using var client = new HttpClient();

        var body = JsonNode.Parse(await client.GetStringAsync($"http://127.0.0.1:{gatewayPort}/get"))!;

        Assert.Equal("www.example.com", (string?)body["sni"]);
        Assert.Equal("httpbin.httpbin", (string?)body["host"]);
        var metrics = await client.GetStringAsync($"http://127.0.0.1:{sidecar.Ports.Single().ContainerPort}/metrics");
        Assert.Contains("result=\"ok\",reason=\"verified\"", metrics, StringComparison.Ordinal);
        Assert.Contains("\"EventId\":200", process.Output, StringComparison.Ordinal); // --log-format json from the pod spec
        Directory.Delete(mounted, true);
    }
}
