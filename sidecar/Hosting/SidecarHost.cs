using BackendTls.Policy.Cli;
using System.Net;
using BackendTls.Sidecar.Admin;
using BackendTls.Sidecar.Configuration;
using BackendTls.Sidecar.Destinations;
using BackendTls.Sidecar.Forwarding;
using BackendTls.Sidecar.Listeners;
using BackendTls.Sidecar.Telemetry;
using BackendTls.Sidecar.Upstreams;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace BackendTls.Sidecar.Hosting;

/// <summary>
/// The composition root of the proxy: the config store, the proxy listeners (our own HTTP/1.1 server on
/// plain sockets, see Forwarding/) and Kestrel for the admin listener only. Program, the demo and the
/// tests all build the sidecar here.
/// </summary>
internal static class SidecarHost
{
    public static WebApplication Build(SidecarOptions options, Action<ILoggingBuilder>? configureLogging = null)
    {
        Validate(options);
        _ = BackendTls.Sidecar.Tls.TrustStoreWarmup.Started;
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });

        builder.Logging.ClearProviders();
        ConsoleLogging.Add(builder.Logging, options.LogFormat);
        builder.Logging.SetMinimumLevel(options.LogLevel);
        // Kestrel's per-request and hosting logs would drown ours at Information.
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        configureLogging?.Invoke(builder.Logging);

        var clientCertificates = new BackendTls.Sidecar.Tls.ClientCertificates(options.ClientCertificateDir, TimeProvider.System);
        clientCertificates.Reload(); // before the first connection
        var upstream = new UpstreamSettings(options.ConnectTimeout, options.HandshakeTimeout, options.UpstreamIdleTimeout, options.Resolve, options.ResponseTimeout, clientCertificates);
        builder.Services.AddSingleton(clientCertificates);
        builder.Services.AddHostedService<ClientCertificateWatcher>();
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<SidecarMetrics>();
        builder.Services.AddSingleton(new ConfigSettings(options.ConfigDir, options.ClusterDomain, options.ReloadPollInterval, upstream));
        builder.Services.AddSingleton<DestinationStore>();
        if (options.IndexUrl is { } indexUrl)
        {
            builder.Services.AddSingleton(new IndexWatchSettings(indexUrl, options.IndexTokenFile, Path.Combine(options.ConfigDir, "index-ca.crt")));
            builder.Services.AddSingleton<IndexWatcher>();
            builder.Services.AddSingleton<IIndexStatus>(sp => sp.GetRequiredService<IndexWatcher>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<IndexWatcher>());
        }
        else
        {
            builder.Services.AddSingleton<IIndexStatus, NoIndex>();
        }

        builder.Services.AddSingleton<IDestinationSource>(sp => sp.GetRequiredService<DestinationStore>());
        builder.Services.AddSingleton(sp => new ConfigStore(sp.GetRequiredService<ConfigSettings>(), sp.GetRequiredService<SidecarMetrics>(),
            sp.GetRequiredService<ILoggerFactory>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<DestinationStore>().LoadFrom));
        builder.Services.AddSingleton<IProxySnapshotSource>(sp => sp.GetRequiredService<ConfigStore>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ConfigStore>());
        builder.Services.AddSingleton<Heartbeat>();
        builder.Services.AddSingleton(sp =>
        {
            var context = new ProxyContext(
                new ProxySettings(options.IdleTimeout, options.RequestHeadersTimeout, options.ResponseTimeout, options.BodyIdleTimeout, options.UpgradeIdleTimeout),
                new CaptureSettings(options.UnknownDestination == "passthrough", options.UnknownHold, options.ConnectTimeout),
                sp.GetRequiredService<IProxySnapshotSource>(),
                sp.GetRequiredService<IDestinationSource>(),
                sp.GetRequiredService<SidecarMetrics>(),
                sp.GetRequiredService<Heartbeat>(),
                sp.GetRequiredService<ILoggerFactory>().CreateLogger("BackendTls.Sidecar.Proxy"));
            context.Forwarder = new Forwarder(context);
            context.H2c = sp.GetRequiredService<H2cHandoff>();
            return context;
        });
        builder.Services.AddSingleton(sp => new ProxyListeners(options.Listen, options.CapturePort, sp.GetRequiredService<ConfigStore>(),
            sp.GetRequiredService<ProxyContext>(), sp.GetRequiredService<ILoggerFactory>()));
        builder.Services.AddSingleton<IListenerStatus>(sp => sp.GetRequiredService<ProxyListeners>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ProxyListeners>());
        builder.Services.AddSingleton<AdminEndpoints>();
        builder.Services.AddSingleton<H2cHandoff>();
        builder.Services.AddSingleton<Microsoft.AspNetCore.Connections.IConnectionListenerFactory>(sp => sp.GetRequiredService<H2cHandoff>());
        builder.Services.AddSingleton(sp => new H2cLane(sp.GetRequiredService<ProxyContext>()));
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.DrainTimeout);

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(options.Admin, l => l.Protocols = HttpProtocols.Http1);
            // h2c connections the proxy's listeners detected (gRPC): HTTP/2 only, and no limits a long
            // stream would trip over (body size, minimum data rates); the backend and its deadlines decide.
            kestrel.Listen(H2cHandoff.EndPoint, l => l.Protocols = HttpProtocols.Http2);
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.MinRequestBodyDataRate = null;
            kestrel.Limits.MinResponseDataRate = null;
        });

        var app = builder.Build();
        var admin = app.Services.GetRequiredService<AdminEndpoints>();
        var h2c = app.Services.GetRequiredService<H2cLane>();
        app.Run(http => http.Features.Get<H2cConnectionFeature>() is null ? admin.HandleAsync(http) : h2c.HandleAsync(http));

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
        // Options built in code (demo, tests) skip the flag parsers; the same checks apply to them.
        var problems = options.Problems().ToList();
        if (problems.Count > 0)
        {
            throw new OptionsException(problems);
        }
    }
}
