using System.Net;
using System.Net.Sockets;
using BackendTls.Policy.Rendering;
using BackendTls.Policy.Cli;
using BackendTls.Sidecar.Demo;
using BackendTls.Sidecar.Hosting;

namespace BackendTls.Sidecar.Cli;

/// <summary>
/// <c>backendtls-sidecar demo</c>: the whole product on loopback, no cluster. It makes a private CA and a
/// backend certificate, starts a TLS backend, renders a BackendTLSPolicy for it with the same code as
/// <c>render</c>, starts the sidecar, sends plain HTTP through it, and prints what happened. Then it
/// shows the tutorial's certificate (no subjectAltName) being refused, with the reason.
/// </summary>
internal static class DemoCommand
{
    private const string Hostname = "www.example.com";

    private static FlagSet Flags() => new("demo", "backendtls-sidecar demo   a self-contained demo on loopback: CA, TLS backend, policy, sidecar, requests (no cluster)");

    public static string Usage => Flags().Usage;

    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter output, TextWriter error)
    {
        var flags = Flags();
        var problems = flags.Parse(args, _ => null);
        if (flags.HelpRequested || problems.Count > 0)
        {
            await (problems.Count > 0 ? error : output).WriteLineAsync(string.Join("\n", problems.Select(p => "demo: " + p).Append(flags.Usage)));
            return problems.Count > 0 ? 2 : 0;
        }

        var work = Directory.CreateTempSubdirectory("backendtls-demo-");
        try
        {
            using var ca = CertificateAuthority.Create("CN=BackendTLS Demo Root CA, O=demo");
            using var goodCertificate = ca.Issue("CN=httpbin", dnsNames: [Hostname]);
            using var seedCertificate = ca.Issue("CN=*, O=any domain"); // the tutorial's: no subjectAltName
            await using var good = await EchoBackend.StartAsync(goodCertificate);
            await using var seed = await EchoBackend.StartAsync(seedCertificate);

            output.WriteLine($"1. Private CA \"{ca.Certificate.Subject}\"; backend certificate \"{goodCertificate.Subject}\" with subjectAltName DNS:{Hostname}");
            output.WriteLine($"   TLS backend (echo server) on 127.0.0.1:{good.Port}; a second one with the tutorial's CN=* certificate on 127.0.0.1:{seed.Port}");

            var configDir = Path.Combine(work.FullName, "config");
            var rendered = PolicyRenderer.RenderYaml([("demo.yaml", Manifests(ca.CertificatePem))]);
            RenderCommand.WriteDirectory(configDir, rendered.Files);

            output.WriteLine($"2. Rendered BackendTLSPolicies into {configDir}:");
            foreach (var policy in rendered.Policies)
            {
                output.WriteLine($"   {policy.Policy}: Accepted={policy.Accepted.Status} ({policy.Accepted.Reason}), applies to {string.Join(", ", policy.AppliedTargets)}");
            }

            var listen = new IPEndPoint(IPAddress.Loopback, FreePort());
            var admin = new IPEndPoint(IPAddress.Loopback, FreePort());
            var options = new SidecarOptions
            {
                ConfigDir = configDir,
                Listen = listen,
                Admin = admin,
                LogLevel = LogLevel.Warning,
                Resolve = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
                {
                    ["httpbin.demo.svc.cluster.local:8443"] = $"127.0.0.1:{good.Port}",
                    ["legacy.demo.svc.cluster.local:8443"] = $"127.0.0.1:{seed.Port}",
                },
            };
            await using var sidecar = SidecarHost.Build(options, logging => logging.ClearProviders());
            await sidecar.StartAsync();
            output.WriteLine($"3. Sidecar listening on http://{listen} (admin http://{admin}); --resolve points the Services at the local backends");

            using var client = new HttpClient();
            output.WriteLine($"4. curl -H 'Host: {Hostname}' http://{listen}/headers");
            await SendAsync(client, $"http://{listen}/headers", Hostname, output);

            output.WriteLine($"5. The same through the tutorial's certificate (CN=*, no subjectAltName): curl -H 'Host: legacy.demo' http://{listen}/headers");
            await SendAsync(client, $"http://{listen}/headers", "legacy.demo", output);

            output.WriteLine("6. A host no policy names is not forwarded: curl -H 'Host: example.org' ...");
            await SendAsync(client, $"http://{listen}/", "example.org", output);

            output.WriteLine($"7. Metrics (curl http://{admin}/metrics | grep ^backendtls_):");
            var metrics = await client.GetStringAsync($"http://{admin}/metrics");
            foreach (var line in metrics.Split('\n').Where(IsInterestingMetric))
            {
                output.WriteLine("   " + line);
            }

            await sidecar.StopAsync();
            return 0;
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    private static async Task SendAsync(HttpClient client, string url, string host, TextWriter output)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.Host = host;
        using var response = await client.SendAsync(request);
        var reason = response.Headers.TryGetValues("x-backendtls-error", out var values) ? $" (x-backendtls-error: {string.Join(",", values)})" : string.Empty;
        output.WriteLine($"   HTTP {(int)response.StatusCode}{reason}");
        foreach (var line in (await response.Content.ReadAsStringAsync()).TrimEnd().Split('\n'))
        {
            output.WriteLine("   | " + line);
        }
    }

    private static bool IsInterestingMetric(string line) =>
        line.StartsWith("backendtls_requests_total", StringComparison.Ordinal)
        || line.StartsWith("backendtls_upstream_handshakes_total", StringComparison.Ordinal)
        || line.StartsWith("backendtls_backend_certificate_expiry", StringComparison.Ordinal)
        || line.StartsWith("backendtls_config_reloads_total", StringComparison.Ordinal);

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>The manifests a user would kubectl apply: two Services, the CA ConfigMap, two policies.</summary>
    private static string Manifests(string caPem)
    {
        var indented = string.Join("\n", caPem.TrimEnd().Split('\n').Select(l => "    " + l));
        return $$"""
            apiVersion: v1
            kind: Service
            metadata: {name: httpbin, namespace: demo}
            spec:
              ports: [{name: https, port: 8443, targetPort: 8443}]
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: legacy, namespace: demo}
            spec:
              ports: [{name: https, port: 8443, targetPort: 8443}]
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: demo-root-ca, namespace: demo}
            data:
              ca.crt: |
            {{indented}}
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: BackendTLSPolicy
            metadata: {name: httpbin-backend-tls, namespace: demo}
            spec:
              targetRefs: [{group: "", kind: Service, name: httpbin}]
              validation:
                caCertificateRefs: [{group: "", kind: ConfigMap, name: demo-root-ca}]
                hostname: {{Hostname}}
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: BackendTLSPolicy
            metadata: {name: legacy-backend-tls, namespace: demo}
            spec:
              targetRefs: [{group: "", kind: Service, name: legacy}]
              validation:
                caCertificateRefs: [{group: "", kind: ConfigMap, name: demo-root-ca}]
                hostname: legacy.example.com
            """;
    }
}
