using System.Text.RegularExpressions;
using BackendTls.Policy.Rendering;
using BackendTls.Tests.Shared;
using BackendTls.Webhook.Controller;
using BackendTls.Webhook.Injection;

namespace BackendTls.Webhook.Tests.EndToEnd;

/// <summary>
/// The README is a promise to a new user: its local shell blocks are run as written, from the repository
/// root, inside a fresh network namespace (their fixed ports cannot collide with other tests, and nothing
/// outside is reachable); its cluster blocks, which need a cluster, are checked against what exists.
/// </summary>
public sealed partial class ReadmeTests
{
    private static string Readme => File.ReadAllText(Path.Combine(Repository.Root, "README.md"));

    /// <summary>The shell code of a README section (between its heading and the next one).</summary>
    public static string ShellBlocks(string heading)
    {
        var section = Regex.Match(Readme, $@"^## {Regex.Escape(heading)}\s*$(.*?)(?=^## |\z)", RegexOptions.Multiline | RegexOptions.Singleline);
        Assert.True(section.Success, $"README has no section \"## {heading}\"");
        return string.Join("\n", ShellBlock().Matches(section.Groups[1].Value).Select(m => m.Groups[1].Value));
    }

    [GeneratedRegex(@"^```sh\n(.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex ShellBlock();

    [SkippableFact]
    public async Task TutorialFlow_RunsAsWritten_InAFreshNetworkNamespace()
    {
        Skip.IfNot(Environment.UserName == "root" && ExternalProcess.OnPath("ip") && ExternalProcess.OnPath("openssl") && ExternalProcess.OnPath("curl"),
            "needs root, iproute2 (network namespaces), openssl and curl");
        string[] created = ["example_certs", "tutorial.yaml", "btls"];
        foreach (var name in created)
        {
            Assert.False(Path.Exists(Path.Combine(Repository.Root, name)), $"{name} exists in the repository root; the flow creates it (remove it)");
        }

        var script = Path.Combine(Path.GetTempPath(), $"readme-flow-{Guid.NewGuid():N}.sh");
        File.WriteAllText(script, ShellBlocks("The tutorial's flow, with this sidecar (no cluster needed)"));
        await using var ns = await NetworkNamespace.CreateAsync("readme");
        try
        {
            var (code, output) = await ns.RunAsync(["bash", "-euo", "pipefail", script], Repository.Root, TimeSpan.FromMinutes(5));

            Assert.True(code == 0, output);
            foreach (var line in new[]
            {
                "Accepted=True (Accepted)",
                "x-backendtls-error: no_san",
                "subjectAltName=DNS:www.example.com",
                "HTTP/1.1 200 ok",
                "backendtls_requests_total{target=\"httpbin/httpbin:8000\",code=\"502\"} 1",
                "backendtls_requests_total{target=\"httpbin/httpbin:8000\",code=\"200\"} 1",
                "backendtls_upstream_handshakes_total{target=\"httpbin/httpbin:8000\",result=\"error\",reason=\"no_san\"} 1",
                "backendtls_upstream_handshakes_total{target=\"httpbin/httpbin:8000\",result=\"ok\",reason=\"verified\"} 1",
            })
            {
                Assert.True(output.Contains(line, StringComparison.Ordinal), $"missing \"{line}\" in:\n{output}");
            }
        }
        finally
        {
            File.Delete(script);
            foreach (var name in created)
            {
                var path = Path.Combine(Repository.Root, name);
                if (Directory.Exists(path))
                {
                    Directory.Delete(path, recursive: true);
                }
                else
                {
                    File.Delete(path);
                }
            }
        }
    }

    [SkippableFact]
    public async Task TransparentDemo_RunsAsWritten_AndLeavesNothingBehind()
    {
        Skip.IfNot(NetworkNamespace.Available && ExternalProcess.OnPath("openssl") && ExternalProcess.OnPath("curl") && ExternalProcess.OnPath("setpriv")
                   && (ExternalProcess.OnPath("nft") || ExternalProcess.OnPath("iptables")), "needs root, iproute2, openssl, curl, setpriv and nft or iptables");
        var command = Assert.Single(ShellBlocks("Try it (fresh Debian 12 machine with the .NET 10 SDK)").Split('\n'), l => l.Contains("demo-transparent", StringComparison.Ordinal));
        Assert.Equal("sudo bash scripts/demo-transparent.sh", command);

        // As root already: the same script without sudo, on the sidecar this test run built.
        var (code, output) = await ExternalProcess.RunAsync(ExternalProcess.Which("env"), [$"SIDECAR_DLL={Path.Combine(AppContext.BaseDirectory, "backendtls-sidecar.dll")}", "bash", "scripts/demo-transparent.sh"],
            Repository.Root, TimeSpan.FromMinutes(3));

        Assert.True(code == 0, output);
        foreach (var line in new[]
        {
            "HTTP 200",
            "Protocol  : TLSv1.3",
            "HTTP 502 (x-backendtls-error: no_san)",
            "backendtls_captured_connections_total{outcome=\"tls\",target=\"httpbin/httpbin:8443\"} 1",
            "backendtls_upstream_handshakes_total{target=\"httpbin/httpbin:8443\",result=\"ok\",reason=\"verified\"} 1",
        })
        {
            Assert.True(output.Contains(line, StringComparison.Ordinal), $"missing \"{line}\" in:\n{output}");
        }

        var (_, namespaces) = await ExternalProcess.RunAsync(ExternalProcess.Which("ip"), ["netns", "list"]);
        Assert.DoesNotContain("btls-demo-", namespaces, StringComparison.Ordinal);
    }

    [Fact]
    public void ClusterSection_NamesOnlyWhatExists()
    {
        var shell = ShellBlocks("In a cluster");
        var prose = Readme;

        foreach (Match overlay in Regex.Matches(shell, @"kubectl apply -k (\S+)"))
        {
            Assert.True(File.Exists(Path.Combine(Repository.Root, overlay.Groups[1].Value, "kustomization.yaml")), $"{overlay.Value}: no kustomization there");
        }

        foreach (Match build in Regex.Matches(prose, @"docker build -f (\S+) -t (\S+) \."))
        {
            Assert.True(File.Exists(Path.Combine(Repository.Root, build.Groups[1].Value)), $"{build.Value}: no such Dockerfile");
        }

        var defaults = new InjectorSettings();
        Assert.Contains($"docker build -f Dockerfile.sidecar -t {defaults.SidecarImage} .", prose, StringComparison.Ordinal);
        Assert.Contains($"docker build -f Dockerfile.sidecar --target capture-init -t {defaults.CaptureInitImage} .", prose, StringComparison.Ordinal);
        Assert.Contains("AS capture-init", File.ReadAllText(Path.Combine(Repository.Root, "Dockerfile.sidecar")), StringComparison.Ordinal);
        Assert.Contains($"kubectl label namespace ingress-nginx {InjectionLabels.Inject}={InjectionLabels.Enabled}", shell, StringComparison.Ordinal);
        Assert.Contains($"annotations.{InjectionLabels.CaptureConfig.Replace(".", "\\.", StringComparison.Ordinal)}", shell, StringComparison.Ordinal);
        Assert.Contains($"configmap -n ingress-nginx {defaults.PolicyConfigMap}", shell, StringComparison.Ordinal);
        Assert.Contains(CaptureCoverage.CapturedReason, shell, StringComparison.Ordinal);

        foreach (Match reason in Regex.Matches(shell, @"--field-selector reason=(\w+)"))
        {
            var controller = string.Concat(Directory.GetFiles(Path.Combine(Repository.Root, "webhook", "Controller"), "*.cs").Select(File.ReadAllText));
            Assert.Contains($"\"{reason.Groups[1].Value}\"", controller, StringComparison.Ordinal);
        }

        // Every policy the section applies renders Accepted against the Secret it creates.
        var policies = Regex.Matches(shell, @"<<YAML\n(.*?)^YAML", RegexOptions.Multiline | RegexOptions.Singleline).Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(policies);
        using var ca = BackendTls.Sidecar.Demo.CertificateAuthority.Create("CN=Readme Root");
        var secret = $"apiVersion: v1\nkind: Secret\nmetadata: {{name: httpbin-root-ca, namespace: httpbin}}\ndata: {{ca.crt: {Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(ca.CertificatePem))}}}\n---\n" +
                     "apiVersion: v1\nkind: Service\nmetadata: {name: httpbin, namespace: httpbin}\nspec: {ports: [{name: http, port: 8000}]}\n---\n";
        foreach (var policy in policies)
        {
            var rendered = PolicyRenderer.RenderYaml([("readme.yaml", secret + Regex.Replace(policy, @"\s+#.*$", string.Empty, RegexOptions.Multiline))]);
            Assert.All(rendered.Policies, p => Assert.True(p.IsAccepted && p.ResolvedRefs.Status, p.Accepted.Message + " " + p.ResolvedRefs.Message));
        }
    }
}
