using System.Security.Cryptography.X509Certificates;
using BackendTls.Policy.Rendering;
using BackendTls.Policy.Yaml;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Shared;
using BackendTls.Tests.Shared.Grpc;
using BackendTls.Webhook.Cli;
using BackendTls.Webhook.Injection;
using k8s;
using k8s.Models;

namespace BackendTls.Webhook.Tests.EndToEnd;

/// <summary>
/// Transparent capture for real, without Kubernetes: an unmodified nginx gateway in its own network
/// namespace dials pod IPs in two backend namespaces (addresses from 198.18.0.0/15 and fd00:18::/32, only
/// inside namespaces this test makes). The capture rules are applied exactly as the injected pod spec says
/// (the capture-init container's args and env from the inject output) and the sidecar runs as the uid and
/// with the args the spec gives it. Torn down whatever happens.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class TransparentCaptureTests
{
    private const string Web = "be1.backend.test";
    private static readonly string SidecarDll = Path.Combine(AppContext.BaseDirectory, "backendtls-sidecar.dll");

    /// <summary>What a cluster would hold: two backend Services with policies, one without, the gateway.</summary>
    internal static string Manifests(string caPem, string wrongHostname, bool lateEndpoint, string mode) => Cluster(caPem, wrongHostname,
        lateEndpoint ? "198.18.1.2, 198.18.1.4, 198.18.1.5, 198.18.1.6, 198.18.1.7" : "198.18.1.2, 198.18.1.4, 198.18.1.6, 198.18.1.7", mode);

    private static string Cluster(string caPem, string wrongHostname, string webEndpoints, string mode) => $$$"""
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: be1}
        spec: {clusterIP: 198.19.0.10, ports: [{name: https, port: 8443}]}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-v4, namespace: be1, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        ports: [{name: https, port: 8443}]
        endpoints: [{addresses: [{{{webEndpoints}}}]}]
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-v6, namespace: be1, labels: {kubernetes.io/service-name: web}}
        addressType: IPv6
        ports: [{name: https, port: 8443}]
        endpoints: [{addresses: ["fd00:18:1::2"]}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: plain, namespace: be2}
        spec: {ports: [{name: http, port: 8443}]}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: plain-1, namespace: be2, labels: {kubernetes.io/service-name: plain}}
        addressType: IPv4
        ports: [{name: http, port: 8443}]
        endpoints: [{addresses: [198.18.2.2]}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: wrong, namespace: be2}
        spec: {ports: [{name: https, port: 9443}]}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: wrong-1, namespace: be2, labels: {kubernetes.io/service-name: wrong}}
        addressType: IPv4
        ports: [{name: https, port: 9443}]
        endpoints: [{addresses: [198.18.2.2]}]
        ---
        {{{(BackendTls.Tests.Shared.Manifests.CaConfigMap("root-ca", caPem, "be1"))}}}
        {{{(BackendTls.Tests.Shared.Manifests.CaConfigMap("root-ca", caPem, "be2"))}}}
        {{{(BackendTls.Tests.Shared.Manifests.Policy("web", "web", Web, ns: "be1"))}}}
        {{{(BackendTls.Tests.Shared.Manifests.Policy("wrong", "wrong", wrongHostname, ns: "be2"))}}}
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: gateway, namespace: gw}
        spec:
          selector: {matchLabels: {app: gateway}}
          template:
            metadata:
              labels: {app: gateway}
              annotations: {backendtls.io/iptables-mode: {{{mode}}}}
            spec:
              containers: [{name: nginx, image: "nginx:1.27"}]
        """;

    internal sealed record Injected(V1Container CaptureInit, V1Container Sidecar, string ConfigMountPath);

    /// <summary>The webhook's own inject CLI on the manifests: the pod spec the cluster would run.</summary>
    internal static Injected Inject(string manifests)
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, manifests);
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            Assert.True(InjectCommand.Run(["-f", file], new StringReader(string.Empty), stdout, stderr) == 0, stderr.ToString());
            var deployment = YamlDocuments.Parse(stdout.ToString(), "inject output", typedScalars: true)
                .Single(d => (string?)d["kind"] == "Deployment");
            var pod = KubernetesJson.Deserialize<V1Deployment>(deployment.ToJsonString()).Spec.Template.Spec;
            var sidecar = pod.InitContainers.Single(c => c.Name == InjectorSettings.ContainerName);
            return new Injected(pod.InitContainers.Single(c => c.Name == InjectorSettings.CaptureInitName), sidecar,
                sidecar.VolumeMounts.Single(m => m.Name == InjectorSettings.VolumeName).MountPath);
        }
        finally
        {
            File.Delete(file);
        }
    }

    public static TheoryData<string, string> Modes => new()
    {
        { "nft", "nft" },
        { "iptables-legacy", "iptables-legacy" },
        { "iptables-nft", "iptables-nft" },
    };

    [SkippableTheory]
    [MemberData(nameof(Modes))]
    public async Task UnmodifiedGateway_DialingPodIps_GetsVerifiedTls_OthersPassThrough(string mode, string tool)
    {
        Skip.IfNot(NetworkNamespace.Available && Nginx.Available && ExternalProcess.OnPath("setpriv") && ExternalProcess.OnPath(tool) && ExternalProcess.OnPath("curl"),
            $"needs root, iproute2, nginx, setpriv, curl and {tool}");
        var work = Directory.CreateTempSubdirectory("capture-e2e-").FullName;
        File.SetUnixFileMode(work, (UnixFileMode)0b111_101_101);
        using var ca = CertificateAuthority.Create("CN=Capture Root");
        WritePem(work, "web", ca.Issue("CN=web", dnsNames: [Web]));
        WritePem(work, "wrong", ca.Issue("CN=wrong", dnsNames: ["wrong.example.com"]));
        await using var gw = await NetworkNamespace.CreateAsync("gw");
        await using var be1 = await NetworkNamespace.CreateAsync("be1");
        await using var be2 = await NetworkNamespace.CreateAsync("be2");
        var processes = new List<IAsyncDisposable>();
        try
        {
            await NetworkNamespace.LinkAsync(gw, "to-be1", ["198.18.1.1/24", "fd00:18:1::1/64"], be1, "eth0",
                ["198.18.1.2/24", "198.18.1.3/24", "198.18.1.4/24", "198.18.1.5/24", "198.18.1.6/24", "198.18.1.7/24", "fd00:18:1::2/64"]);
            await NetworkNamespace.LinkAsync(gw, "to-be2", ["198.18.2.1/24"], be2, "eth0", ["198.18.2.2/24"]);

            // Backends: the policy target (TLS, its own SAN) on .2 and (later) .5, a WebSocket server and a
            // gRPC server of the same Service on .6 and .7; plain HTTP on .3, which no Service names; .4 is an endpoint that refuses.
            // be2: a Service without policy, and one whose certificate does not match its policy.
            var webSockets = await WebSocketBackend.StartAsync(ca.Issue("CN=web", dnsNames: [Web]),
                be1.Listen(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("198.18.1.6"), 8443)));
            processes.Add(webSockets);
            EchoService.Seen.Clear();
            processes.Add(await GrpcBackend.StartAsync(ca.Issue("CN=web", dnsNames: [Web]),
                be1.Listen(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("198.18.1.7"), 8443))));
            processes.Add(await Nginx.StartAsync($$"""
                  server {
                    listen 198.18.1.2:8443 ssl; listen [fd00:18:1::2]:8443 ssl; listen 198.18.1.5:8443 ssl;
                    ssl_certificate {{work}}/web.crt; ssl_certificate_key {{work}}/web.key;
                    location / { return 200 "web sni=$ssl_server_name host=$host uri=$request_uri at=$server_addr\n"; }
                  }
                  server { listen 198.18.1.3:8443; location / { return 200 "unnamed plain\n"; } }
                """, 8443, ns: be1));
            processes.Add(await Nginx.StartAsync($$"""
                  server { listen 198.18.2.2:8443; location / { return 200 "plain service\n"; } }
                  server {
                    listen 198.18.2.2:9443 ssl;
                    ssl_certificate {{work}}/wrong.crt; ssl_certificate_key {{work}}/wrong.key;
                    location / { return 200 "wrong sni=$ssl_server_name\n"; }
                  }
                """, 9443, ns: be2));

            // The pod spec the webhook gives the gateway, and the policy ConfigMap the controller renders.
            var manifests = Manifests(ca.CertificatePem, "right.example.com", lateEndpoint: false, mode);
            var injected = Inject(manifests);
            Assert.Contains("--capture-ports", injected.CaptureInit.Args);
            Assert.Equal("8443,9443", injected.CaptureInit.Args[injected.CaptureInit.Args.IndexOf("--capture-ports") + 1]);
            var config = Path.Combine(work, "config");
            Directory.CreateDirectory(config);
            PublishConfig(config, manifests);

            // capture-init as its container says (root, its args and env), twice: the second run changes nothing.
            var env = injected.CaptureInit.Env.Select(e => $"{e.Name}={e.Value.Replace("/run/xtables", work, StringComparison.Ordinal)}");
            string[] init = ["env", .. env, "dotnet", SidecarDll, .. injected.CaptureInit.Args];
            var (firstCode, first) = await gw.ExecAsync(init);
            Assert.True(firstCode == 0, first);
            Assert.Contains($"using {mode}", first, StringComparison.Ordinal);
            var once = await RulesAsync(gw, mode);
            var (secondCode, second) = await gw.ExecAsync(init);
            Assert.True(secondCode == 0, second);
            Assert.Equal(once, await RulesAsync(gw, mode));

            // The sidecar as its container says: its uid, its args, the mounted config at the mount path's stand-in.
            var uid = injected.Sidecar.SecurityContext.RunAsUser!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var args = injected.Sidecar.Args.Select(a => a == injected.ConfigMountPath ? config : a).ToList();
            var home = Directory.CreateDirectory(Path.Combine(work, "home")).FullName;
            File.SetUnixFileMode(home, (UnixFileMode)0b111_111_111);
            processes.Add(gw.Start(["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "env", $"HOME={home}", "dotnet", SidecarDll, .. args]));
            await Eventually.HoldsAsync(async () =>
            {
                var (code, body) = await gw.ExecAsync("curl", "-s", "http://127.0.0.1:15090/healthz/ready");
                return (code == 0 && body.Contains("\"ready\": true", StringComparison.Ordinal) && body.Contains("[::1]:15002", StringComparison.Ordinal), body);
            }, "the sidecar ready with both capture listeners", TimeSpan.FromSeconds(30));

            // The gateway: nginx as it would be configured anyway, dialling pod IPs; workers run as nobody.
            processes.Add(await Nginx.StartAsync("""
                  upstream web_with_dead_endpoint { server 198.18.1.4:8443 max_fails=0; server 198.18.1.2:8443 max_fails=0; }
                  proxy_http_version 1.1;
                  proxy_set_header Connection "";
                  server {
                    listen 127.0.0.1:8080;
                    location /web { proxy_pass http://198.18.1.2:8443; proxy_set_header Host web.example; }
                    location /web6 { proxy_pass http://[fd00:18:1::2]:8443; proxy_set_header Host web.example; }
                    location /plain { proxy_pass http://198.18.2.2:8443; }
                    location /wrong { proxy_pass http://198.18.2.2:9443; }
                    location /own-tls { proxy_pass https://198.18.1.2:8443; proxy_ssl_server_name on; proxy_ssl_name be1.backend.test; }
                    location /unknown { proxy_pass http://198.18.1.3:8443; }
                    location /late { proxy_pass http://198.18.1.5:8443; }
                    location /retry { proxy_pass http://web_with_dead_endpoint; proxy_next_upstream error timeout; }
                  }
                """, 8080, ns: gw, mainBlock: "user nobody nogroup;"));

            Task<(string Status, string Reason, string Body)> Get(string path) => GatewayGetAsync(gw, path);

            // 1. A policy target: verified TLS to exactly the pod the gateway chose, the policy's SNI, the gateway's Host.
            Assert.Equal(("200", string.Empty, "web sni=be1.backend.test host=web.example uri=/web at=198.18.1.2\n"), await Get("/web"));
            Assert.Equal(("200", string.Empty, "web sni=be1.backend.test host=web.example uri=/web6 at=fd00:18:1::2\n"), await Get("/web6"));
            // 2. A certificate that does not match its policy: 502 with the reason.
            var wrong = await Get("/wrong");
            Assert.Equal(("502", "hostname_mismatch"), (wrong.Status, wrong.Reason));
            // 3. A Service without a policy on a captured port: passed through as it is.
            var plain = await Get("/plain");
            Assert.Equal(("200", "plain service\n"), (plain.Status, plain.Body));
            // 4. The gateway's own TLS: passed through untouched (its SNI, its handshake).
            var ownTls = await Get("/own-tls");
            Assert.Equal(("200", "web sni=be1.backend.test host=198.18.1.2 uri=/own-tls at=198.18.1.2\n"), (ownTls.Status, ownTls.Body));
            // 5. A destination no Service names: held, then denied with the reason.
            var unknown = await Get("/unknown");
            Assert.Equal(("502", "unknown_destination"), (unknown.Status, unknown.Reason));
            // 6. An endpoint that refuses: the gateway's connection is reset, so its own next-upstream retry works.
            for (var i = 0; i < 4; i++)
            {
                Assert.Equal("200", (await Get("/retry")).Status);
            }

            // 7. WebSocket from the gateway's namespace to a pod IP: captured, upgraded over verified TLS, both ways.
            using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            using (var socket = await WebSocketBackend.ConnectThroughAsync(() => gw.NewSocket(System.Net.Sockets.AddressFamily.InterNetwork),
                new System.Net.IPEndPoint(System.Net.IPAddress.Parse("198.18.1.6"), 8443), new Uri("ws://web.example/echo"), timeout.Token))
            {
                await socket.SendAsync("captured"u8.ToArray(), System.Net.WebSockets.WebSocketMessageType.Text, true, timeout.Token);
                var (_, echoed) = await WebSocketBackend.ReceiveAsync(socket, timeout.Token);
                Assert.Equal("captured", System.Text.Encoding.UTF8.GetString(echoed));
                await socket.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, null, timeout.Token);
                Assert.Equal(Web, Assert.Single(webSockets.Snis));
            }

            // 8. gRPC (h2c with prior knowledge) from the gateway's namespace to a pod IP: captured, each call
            //    verified TLS with ALPN h2, a server stream and the trailers intact.
            using (var channel = GrpcClients.Channel("web.example", () => gw.NewSocket(System.Net.Sockets.AddressFamily.InterNetwork),
                new System.Net.IPEndPoint(System.Net.IPAddress.Parse("198.18.1.7"), 8443)))
            {
                var invoker = channel.CreateCallInvoker();
                using var unary = invoker.AsyncUnaryCall(EchoGrpc.Unary, null, new Grpc.Core.CallOptions(), "captured"u8.ToArray());
                Assert.Equal("captured", System.Text.Encoding.ASCII.GetString(await unary.ResponseAsync));
                Assert.Equal("yes", unary.GetTrailers().GetValue("x-echo-trailer"));
                using var stream = invoker.AsyncServerStreamingCall(EchoGrpc.Split, null, new Grpc.Core.CallOptions(), "3,10"u8.ToArray());
                var messages = 0;
                while (await stream.ResponseStream.MoveNext(CancellationToken.None))
                {
                    messages++;
                }

                Assert.Equal(3, messages);
                Assert.All(EchoService.Seen, seen => Assert.Equal(Web, seen.Sni));
            }

            // 9. Live changes: an endpoint added to the Service, and a policy corrected, apply within 2 s.
            var before = await Get("/late");
            Assert.Equal(("502", "unknown_destination"), (before.Status, before.Reason));
            PublishConfig(config, Manifests(ca.CertificatePem, "wrong.example.com", lateEndpoint: true, mode));
            await Eventually.HoldsAsync(async () =>
            {
                var late = await Get("/late");
                return (late.Status == "200" && late.Body.StartsWith("web sni=be1.backend.test", StringComparison.Ordinal), late.ToString());
            }, "the new endpoint reached as verified TLS", TimeSpan.FromSeconds(2.5));
            await Eventually.HoldsAsync(async () =>
            {
                var corrected = await Get("/wrong");
                return (corrected.Status == "200", corrected.ToString());
            }, "the corrected policy applied", TimeSpan.FromSeconds(2.5));

            // No loop: the sidecar's own connections left through the uid rule, and every outcome was counted.
            var (_, metrics) = await gw.ExecAsync("curl", "-s", "http://127.0.0.1:15090/metrics");
            foreach (var outcome in new[] { "tls", "passthrough", "passthrough_tls", "denied", "reset" })
            {
                Assert.Contains($"backendtls_captured_connections_total{{outcome=\"{outcome}\"", metrics, StringComparison.Ordinal);
            }

            Assert.Matches(mode == "nft" ? @"skuid \d+ counter packets [1-9]" : @"\n\s*[1-9]\d*\s+\d+\s+RETURN\s+.*owner UID match", await RulesAsync(gw, mode, counters: true));
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

    /// <summary>A request as the gateway's client makes it (curl in the gateway's namespace, to its nginx on 8080): status, x-backendtls-error, body.</summary>
    internal static async Task<(string Status, string Reason, string Body)> GatewayGetAsync(NetworkNamespace gw, string path)
    {
        var (_, output) = await gw.ExecAsync("curl", "-s", "-m", "10", "-D", "-", $"http://127.0.0.1:8080{path}");
        var split = output.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var head = split < 0 ? output : output[..split];
        var reason = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("x-backendtls-error:", StringComparison.OrdinalIgnoreCase))?[19..].Trim() ?? string.Empty;
        return (head.Length > 12 ? head[9..12] : "none", reason, split < 0 ? output : output[(split + 4)..]);
    }

    internal static void WritePem(string directory, string name, X509Certificate2 leaf)
    {
        using (leaf)
        {
            File.WriteAllText(Path.Combine(directory, name + ".crt"), leaf.ExportCertificatePem());
            File.WriteAllText(Path.Combine(directory, name + ".key"), leaf.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        }
    }

    /// <summary>As the controller and kubelet would: render, then swap the mounted directory's ..data.</summary>
    private static void PublishConfig(string directory, string manifests) =>
        KubeletVolume.Publish(directory, PolicyRenderer.RenderYaml([("cluster.yaml", manifests)]).Files);

    private static async Task<string> RulesAsync(NetworkNamespace ns, string mode, bool counters = false)
    {
        var (_, rules) = mode == "nft"
            ? await ns.ExecAsync("nft", "list", "table", "inet", "btls_capture")
            : counters
                ? await ns.ExecAsync($"iptables{(mode == "iptables-legacy" ? "-legacy" : "-nft")}", "-t", "nat", "-L", "BTLS_OUTPUT", "-v", "-n", "-x")
                : await ns.ExecAsync($"iptables{(mode == "iptables-legacy" ? "-legacy" : "-nft")}-save", "-t", "nat");
        // Counters and the save header's timestamp change between listings; the rules themselves must not.
        return counters ? rules : System.Text.RegularExpressions.Regex.Replace(rules, @"counter packets \d+ bytes \d+|\[\d+:\d+\]|^#.*$", string.Empty, System.Text.RegularExpressions.RegexOptions.Multiline);
    }
}
