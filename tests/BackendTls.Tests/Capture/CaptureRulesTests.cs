using System.Net;
using System.Net.Sockets;
using BackendTls.Sidecar.Capture;
using BackendTls.Sidecar.Cli;
using BackendTls.Tests.Shared;

namespace BackendTls.Tests.Capture;

/// <summary>
/// The capture rules as text (order, chunking, families, include/exclude), then the same texts checked by
/// the real nft and iptables-restore in a network namespace of the test's own, and capture-init failing
/// loudly where it cannot apply them.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class CaptureRulesTests
{
    private static CapturePlan Plan(IReadOnlyList<int>? ports = null, bool all = false, string[]? exclude = null, string[]? include = null, bool ipv6 = true) => new()
    {
        ProxyUid = 15101,
        RedirectPort = 15002,
        Ports = ports ?? [8443],
        AllPorts = all,
        ExcludedPorts = all ? [53, 15001, 15002, 15090] : [15001, 15002, 15090],
        ExcludedCidrs = (exclude ?? ["10.96.0.1/32"]).Select(IPNetwork.Parse).ToList(),
        IncludedCidrs = (include ?? []).Select(IPNetwork.Parse).ToList(),
        Ipv6 = ipv6,
    };

    private static List<string> Rules(string restore) =>
        restore.Split('\n').Where(l => l.StartsWith("-A ", StringComparison.Ordinal)).ToList();

    [Fact]
    public void Iptables_LoopGuardFirst_ThenLoopbackExclusions_ThenRedirect_OnlyThisFamilysCidrs()
    {
        var plan = Plan(exclude: ["10.96.0.1/32", "fd00:96::1/128"]);

        var v4 = Rules(CaptureRules.IptablesRestore(plan, AddressFamily.InterNetwork));
        var v6 = Rules(CaptureRules.IptablesRestore(plan, AddressFamily.InterNetworkV6));

        Assert.Equal(
        [
            "-A BTLS_OUTPUT -m owner --uid-owner 15101 -j RETURN",
            "-A BTLS_OUTPUT -o lo -j RETURN",
            "-A BTLS_OUTPUT -d 10.96.0.1/32 -j RETURN",
            "-A BTLS_OUTPUT -p tcp -m multiport --dports 15001,15002,15090 -j RETURN",
            "-A BTLS_OUTPUT -p tcp -m multiport --dports 8443 -j REDIRECT --to-ports 15002",
        ], v4);
        Assert.Contains("-A BTLS_OUTPUT -d fd00:96::1/128 -j RETURN", v6);
        Assert.DoesNotContain(v6, r => r.Contains("10.96.0.1", StringComparison.Ordinal));
    }

    [Fact]
    public void Iptables_MoreThan15Ports_SplitAcrossMultiportRules()
    {
        var ports = Enumerable.Range(8000, 20).ToList();

        var redirects = Rules(CaptureRules.IptablesRestore(Plan(ports), AddressFamily.InterNetwork)).Where(r => r.Contains("REDIRECT", StringComparison.Ordinal)).ToList();

        Assert.Equal(2, redirects.Count);
        Assert.Contains("--dports 8000,8001,8002,8003,8004,8005,8006,8007,8008,8009,8010,8011,8012,8013,8014 ", redirects[0], StringComparison.Ordinal);
        Assert.Contains("--dports 8015,8016,8017,8018,8019 ", redirects[1], StringComparison.Ordinal);
    }

    [Fact]
    public void IncludeCidrsOfOneFamily_TheOtherFamilyIsNotCaptured_InBothBackends()
    {
        var plan = Plan(include: ["198.18.0.0/15"]);

        var v4 = Rules(CaptureRules.IptablesRestore(plan, AddressFamily.InterNetwork));
        var v6 = Rules(CaptureRules.IptablesRestore(plan, AddressFamily.InterNetworkV6));
        var nft = CaptureRules.Nft(plan);

        Assert.Contains("-A BTLS_OUTPUT -d 198.18.0.0/15 -p tcp -m multiport --dports 8443 -j REDIRECT --to-ports 15002", v4);
        Assert.DoesNotContain(v6, r => r.Contains("REDIRECT", StringComparison.Ordinal));
        Assert.Contains("meta nfproto ipv4 ip daddr != { 198.18.0.0/15 } return", nft, StringComparison.Ordinal);
        Assert.Contains("meta nfproto ipv6 return", nft, StringComparison.Ordinal);
    }

    [Fact]
    public void Nft_AllPortsRedirectsEveryTcpPort_ButTheExcluded_AndWithoutIpv6LeavesIpv6Alone()
    {
        var nft = CaptureRules.Nft(Plan(all: true, ipv6: false));

        Assert.Contains("tcp dport { 53, 15001, 15002, 15090 } return", nft, StringComparison.Ordinal);
        Assert.Contains("counter redirect to :15002", nft, StringComparison.Ordinal);
        Assert.DoesNotContain("tcp dport { 8443 }", nft, StringComparison.Ordinal);
        Assert.Contains("meta nfproto ipv6 return", nft, StringComparison.Ordinal);
        // The loop guard precedes every redirect.
        Assert.True(nft.IndexOf("meta skuid 15101", StringComparison.Ordinal) < nft.IndexOf("redirect", StringComparison.Ordinal));
    }

    public static TheoryData<string> Variants => ["ports", "all", "include", "many", "no-ipv6"];

    private static CapturePlan Variant(string name) => name switch
    {
        "ports" => Plan(exclude: ["10.96.0.1/32", "fd00:96::1/128"]),
        "all" => Plan(all: true),
        "include" => Plan(include: ["198.18.0.0/15", "fd00:18::/32"]),
        "many" => Plan(Enumerable.Range(8000, 40).ToList()),
        _ => Plan(ipv6: false),
    };

    [SkippableTheory]
    [MemberData(nameof(Variants))]
    public async Task RealTools_AcceptEveryVariant_InAFreshNamespace(string variant)
    {
        Skip.IfNot(NetworkNamespace.Available && ExternalProcess.OnPath("nft") && ExternalProcess.OnPath("iptables-legacy-restore") && ExternalProcess.OnPath("iptables-nft-restore"),
            "needs root, iproute2, nft and both iptables front ends");
        var plan = Variant(variant);
        await using var ns = await NetworkNamespace.CreateAsync("rules");
        var script = Path.GetTempFileName();
        try
        {
            // Applied for real, then listed: the kernel took every rule.
            File.WriteAllText(script, CaptureRules.Nft(plan));
            var (nftCode, nftOutput) = await ns.ExecAsync("nft", "-f", script);
            Assert.True(nftCode == 0, $"nft refused:\n{nftOutput}\n{CaptureRules.Nft(plan)}");
            foreach (var (family, tool) in new[] { (AddressFamily.InterNetwork, "iptables"), (AddressFamily.InterNetworkV6, "ip6tables") })
            {
                File.WriteAllText(script, CaptureRules.IptablesRestore(plan, family));
                foreach (var frontEnd in new[] { "legacy", "nft" })
                {
                    var (code, output) = await ns.ExecAsync($"{tool}-{frontEnd}-restore", "--test", "--noflush", script);
                    Assert.True(code == 0, $"{tool}-{frontEnd}-restore refused:\n{output}\n{File.ReadAllText(script)}");
                }
            }
        }
        finally
        {
            File.Delete(script);
        }
    }

    [SkippableFact]
    public async Task WithoutNetAdmin_CaptureInitFailsLoudly_SoThePodNeverStartsUncaptured()
    {
        Skip.IfNot(NetworkNamespace.Available && ExternalProcess.OnPath("nft") && ExternalProcess.OnPath("setpriv"), "needs root, iproute2, nft and setpriv");
        await using var ns = await NetworkNamespace.CreateAsync("noadmin");
        var sidecar = Path.Combine(AppContext.BaseDirectory, "backendtls-sidecar.dll");
        var home = Directory.CreateTempSubdirectory("capture-init-home-").FullName;
        File.SetUnixFileMode(home, (UnixFileMode)0b111_111_111);
        try
        {
            // Not root and no capabilities: what a container without NET_ADMIN gets.
            var (code, output) = await ns.ExecAsync("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "env", $"HOME={home}",
                "dotnet", sidecar, "capture-init", "--capture-ports", "8443", "--iptables-mode", "nft");

            Assert.Equal(1, code);
            Assert.Contains("the pod must not start uncaptured", output, StringComparison.Ordinal);
            Assert.Contains("NET_ADMIN", output, StringComparison.Ordinal);
            var (_, tables) = await ns.ExecAsync("nft", "list", "tables");
            Assert.DoesNotContain(CaptureRules.NftTable, tables, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }

    [Fact]
    public async Task DryRun_PrintsTheRules_AndBadFlagsAreAllReportedAtOnce()
    {
        var output = new StringWriter();
        var error = new StringWriter();

        Assert.Equal(0, await CaptureInitCommand.RunAsync(["--capture-ports", "8443,9443", "--iptables-mode", "nft", "--ipv6", "false", "--dry-run", "true"], output, error));
        Assert.Contains("tcp dport { 8443, 9443 } counter redirect to :15002", output.ToString(), StringComparison.Ordinal);
        Assert.Contains("IPv6 is not captured", output.ToString(), StringComparison.Ordinal);

        Assert.Equal(2, await CaptureInitCommand.RunAsync(["--capture-ports", "http", "--proxy-uid", "0", "--iptables-mode", "pf"], output, error));
        var problems = error.ToString().Split('\n').Where(l => l.StartsWith("capture-init: ", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, problems.Count);
    }
}
