using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace BackendTls.Tests.Shared;

/// <summary>
/// A network namespace of a test's own (ip netns), with loopback up: fixed ports inside cannot collide with
/// other tests, and nothing outside is reachable. Disposing kills every process still in it and deletes it,
/// whatever happened in the test.
/// </summary>
internal sealed partial class NetworkNamespace : IAsyncDisposable
{
    private static int _counter;

    private NetworkNamespace(string name) => Name = name;

    public string Name { get; }

    public static bool Available => Environment.UserName == "root" && ExternalProcess.OnPath("ip");

    public static async Task<NetworkNamespace> CreateAsync(string prefix)
    {
        var name = $"btls-{prefix}-{Environment.ProcessId}-{Interlocked.Increment(ref _counter)}";
        await Ip("netns", "add", name);
        var ns = new NetworkNamespace(name);
        try
        {
            await Ip("-n", name, "link", "set", "lo", "up");
        }
        catch
        {
            await ns.DisposeAsync();
            throw;
        }

        return ns;
    }

    /// <summary>Runs ip with the arguments; throws with its output when it fails.</summary>
    public static async Task Ip(params string[] arguments)
    {
        var (code, output) = await ExternalProcess.RunAsync(ExternalProcess.Which("ip"), arguments);
        if (code != 0)
        {
            throw new InvalidOperationException($"ip {string.Join(' ', arguments)}: {output}");
        }
    }

    /// <summary>Joins two namespaces with a veth pair and gives each end its addresses (CIDR notation), up.</summary>
    public static async Task LinkAsync(NetworkNamespace a, string aInterface, IEnumerable<string> aAddresses, NetworkNamespace b, string bInterface, IEnumerable<string> bAddresses)
    {
        await Ip("link", "add", aInterface, "netns", a.Name, "type", "veth", "peer", "name", bInterface, "netns", b.Name);
        foreach (var (ns, device, addresses) in new[] { (a, aInterface, aAddresses), (b, bInterface, bAddresses) })
        {
            foreach (var address in addresses)
            {
                // nodad: an IPv6 address is usable at once (duplicate address detection would hold it for a second).
                await Ip(["-n", ns.Name, "addr", "add", address, "dev", device, .. address.Contains(':', StringComparison.Ordinal) ? new[] { "nodad" } : []]);
            }

            await Ip("-n", ns.Name, "link", "set", device, "up");
        }
    }

    /// <summary>Runs a short command in the namespace; returns its exit code and output.</summary>
    public Task<(int ExitCode, string Output)> ExecAsync(params string[] command) => RunAsync(command, "/", TimeSpan.FromSeconds(60), killOthers: false);

    /// <summary>Runs a command in the namespace to its end; background processes it left are killed before its output is read.</summary>
    public async Task<(int ExitCode, string Output)> RunAsync(IReadOnlyList<string> command, string workingDirectory, TimeSpan timeout, bool killOthers = true)
    {
        var info = new ProcessStartInfo(ExternalProcess.Which("ip")) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory };
        foreach (var argument in (string[])["netns", "exec", Name, .. command])
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        var exited = true;
        using (var deadline = new CancellationTokenSource(timeout))
        {
            try
            {
                await process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                exited = false;
                process.Kill(entireProcessTree: true);
            }
        }

        if (killOthers)
        {
            await KillAllAsync(); // jobs the command left in the background hold its output open
        }

        var output = await stdout.WaitAsync(TimeSpan.FromSeconds(10)) + await stderr.WaitAsync(TimeSpan.FromSeconds(10));
        return (exited ? process.ExitCode : -1, exited ? output : $"timed out after {timeout}:\n{output}");
    }

    /// <summary>Starts a long-running process in the namespace.</summary>
    public ExternalProcess Start(IReadOnlyList<string> command, IReadOnlyDictionary<string, string>? environment = null) =>
        ExternalProcess.Start(ExternalProcess.Which("ip"), ["netns", "exec", Name, .. command], environment);

    private async Task KillAllAsync()
    {
        for (var round = 0; round < 20; round++)
        {
            var (_, pids) = await ExternalProcess.RunAsync(ExternalProcess.Which("ip"), ["netns", "pids", Name]);
            var alive = pids.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToList();
            if (alive.Count == 0)
            {
                return;
            }

            foreach (var pid in alive)
            {
                try
                {
                    Process.GetProcessById(pid).Kill(entireProcessTree: true);
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
                {
                    // Already gone.
                }
            }

            await Task.Delay(50);
        }
    }

    /// <summary>
    /// A listening TCP socket inside the namespace, for a server of the test's own process (Kestrel's
    /// ListenHandle): a socket belongs to the namespace it was made in, so one thread enters the namespace
    /// (setns), makes it and leaves.
    /// </summary>
    public Socket Listen(IPEndPoint endpoint) => Inside(() =>
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(endpoint);
        socket.Listen(512);
        return socket;
    }, $"cannot listen on {endpoint} in {Name}");

    /// <summary>An unconnected TCP socket of the namespace: its connections leave from there (and are captured like the gateway's).</summary>
    public Socket NewSocket(AddressFamily family) =>
        Inside(() => new Socket(family, SocketType.Stream, ProtocolType.Tcp), $"cannot make a socket in {Name}");

    private Socket Inside(Func<Socket> make, string failure)
    {
        Socket? socket = null;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var home = File.OpenHandle("/proc/thread-self/ns/net");
                using var target = File.OpenHandle($"/var/run/netns/{Name}");
                Enter(target);
                try
                {
                    socket = make();
                }
                finally
                {
                    Enter(home);
                }
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        thread.Start();
        thread.Join();
        return socket ?? throw new InvalidOperationException(failure, error);
    }

    private static void Enter(Microsoft.Win32.SafeHandles.SafeFileHandle ns)
    {
        const int CloneNewNet = 0x40000000;
        if (SetNamespace((int)ns.DangerousGetHandle(), CloneNewNet) != 0)
        {
            throw new InvalidOperationException($"setns failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNamespace(int fd, int type);

    /// <summary>A file of the namespace's own /etc (ip netns exec bind-mounts /etc/netns/NAME/FILE over /etc/FILE), e.g. hosts.</summary>
    public void WriteEtcFile(string file, string content)
    {
        Directory.CreateDirectory(EtcDirectory);
        File.WriteAllText(Path.Combine(EtcDirectory, file), content);
    }

    private string EtcDirectory => $"/etc/netns/{Name}";

    public async ValueTask DisposeAsync()
    {
        await KillAllAsync();
        await ExternalProcess.RunAsync(ExternalProcess.Which("ip"), ["netns", "del", Name]);
        if (Directory.Exists(EtcDirectory))
        {
            Directory.Delete(EtcDirectory, recursive: true);
        }
    }
}
