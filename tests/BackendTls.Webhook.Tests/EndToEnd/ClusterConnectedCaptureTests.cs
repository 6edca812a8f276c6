using System.Net;
using System.Text.Json.Nodes;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Shared;
using BackendTls.Webhook.Certificates;
using BackendTls.Webhook.Controller;
using BackendTls.Webhook.Tests.Support;

namespace BackendTls.Webhook.Tests.EndToEnd;

/// <summary>
/// Transparent capture with the live destination index, every part a real process except the API server:
/// the API stand-in serves from inside the gateway's network namespace; the webhook process there runs the
/// controller (which writes the policy ConfigMap, mounted here as kubelet would) and the index; the sidecar
/// (args, uid and capture rules from the inject output) watches the index with its projected token. An
/// EndpointSlice change reaches the capture path through watch → index → long poll within the freshness
/// target, a Service without policy is known from the index alone, and the last index outlives the webhook.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ClusterConnectedCaptureTests(Xunit.Abstractions.ITestOutputHelper testOutput)
{
    private const string WebhookHost = "backendtls-webhook.backendtls-system.svc";
    private static readonly string SidecarDll = Path.Combine(AppContext.BaseDirectory, "backendtls-sidecar.dll");
    private static readonly string WebhookDll = Path.Combine(AppContext.BaseDirectory, "backendtls-webhook.dll");

    private static JsonObject Obj(string json) => JsonNode.Parse(json)!.AsObject();

    private static JsonObject WebSlice(params string[] addresses)
    {
        var slice = Obj("""
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"web-v4","namespace":"be1","labels":{"kubernetes.io/service-name":"web"}},
             "addressType":"IPv4","ports":[{"name":"https","port":8443}]}
            """);
        slice["endpoints"] = new JsonArray(addresses.Select(a => (JsonNode)new JsonObject { ["addresses"] = new JsonArray(a) }).ToArray());
        return slice;
    }

    /// <summary>The cluster: a policy target in be1, a Service without policy in be2, the gateway namespace labelled for injection.</summary>
    private static void SeedCluster(ApiStandIn api, string backendCaPem, string webhookCaPem)
    {
        api.Seed("namespaces", null, Obj("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"gw","labels":{"backendtls.io/inject":"enabled"}}}"""));
        api.Seed("services", "be1", Obj("""{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"be1"},"spec":{"clusterIP":"198.19.0.10","ports":[{"name":"https","port":8443}]}}"""));
        api.Seed("endpointslices", "be1", WebSlice("198.18.1.2"));
        api.Seed("services", "be2", Obj("""{"apiVersion":"v1","kind":"Service","metadata":{"name":"plain","namespace":"be2"},"spec":{"clusterIP":"198.19.0.20","ports":[{"name":"http","port":8443}]}}"""));
        api.Seed("endpointslices", "be2", Obj("""
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"plain-1","namespace":"be2","labels":{"kubernetes.io/service-name":"plain"}},
             "addressType":"IPv4","ports":[{"name":"http","port":8443}],"endpoints":[{"addresses":["198.18.2.2"]}]}
            """));
        var caMap = Obj("""{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"root-ca","namespace":"be1"},"data":{}}""");
        caMap["data"]!["ca.crt"] = backendCaPem;
        api.Seed("configmaps", "be1", caMap);
        api.Seed("backendtlspolicies", "be1", Obj("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"BackendTLSPolicy","metadata":{"name":"web","namespace":"be1","generation":1},
             "spec":{"targetRefs":[{"group":"","kind":"Service","name":"web"}],
                     "validation":{"caCertificateRefs":[{"group":"","kind":"ConfigMap","name":"root-ca"}],"hostname":"be1.backend.test"}}}
            """));
        var configuration = Obj("""
            {"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration","metadata":{"name":"backendtls-sidecar-injector"},
             "webhooks":[{"name":"inject.backendtls.io","clientConfig":{"service":{"name":"backendtls-webhook","namespace":"backendtls-system","path":"/mutate"}},
                          "admissionReviewVersions":["v1"],"sideEffects":"None"}]}
            """);
        configuration["webhooks"]![0]!["clientConfig"]!["caBundle"] = Convert.ToBase64String(System.Text.Encoding.ASCII.GetBytes(webhookCaPem));
        api.Seed("mutatingwebhookconfigurations", null, configuration);
    }

    [SkippableFact]
    public async Task EndpointChange_ReachesTheCapturePath_ThroughTheWebhooksIndex_AndTheLastIndexOutlivesTheWebhook()
    {
        Skip.IfNot(NetworkNamespace.Available && Nginx.Available && ExternalProcess.OnPath("setpriv") && ExternalProcess.OnPath("nft") && ExternalProcess.OnPath("curl"),
            "needs root, iproute2, nginx, setpriv, curl and nft");
        var work = Directory.CreateTempSubdirectory("index-e2e-").FullName;
        File.SetUnixFileMode(work, (UnixFileMode)0b111_101_101);
        using var backendCa = CertificateAuthority.Create("CN=Index Root");
        TransparentCaptureTests.WritePem(work, "web", backendCa.Issue("CN=web", dnsNames: ["be1.backend.test"]));
        var serving = ServingCertificates.CreateCaAndServing([WebhookHost], DateTimeOffset.UtcNow);
        File.WriteAllText(Path.Combine(work, "webhook.crt"), serving.CertificatePem);
        File.WriteAllText(Path.Combine(work, "webhook.key"), serving.KeyPem);
        File.WriteAllText(Path.Combine(work, "webhook-ca.crt"), serving.CaCertificatePem);
        await using var gw = await NetworkNamespace.CreateAsync("gw");
        await using var be1 = await NetworkNamespace.CreateAsync("be1");
        await using var be2 = await NetworkNamespace.CreateAsync("be2");
        var processes = new List<IAsyncDisposable>();
        try
        {
            await NetworkNamespace.LinkAsync(gw, "to-be1", ["198.18.1.1/24"], be1, "eth0", ["198.18.1.2/24", "198.18.1.5/24"]);
            await NetworkNamespace.LinkAsync(gw, "to-be2", ["198.18.2.1/24"], be2, "eth0", ["198.18.2.2/24"]);
            gw.WriteEtcFile("hosts", $"127.0.0.1 localhost\n127.0.0.1 {WebhookHost}\n");
            processes.Add(await Nginx.StartAsync($$"""
                  server {
                    listen 198.18.1.2:8443 ssl; listen 198.18.1.5:8443 ssl;
                    ssl_certificate {{work}}/web.crt; ssl_certificate_key {{work}}/web.key;
                    location / { return 200 "web sni=$ssl_server_name at=$server_addr\n"; }
                  }
                """, 8443, ns: be1));
            processes.Add(await Nginx.StartAsync("""  server { listen 198.18.2.2:8443; location / { return 200 "plain service\n"; } }""", 8443, ns: be2));

            // The API server stand-in, listening inside the gateway's namespace, and the webhook process beside it.
            await using var api = new ApiStandIn(gw.Listen(new IPEndPoint(IPAddress.Loopback, 6443)));
            await api.StartAsync();
            SeedCluster(api, backendCa.CertificatePem, serving.CaCertificatePem);
            var kubeconfig = Path.Combine(work, "kubeconfig");
            File.WriteAllText(kubeconfig, """
                apiVersion: v1
                kind: Config
                clusters: [{name: standin, cluster: {server: "http://127.0.0.1:6443"}}]
                users: [{name: webhook, user: {token: stand-in}}]
                contexts: [{name: standin, context: {cluster: standin, user: webhook}}]
                current-context: standin
                """);
            var webhook = gw.Start(["env", $"KUBECONFIG={kubeconfig}", "POD_NAME=webhook-0", "dotnet", WebhookDll, "serve", "--listen", "127.0.0.1:443", "--metrics", "127.0.0.1:9091",
                "--tls-cert-file", Path.Combine(work, "webhook.crt"), "--tls-key-file", Path.Combine(work, "webhook.key"), "--resync", "600"]);
            processes.Add(webhook);

            // The controller's ConfigMap, mounted as kubelet would: the bootstrap index names only policy targets' addresses.
            var configMap = await Eventually.HoldsAsync(() =>
            {
                var data = api.Get("configmaps", "gw", "backendtls-policy")?["data"]?.AsObject();
                return Task.FromResult((data?.ContainsKey(PolicyReconciler.IndexCaFile) == true, data?.ToJsonString() ?? $"no ConfigMap yet; webhook: {webhook.Output[^Math.Min(3000, webhook.Output.Length)..]}"));
            }, "the controller to write the gateway namespace's ConfigMap with index-ca.crt", TimeSpan.FromSeconds(30));
            var files = JsonNode.Parse(configMap)!.AsObject().ToDictionary(p => p.Key, p => (string)p.Value!);
            Assert.Equal(serving.CaCertificatePem, files[PolicyReconciler.IndexCaFile]);
            Assert.Contains("198.19.0.10", files["destinations.json"], StringComparison.Ordinal);
            Assert.DoesNotContain("198.18.1.2", files["destinations.json"], StringComparison.Ordinal);
            Assert.DoesNotContain("198.18.2.2", files["destinations.json"], StringComparison.Ordinal);
            var config = Path.Combine(work, "config");
            Directory.CreateDirectory(config);
            KubeletVolume.Publish(config, files);

            // The pod spec the webhook gives the gateway: capture rules, then the sidecar with its index flags and token.
            var injected = TransparentCaptureTests.Inject(TransparentCaptureTests.Manifests(backendCa.CertificatePem, "be1.backend.test", lateEndpoint: false, "nft"));
            var args = injected.Sidecar.Args.ToList();
            Assert.Equal($"https://{WebhookHost}/index/v1", args[args.IndexOf("--index-url") + 1]);
            var tokenFile = Path.Combine(work, "token");
            File.WriteAllText(tokenFile, "projected-token-of-gw-gateway");
            File.SetUnixFileMode(tokenFile, (UnixFileMode)0b110_100_100);
            api.Tokens["projected-token-of-gw-gateway"] = new StandInToken("system:serviceaccount:gw:gateway", "backendtls-index", "gateway-7d9f-x1");
            var tokenPath = args[args.IndexOf("--index-token-file") + 1];
            args = args.Select(a => a == injected.ConfigMountPath ? config : a == tokenPath ? tokenFile : a).ToList();
            string[] init = ["env", .. injected.CaptureInit.Env.Select(e => $"{e.Name}={e.Value.Replace("/run/xtables", work, StringComparison.Ordinal)}"),
                "dotnet", SidecarDll, .. injected.CaptureInit.Args];
            var (initCode, initOutput) = await gw.ExecAsync(init);
            Assert.True(initCode == 0, initOutput);
            var uid = injected.Sidecar.SecurityContext.RunAsUser!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var home = Directory.CreateDirectory(Path.Combine(work, "home")).FullName;
            File.SetUnixFileMode(home, (UnixFileMode)0b111_111_111);
            processes.Add(gw.Start(["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "env", $"HOME={home}", "dotnet", SidecarDll, .. args]));

            async Task<string> Metrics() => (await gw.ExecAsync("curl", "-s", "http://127.0.0.1:15090/metrics")).Output;
            await Eventually.HoldsAsync(async () =>
            {
                var metrics = await Metrics();
                return (metrics.Contains("backendtls_destination_index_watch_connected 1", StringComparison.Ordinal), metrics.Length == 0 ? "(no sidecar yet)" : "watch_connected not 1");
            }, "the sidecar watching the webhook's index", TimeSpan.FromSeconds(30));

            processes.Add(await Nginx.StartAsync("""
                  proxy_http_version 1.1;
                  server {
                    listen 127.0.0.1:8080;
                    location /web { proxy_pass http://198.18.1.2:8443; }
                    location /plain { proxy_pass http://198.18.2.2:8443; }
                    location /late { proxy_pass http://198.18.1.5:8443; }
                  }
                """, 8080, ns: gw, mainBlock: "user nobody nogroup;"));

            Task<(string Status, string Reason, string Body)> Get(string path) => TransparentCaptureTests.GatewayGetAsync(gw, path);

            // Neither endpoint is in the mounted file: both are known from the live index.
            Assert.Equal(("200", string.Empty, "web sni=be1.backend.test at=198.18.1.2\n"), await Get("/web"));
            Assert.Equal(("200", string.Empty, "plain service\n"), await Get("/plain"));
            var before = await Get("/late");
            Assert.Equal(("502", "unknown_destination"), (before.Status, before.Reason));

            // The EndpointSlice changes in the API: watch → webhook index → the sidecar's long poll, within 2 s.
            var changed = System.Diagnostics.Stopwatch.StartNew();
            api.Seed("endpointslices", "be1", WebSlice("198.18.1.2", "198.18.1.5"));
            await Eventually.HoldsAsync(async () =>
            {
                var late = await Get("/late");
                return (late.Status == "200" && late.Body == "web sni=be1.backend.test at=198.18.1.5\n", late.ToString());
            }, "the new endpoint reached as verified TLS", TimeSpan.FromSeconds(2.5));
            testOutput.WriteLine($"endpoint change to a verified request on the new endpoint: {changed.ElapsedMilliseconds} ms (includes the probes' own curl runs)");

            // The index is for sidecars only: a token that TokenReview does not accept is refused, saying why.
            var (_, refused) = await gw.ExecAsync("curl", "-s", "-w", "\n%{http_code}", "--cacert", Path.Combine(work, "webhook-ca.crt"),
                "-H", "Authorization: Bearer not-a-token", $"https://{WebhookHost}/index/v1");
            Assert.EndsWith("401", refused, StringComparison.Ordinal);
            Assert.Contains("not a valid service-account token for audience backendtls-index", refused, StringComparison.Ordinal);
            // The sidecar's token was reviewed once, however often it polled (the answer is cached).
            Assert.Equal(2, api.TokenReviews);

            // The webhook goes away: the sidecar says so and keeps its last index.
            await webhook.DisposeAsync();
            await Eventually.HoldsAsync(async () =>
            {
                var metrics = await Metrics();
                return (metrics.Contains("backendtls_destination_index_watch_connected 0", StringComparison.Ordinal), "watch still connected");
            }, "the sidecar to notice the webhook is gone", TimeSpan.FromSeconds(40));
            Assert.Equal("200", (await Get("/late")).Status);
            Assert.Equal("200", (await Get("/plain")).Status);
        }
        finally
        {
            foreach (var process in Enumerable.Reverse(processes))
            {
                await process.DisposeAsync();
            }

            Directory.Delete(work, recursive: true);
        }
    }
}
