using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace BackendTls.Sidecar.Capture;

/// <summary>What to capture: the gateway's outbound TCP to these ports goes to the capture listener.</summary>
internal sealed record CapturePlan
{
    /// <summary>The sidecar's own uid: its connections (to the original destinations) are never captured.</summary>
    public required long ProxyUid { get; init; }

    /// <summary>Where captured connections go (127.0.0.1 / [::1]).</summary>
    public required int RedirectPort { get; init; }

    /// <summary>Destination ports to capture; empty with <see cref="AllPorts"/>.</summary>
    public required IReadOnlyList<int> Ports { get; init; }

    /// <summary>Capture every TCP port but the excluded ones.</summary>
    public bool AllPorts { get; init; }

    /// <summary>Never captured: the sidecar's ports always, DNS with <see cref="AllPorts"/>, and what the annotation adds.</summary>
    public required IReadOnlyList<int> ExcludedPorts { get; init; }

    /// <summary>Never captured destinations (the API server by default).</summary>
    public required IReadOnlyList<IPNetwork> ExcludedCidrs { get; init; }

    /// <summary>When not empty, only these destinations are captured.</summary>
    public required IReadOnlyList<IPNetwork> IncludedCidrs { get; init; }

    /// <summary>Also capture IPv6 (ip6tables, or the ip6 half of the nft table).</summary>
    public bool Ipv6 { get; init; } = true;
}

/// <summary>
/// The capture rules, as text for each backend: one chain of our own that is flushed and rebuilt on every
/// run (so running twice is running once), jumped to from nat OUTPUT for TCP. Order: RETURN for the
/// sidecar's uid (the loop guard), for loopback, for excluded destinations and ports; then REDIRECT of the
/// capture ports. A pure function, so the rules are unit-tested without root.
/// </summary>
internal static class CaptureRules
{
    public const string Chain = "BTLS_OUTPUT";
    public const string NftTable = "btls_capture";

    /// <summary>iptables-restore input (use with --noflush) for one family; the OUTPUT jump is added separately, only if missing.</summary>
    public static string IptablesRestore(CapturePlan plan, AddressFamily family)
    {
        var text = new StringBuilder();
        text.Append("*nat\n");
        text.Append(CultureInfo.InvariantCulture, $":{Chain} - [0:0]\n"); // creates or flushes our chain
        text.Append(CultureInfo.InvariantCulture, $"-A {Chain} -m owner --uid-owner {plan.ProxyUid} -j RETURN\n");
        text.Append(CultureInfo.InvariantCulture, $"-A {Chain} -o lo -j RETURN\n");
        foreach (var cidr in plan.ExcludedCidrs.Where(c => c.BaseAddress.AddressFamily == family))
        {
            text.Append(CultureInfo.InvariantCulture, $"-A {Chain} -d {cidr} -j RETURN\n");
        }

        foreach (var ports in Chunks(plan.ExcludedPorts))
        {
            text.Append(CultureInfo.InvariantCulture, $"-A {Chain} -p tcp -m multiport --dports {ports} -j RETURN\n");
        }

        // Include CIDRs given, none of this family: this family is not captured at all (as in the nft table).
        var included = plan.IncludedCidrs.Where(c => c.BaseAddress.AddressFamily == family).ToList();
        var only = plan.IncludedCidrs.Count == 0 ? [string.Empty] : included.Select(c => $"-d {c} ").ToList();
        foreach (var destination in only)
        {
            if (plan.AllPorts)
            {
                text.Append(CultureInfo.InvariantCulture, $"-A {Chain} {destination}-p tcp -j REDIRECT --to-ports {plan.RedirectPort}\n");
                continue;
            }

            foreach (var ports in Chunks(plan.Ports))
            {
                text.Append(CultureInfo.InvariantCulture, $"-A {Chain} {destination}-p tcp -m multiport --dports {ports} -j REDIRECT --to-ports {plan.RedirectPort}\n");
            }
        }

        text.Append("COMMIT\n");
        return text.ToString();
    }

    /// <summary>The jump from nat OUTPUT (checked with -C before it is added).</summary>
    public static string[] OutputJump => ["OUTPUT", "-p", "tcp", "-j", Chain];

    /// <summary>An nft script: our inet table, deleted (if there) and created again in one transaction.</summary>
    public static string Nft(CapturePlan plan)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"table inet {NftTable} {{}}\n");
        text.Append(CultureInfo.InvariantCulture, $"delete table inet {NftTable}\n");
        text.Append(CultureInfo.InvariantCulture, $"table inet {NftTable} {{\n");
        text.Append("  chain output {\n");
        // priority -100 is dstnat; nft 1.0.6 refuses the name on the output hook.
        text.Append("    type nat hook output priority -100; policy accept;\n");
        text.Append("    meta l4proto != tcp return\n");
        if (!plan.Ipv6)
        {
            text.Append("    meta nfproto ipv6 return\n");
        }

        // Counters on the loop guard and the redirect: `nft list table inet btls_capture` shows both move.
        text.Append(CultureInfo.InvariantCulture, $"    meta skuid {plan.ProxyUid} counter return\n");
        text.Append("    oifname \"lo\" return\n");
        foreach (var (family, keyword) in new[] { (AddressFamily.InterNetwork, "ip"), (AddressFamily.InterNetworkV6, "ip6") })
        {
            var excluded = plan.ExcludedCidrs.Where(c => c.BaseAddress.AddressFamily == family).ToList();
            if (excluded.Count > 0)
            {
                text.Append(CultureInfo.InvariantCulture, $"    {keyword} daddr {{ {string.Join(", ", excluded)} }} return\n");
            }

            var included = plan.IncludedCidrs.Where(c => c.BaseAddress.AddressFamily == family).ToList();
            if (plan.IncludedCidrs.Count > 0)
            {
                // Only the included destinations of this family; none included: the family is not captured.
                text.Append(included.Count > 0
                    ? string.Create(CultureInfo.InvariantCulture, $"    meta nfproto {(keyword == "ip" ? "ipv4" : "ipv6")} {keyword} daddr != {{ {string.Join(", ", included)} }} return\n")
                    : string.Create(CultureInfo.InvariantCulture, $"    meta nfproto {(keyword == "ip" ? "ipv4" : "ipv6")} return\n"));
            }
        }

        if (plan.ExcludedPorts.Count > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $"    tcp dport {{ {string.Join(", ", plan.ExcludedPorts)} }} return\n");
        }

        if (plan.AllPorts)
        {
            // nft wants the protocol matched in the redirect's own rule (the return above is not enough).
            text.Append(CultureInfo.InvariantCulture, $"    meta l4proto tcp counter redirect to :{plan.RedirectPort}\n");
        }
        else if (plan.Ports.Count > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $"    tcp dport {{ {string.Join(", ", plan.Ports)} }} counter redirect to :{plan.RedirectPort}\n");
        }
        text.Append("  }\n}\n");
        return text.ToString();
    }

    /// <summary>multiport takes at most 15 ports per rule.</summary>
    private static IEnumerable<string> Chunks(IReadOnlyList<int> ports) =>
        ports.Chunk(15).Select(chunk => string.Join(',', chunk));
}
