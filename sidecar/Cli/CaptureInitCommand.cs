using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using BackendTls.Policy.Cli;
using BackendTls.Sidecar.Capture;

namespace BackendTls.Sidecar.Cli;

/// <summary>
/// <c>backendtls-sidecar capture-init</c>: installs the transparent-capture rules in the pod's network
/// namespace (an init container, root with NET_ADMIN and NET_RAW, then gone). nftables or iptables (nft or
/// legacy) chosen as Istio and Kuma choose: legacy when legacy tables already hold rules (never mix), else
/// native nftables, else iptables-nft. Idempotent. Prints the final rule set; when it cannot apply the rules
/// it exits non-zero with what failed, so the pod never starts uncaptured.
/// </summary>
internal static class CaptureInitCommand
{
    private sealed class Flags
    {
        public Flags()
        {
            Set = new FlagSet("capture-init", """
                backendtls-sidecar capture-init [flags]   install the transparent-capture rules (an init container with NET_ADMIN)
                """, "BACKENDTLS_CAPTURE_");
            ProxyUid = Set.Add("proxy-uid", 15101L, Uid, "the sidecar's uid: its own connections are never captured", "UID");
            RedirectPort = Set.Add("redirect-port", 15002, FlagValues.WholeNumber(1, 65535), "the sidecar's capture listener", "PORT");
            CapturePorts = Set.Add("capture-ports", string.Empty, PortsOrAll, "destination ports to capture, or all", "PORTS|all");
            ExcludePorts = Set.Add("exclude-outbound-ports", string.Empty, Ports, "destination ports never captured", "PORTS");
            SidecarPorts = Set.Add("sidecar-ports", "15001,15002,15090", Ports, "the sidecar's own ports, always excluded", "PORTS");
            ExcludeCidrs = Set.Add("exclude-outbound-cidrs", string.Empty, Cidrs, "destinations never captured (with the API server)", "CIDRS");
            IncludeCidrs = Set.Add("include-outbound-cidrs", string.Empty, Cidrs, "only these destinations are captured", "CIDRS");
            Mode = Set.Add("iptables-mode", "auto", FlagValues.OneOf("auto", "nft", "iptables-nft", "iptables-legacy"), "which netfilter front end", "MODE");
            Ipv6 = Set.Add("ipv6", "auto", FlagValues.OneOf("auto", "true", "false"), "also capture IPv6 (auto: when the pod has an IPv6 address)", "auto|true|false");
            DryRun = Set.Add("dry-run", false, FlagValues.Bool, "print the rules, apply nothing", "true|false");
        }

        public FlagSet Set { get; }

        public Flag<long> ProxyUid { get; }

        public Flag<int> RedirectPort { get; }

        public Flag<string> CapturePorts { get; }

        public Flag<string> ExcludePorts { get; }

        public Flag<string> SidecarPorts { get; }

        public Flag<string> ExcludeCidrs { get; }

        public Flag<string> IncludeCidrs { get; }

        public Flag<string> Mode { get; }

        public Flag<string> Ipv6 { get; }

        public Flag<bool> DryRun { get; }
    }

