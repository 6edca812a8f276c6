namespace BackendTls.Tests.Shared;

/// <summary>nginx (Debian package) run in the foreground from its own temporary prefix, on loopback ports.</summary>
internal sealed class Nginx : IAsyncDisposable
{
    private readonly ExternalProcess _process;

    private Nginx(ExternalProcess process, string prefix)
    {
        _process = process;
        Prefix = prefix;
    }

    public string Prefix { get; }

    public static bool Available => ExternalProcess.OnPath("nginx");

    /// <summary>Starts nginx with the given http{} body and waits for <paramref name="port"/>.</summary>
    /// <param name="httpBlock">The http{} body.</param>
    /// <param name="port">A port it listens on.</param>
    /// <param name="master">Run a master process, so <see cref="ReloadAsync"/> can reload it gracefully.</param>
    /// <param name="ns">A network namespace to run it in (then the port is waited for there).</param>
    /// <param name="mainBlock">Directives for nginx's main context (e.g. <c>user nobody;</c>).</param>
    public static async Task<Nginx> StartAsync(string httpBlock, int port, bool master = false, NetworkNamespace? ns = null, string mainBlock = "")
    {
        var prefix = Directory.CreateTempSubdirectory("nginx-test-").FullName;
        if (ns is not null && !OperatingSystem.IsWindows())
        {
            // Workers that run as nobody must reach the files of their prefix.
            File.SetUnixFileMode(prefix, (UnixFileMode)0b111_101_101);
        }

        var config = $$"""
            {{mainBlock}}
            worker_processes 1;
            error_log {{prefix}}/error.log warn;
            pid {{prefix}}/nginx.pid;
            events { worker_connections 256; }
            http {
              access_log off;
              client_body_temp_path {{prefix}}/body;
              proxy_temp_path {{prefix}}/proxy;
              fastcgi_temp_path {{prefix}}/fastcgi;
              uwsgi_temp_path {{prefix}}/uwsgi;
              scgi_temp_path {{prefix}}/scgi;
            {{httpBlock}}
            }
            """;
        File.WriteAllText(Path.Combine(prefix, "nginx.conf"), config);
        string[] arguments = ["-p", prefix, "-c", Path.Combine(prefix, "nginx.conf"), "-g", master ? "daemon off;" : "daemon off; master_process off;"];
        var process = ns is null
            ? ExternalProcess.Start(ExternalProcess.Which("nginx"), arguments)
            : ns.Start([ExternalProcess.Which("nginx"), .. arguments]);
        var nginx = new Nginx(process, prefix);
        try
        {
            if (ns is null)
            {
                await process.WaitForPortAsync(port);
            }
            else
            {
                await Eventually.HoldsAsync(async () =>
                {
                    var (_, listening) = await ns.ExecAsync("ss", "-ltnH");
                    return (listening.Contains($":{port} ", StringComparison.Ordinal), listening);
                }, $"nginx listening on port {port} in {ns.Name}");
            }
        }
        catch
        {
            var log = File.Exists(Path.Combine(prefix, "error.log")) ? File.ReadAllText(Path.Combine(prefix, "error.log")) : string.Empty;
            await nginx.DisposeAsync();
            throw new InvalidOperationException($"nginx did not start: {process.Output}\n{log}");
        }

        return nginx;
    }

    /// <summary>A graceful reload (nginx -s reload): new workers take new connections, old ones finish theirs.</summary>
    public async Task ReloadAsync()
    {
        var (code, output) = await ExternalProcess.RunAsync(ExternalProcess.Which("nginx"), ["-p", Prefix, "-c", Path.Combine(Prefix, "nginx.conf"), "-s", "reload"]);
        if (code != 0)
        {
            throw new InvalidOperationException($"nginx -s reload failed: {output}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _process.DisposeAsync();
        Directory.Delete(Prefix, recursive: true);
    }
}
