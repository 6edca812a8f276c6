using System.Net;
using BackendTls.Sidecar.Admin;
using BackendTls.Sidecar.Configuration;
using BackendTls.Sidecar.Forwarding;
using BackendTls.Sidecar.Logging;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace BackendTls.Sidecar.Hosting;

/// <summary>
/// The composition root of the proxy: one Kestrel server with the plain-HTTP listener (plus any dedicated
/// target ports) and the admin listener, the config store, and the two request handlers, chosen by
/// local port. Program, the demo and the tests all build the sidecar here.
/// </summary>
internal static class SidecarHost
{
    public static WebApplication Build(SidecarOptions options, Action<ILoggingBuilder>? configureLogging = null)
    {
        Validate(options);
        _ = BackendTls.Sidecar.Tls.TrustStoreWarmup.Started;
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });

        builder.Logging.ClearProviders();
        if (options.LogFormat == "json")
        {
            builder.Logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            });
        }
        else
        {
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
        }

        builder.Logging.SetMinimumLevel(options.LogLevel);
        // Kestrel's per-request and hosting logs would drown ours at Information.
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        configureLogging?.Invoke(builder.Logging);

        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<SidecarMetrics>();
        builder.Services.AddSingleton<ConfigStore>();
        builder.Services.AddSingleton<IProxySnapshotSource>(sp => sp.GetRequiredService<ConfigStore>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ConfigStore>());
        builder.Services.AddSingleton<ProxyHandler>();
        builder.Services.AddSingleton<AdminEndpoints>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.DrainTimeout);

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.AllowHostHeaderOverride = true; // absolute-form targets name the backend
            kestrel.Limits.MaxRequestBodySize = null; // bodies are streamed, not held
            kestrel.Limits.RequestHeadersTimeout = options.RequestHeadersTimeout;
            kestrel.Limits.KeepAliveTimeout = options.IdleTimeout;
            kestrel.Listen(options.Listen, l => l.Protocols = HttpProtocols.Http1);
            kestrel.Listen(options.Admin, l => l.Protocols = HttpProtocols.Http1);

            // Load before binding so dedicated target ports are known; an invalid config still starts
            // the process (not ready), so the problem is visible in logs and on /healthz/ready.
            var store = kestrel.ApplicationServices.GetRequiredService<ConfigStore>();
            store.ReloadIfChanged();
            var logger = kestrel.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger("BackendTls.Sidecar");
            foreach (var target in store.Current?.Targets ?? [])
            {
                if (target.Config.ListenPort is { } port)
                {
                    kestrel.Listen(new IPEndPoint(options.Listen.Address, port), l => l.Protocols = HttpProtocols.Http1);
                    Log.DedicatedPort(logger, port, target.Id);
                }
            }
        });

        var app = builder.Build();
        var proxy = app.Services.GetRequiredService<ProxyHandler>();
        var admin = app.Services.GetRequiredService<AdminEndpoints>();
        var adminPort = options.Admin.Port;
        app.Run(context => context.Connection.LocalPort == adminPort ? admin.HandleAsync(context) : proxy.HandleAsync(context));

        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("BackendTls.Sidecar");
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            Log.Started(log, options.Listen.ToString(), options.Admin.ToString(), options.ConfigDir);
            if (!IPAddress.IsLoopback(options.Listen.Address))
            {
                Log.NonLoopbackListener(log, options.Listen.ToString());
            }
        });
        app.Lifetime.ApplicationStopping.Register(() => Log.Draining(log, options.DrainTimeout.TotalSeconds));
        return app;
    }

    private static void Validate(SidecarOptions options)
    {
        if (options.Listen.Port == options.Admin.Port)
        {
            throw new OptionsException($"--listen and --admin both use port {options.Listen.Port}; give the admin listener its own port");
        }

        if (string.IsNullOrWhiteSpace(options.ConfigDir))
        {
            throw new OptionsException("--config-dir is empty; point it at the mounted policy ConfigMap");
        }

        if (!BackendTls.Policy.Validation.Names.IsDns1123Subdomain(options.ClusterDomain))
        {
            throw new OptionsException($"--cluster-domain \"{options.ClusterDomain}\" is not a DNS name");
        }
    }
}