    public static string Usage => new Flags().Set.Usage;

    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter output, TextWriter error)
    {
        var flags = new Flags();
        var problems = flags.Set.Parse(args, Environment.GetEnvironmentVariable).ToList();
        if (flags.Set.HelpRequested)
        {
            await output.WriteLineAsync(flags.Set.Usage);
            return 0;
        }

        if (problems.Count > 0)
        {
            await error.WriteLineAsync(string.Join("\n", problems.Select(p => "capture-init: " + p)) + "\n\n" + flags.Set.Usage);
            return 2;
        }

        var all = flags.CapturePorts.Value == "all";
        var excludedCidrs = ParseCidrs(flags.ExcludeCidrs.Value).ToList();
        // The API server: the pod's own control traffic (and the sidecar's index watch) never goes through capture.
        if (Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST") is { } apiServer && IPAddress.TryParse(apiServer, out var api))
        {
            excludedCidrs.Add(new IPNetwork(api, api.AddressFamily == AddressFamily.InterNetwork ? 32 : 128));
        }

        var excludedPorts = ParsePorts(flags.SidecarPorts.Value).Concat(ParsePorts(flags.ExcludePorts.Value)).Append(flags.RedirectPort.Value);
        var plan = new CapturePlan
        {
            ProxyUid = flags.ProxyUid.Value,
            RedirectPort = flags.RedirectPort.Value,
            Ports = all ? [] : ParsePorts(flags.CapturePorts.Value).Distinct().Order().ToList(),
            AllPorts = all,
            ExcludedPorts = (all ? excludedPorts.Append(53) : excludedPorts).Distinct().Order().ToList(),
            ExcludedCidrs = excludedCidrs,
            IncludedCidrs = ParseCidrs(flags.IncludeCidrs.Value).ToList(),
            Ipv6 = flags.Ipv6.Value switch
            {
                "true" => true,
                "false" => false,
                _ => HasIpv6(),
            },
        };
        if (!plan.Ipv6)
        {
            await output.WriteLineAsync("capture-init: the pod has no IPv6 address (or --ipv6 false): IPv6 is not captured");
        }

        if (!plan.AllPorts && plan.Ports.Count == 0)
        {
            await output.WriteLineAsync("capture-init: no capture ports (no policy targets this pod's routes yet, no capture-ports annotation): the chain only lets traffic through");
        }

        var mode = flags.Mode.Value == "auto" ? await DetectAsync() : flags.Mode.Value;
        if (mode is null)
        {
            await error.WriteLineAsync("capture-init: neither nft nor iptables works in this container; the capture rules cannot be installed, so the pod must not start. " +
                                       "Does the init container have NET_ADMIN and NET_RAW? (Pod Security \"baseline\" forbids NET_ADMIN: see docs/transparent-capture.md)");
            return 1;
        }

        await output.WriteLineAsync($"capture-init: {(flags.Mode.Value == "auto" ? "detected" : "using")} {mode}; capturing {(plan.AllPorts ? "every TCP port" : "TCP ports " + string.Join(",", plan.Ports))} " +
                                    $"to 127.0.0.1/[::1]:{plan.RedirectPort}, except uid {plan.ProxyUid}, lo, ports {string.Join(",", plan.ExcludedPorts)}" +
                                    (plan.ExcludedCidrs.Count > 0 ? ", destinations " + string.Join(",", plan.ExcludedCidrs) : string.Empty));
        if (flags.DryRun.Value)
        {
            await output.WriteLineAsync(mode == "nft" ? CaptureRules.Nft(plan) : CaptureRules.IptablesRestore(plan, AddressFamily.InterNetwork)
                + (plan.Ipv6 ? CaptureRules.IptablesRestore(plan, AddressFamily.InterNetworkV6) : string.Empty));
            return 0;
        }

        try
        {
            if (mode == "nft")
            {
                await Commands.RunAsync("nft", ["-f", "-"], CaptureRules.Nft(plan));
                await output.WriteLineAsync("capture-init: rules in place:");
                await output.WriteAsync(await Commands.RunAsync("nft", ["list", "table", "inet", CaptureRules.NftTable]));
            }
            else
            {
                var suffix = mode == "iptables-legacy" ? "-legacy" : "-nft";
                foreach (var (family, tool) in new[] { (AddressFamily.InterNetwork, "iptables"), (AddressFamily.InterNetworkV6, "ip6tables") })
                {
                    if (family == AddressFamily.InterNetworkV6 && !plan.Ipv6)
                    {
                        continue;
                    }

                    await Commands.RunAsync($"{tool}{suffix}-restore", ["-w", "5", "--noflush"], CaptureRules.IptablesRestore(plan, family));
                    // The jump from OUTPUT once: a second run finds it and adds nothing.
                    if (!await Commands.SucceedsAsync($"{tool}{suffix}", ["-w", "5", "-t", "nat", "-C", .. CaptureRules.OutputJump]))
                    {
                        await Commands.RunAsync($"{tool}{suffix}", ["-w", "5", "-t", "nat", "-A", .. CaptureRules.OutputJump]);
                    }

                    await output.WriteLineAsync($"capture-init: {tool} rules in place:");
                    await output.WriteAsync(await Commands.RunAsync($"{tool}{suffix}-save", ["-t", "nat"]));
                }
            }
        }
        catch (CommandFailedException e)
        {
            await error.WriteLineAsync($"capture-init: {e.Message}; the pod must not start uncaptured. " +
                                       "Check that the init container runs as root with NET_ADMIN and NET_RAW, and that the node's kernel has the nat table (modprobe iptable_nat / nf_tables)");
            return 1;
        }

        return 0;
    }

    /// <summary>Legacy if legacy tables already hold nat rules (never mix front ends); else nftables; else iptables-nft.</summary>
    private static async Task<string?> DetectAsync()
    {
        if (await Commands.OutputIfSucceedsAsync("iptables-legacy-save", ["-t", "nat"]) is { } legacy
            && legacy.Split('\n').Any(l => l.StartsWith("-A ", StringComparison.Ordinal) && !l.Contains(CaptureRules.Chain, StringComparison.Ordinal)))
        {
            return "iptables-legacy";
        }

        if (await Commands.OutputIfSucceedsAsync("nft", ["list", "tables"]) is not null)
        {
            return "nft";
        }

        if (await Commands.OutputIfSucceedsAsync("iptables-nft-save", ["-t", "nat"]) is not null)
        {
            return "iptables-nft";
        }

        return await Commands.OutputIfSucceedsAsync("iptables-legacy-save", ["-t", "nat"]) is not null ? "iptables-legacy" : null;
    }

    /// <summary>Any IPv6 address other than loopback and link-local (/proc/net/if_inet6: scope in the fourth column).</summary>
    private static bool HasIpv6()
    {
        try
        {
            return File.ReadLines("/proc/net/if_inet6")
                .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Any(f => f.Length >= 4 && f[3] is "00"); // 00 global (and ULA); 10 host; 20 link
        }
        catch (IOException)
        {
            return false; // IPv6 disabled in this kernel or namespace
        }
    }

    private static (long, string?) Uid(string value) =>
        long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var uid) && uid is >= 1 and <= 2147483647
            ? (uid, null)
            : (0, "is not a uid (1 to 2147483647; 0 is root, whose traffic must be captured)");

    private static (string, string?) PortsOrAll(string value) => value == "all" ? (value, null) : Ports(value);

    private static (string, string?) Ports(string value) =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .All(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 1 and <= 65535)
            ? (value, null)
            : (value, "is not a comma-separated list of ports (1-65535)");

    private static (string, string?) Cidrs(string value) =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).All(c => IPNetwork.TryParse(c, out _) || IPAddress.TryParse(c, out _))
            ? (value, null)
            : (value, "is not a comma-separated list of CIDRs (e.g. 10.0.0.0/8,fd00::/8)");

    private static IEnumerable<int> ParsePorts(string value) =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture));

    private static IEnumerable<IPNetwork> ParseCidrs(string value) =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(c => IPNetwork.TryParse(c, out var network) ? network : new IPNetwork(IPAddress.Parse(c), IPAddress.Parse(c).AddressFamily == AddressFamily.InterNetwork ? 32 : 128));

    private sealed class CommandFailedException(string message) : Exception(message);

    /// <summary>Runs the netfilter tools, each bounded in time.</summary>
    private static class Commands
    {
        public static async Task<string> RunAsync(string tool, IReadOnlyList<string> args, string? input = null)
        {
            var (code, stdout, stderr) = await ExecAsync(tool, args, input);
            if (code != 0)
            {
                throw new CommandFailedException($"`{tool} {string.Join(' ', args)}` failed (exit {code}): {stderr.Trim()}" +
                                                 (input is null ? string.Empty : "\ninput was:\n" + input));
            }

            return stdout;
        }

        public static async Task<bool> SucceedsAsync(string tool, IReadOnlyList<string> args) => (await ExecAsync(tool, args, null)).Code == 0;

        public static async Task<string?> OutputIfSucceedsAsync(string tool, IReadOnlyList<string> args)
        {
            var (code, stdout, _) = await ExecAsync(tool, args, null);
            return code == 0 ? stdout : null;
        }

        private static async Task<(int Code, string Stdout, string Stderr)> ExecAsync(string tool, IReadOnlyList<string> args, string? input)
        {
            var info = new ProcessStartInfo(tool) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var arg in args)
            {
                info.ArgumentList.Add(arg);
            }

            Process process;
            try
            {
                process = Process.Start(info)!;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return (127, string.Empty, $"{tool} is not installed in this image");
            }

            using (process)
            {
                if (input is not null)
                {
                    await process.StandardInput.WriteAsync(input);
                }

                process.StandardInput.Close();
                var stdout = process.StandardOutput.ReadToEndAsync();
                var stderr = process.StandardError.ReadToEndAsync();
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                try
                {
                    await process.WaitForExitAsync(timeout.Token);
                }
                catch (OperationCanceledException)
                {
                    process.Kill();
                    return (124, string.Empty, $"{tool} did not finish within 30 s (the xtables lock held?)");
                }

                return (process.ExitCode, await stdout, await stderr);
            }
        }
    }
}
