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
    public static async Task<Nginx> StartAsync(string httpBlock, int port, bool master = false)
    {
        var prefix = Directory.CreateTempSubdirectory("nginx-test-").FullName;
        var config = $$"""
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
        var process = ExternalProcess.Start(ExternalProcess.Which("nginx"),
            ["-p", prefix, "-c", Path.Combine(prefix, "nginx.conf"), "-g", master ? "daemon off;" : "daemon off; master_process off;"]);
        var nginx = new Nginx(process, prefix);
        try
        {
            await process.WaitForPortAsync(port);
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
