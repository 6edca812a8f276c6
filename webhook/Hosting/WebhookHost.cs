using System.Security.Authentication;
using BackendTls.Webhook.Admin;
using BackendTls.Webhook.Admission;
using BackendTls.Webhook.Certificates;
using BackendTls.Webhook.Cluster;
using BackendTls.Webhook.Index;
using BackendTls.Webhook.Controller;
using BackendTls.Webhook.Injection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using k8s;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace BackendTls.Webhook.Hosting;

/// <summary>
/// The webhook's composition root: HTTPS listener (TLS 1.2+, certificate from <see cref="ICertificateSource"/>
/// per handshake, so rotation needs no restart) serving <c>/mutate</c>, and a plain-HTTP listener for
/// metrics and health.
/// </summary>
internal static class WebhookHost
{
    public static WebApplication Build(WebhookOptions options, Action<IServiceCollection>? configureServices = null, Action<ILoggingBuilder>? configureLogging = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        if (options.LogFormat == "json")
        {
            builder.Logging.AddJsonConsole(o => o.UseUtcTimestamp = true);
        }
        else
        {
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        }

        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        configureLogging?.Invoke(builder.Logging);

        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(options.Injector);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<WebhookMetrics>();
        builder.Services.AddSingleton<AdmissionHandler>();
        builder.Services.TryAddSingleton<ICapturePortSource>(new StaticCapturePorts([]));
        builder.Services.AddSingleton<AdmissionEndpoint>();
        builder.Services.AddHostedService<IdleMemoryTrimmer>();
        AddKubernetes(builder.Services, options);
        AddCertificates(builder.Services, options);
        configureServices?.Invoke(builder.Services);

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = AdmissionEndpoint.MaxRequestBytes;
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(5);
            var certificates = kestrel.ApplicationServices.GetRequiredService<ICertificateSource>();
            if (certificates is FileCertificateSource files)
            {
                files.Reload(); // before the first handshake
            }
            else if (certificates is SelfManagedCertificateSource selfManaged)
            {
                selfManaged.ReconcileAsync(CancellationToken.None).GetAwaiter().GetResult();
            }

            kestrel.Listen(options.Listen, listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(https =>
                {
                    https.SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13;
                    // Asked on every handshake: a rotated certificate is used at once.
                    https.ServerCertificateSelector = (_, _) => certificates.Current;
                });
            });
            kestrel.Listen(options.Metrics, listen => listen.Protocols = HttpProtocols.Http1);
        });

        var app = builder.Build();
        var endpoint = app.Services.GetRequiredService<AdmissionEndpoint>();
        var index = app.Services.GetService<IndexEndpoint>();
        var metrics = app.Services.GetRequiredService<WebhookMetrics>();
        var source = app.Services.GetRequiredService<ICertificateSource>();
        var metricsPort = options.Metrics.Port;
        app.Run(context =>
        {
            if (context.Connection.LocalPort != metricsPort)
            {
                return context.Request.Path.Value switch
                {
                    "/mutate" => endpoint.HandleAsync(context),
                    "/index/v1" => index is not null
                        ? index.HandleAsync(context)
                        : Text(context, StatusCodes.Status503ServiceUnavailable, "no destination index here: the webhook has no Kubernetes API to watch, or runs with --destination-index=false\n"),
                    _ => Text(context, StatusCodes.Status404NotFound, "not found; the webhook serves POST /mutate and GET /index/v1\n"),
                };
            }

            return context.Request.Path.Value switch
            {
                "/metrics" => WriteMetricsAsync(context, metrics),
                "/healthz/live" => Text(context, StatusCodes.Status200OK, "ok\n"),
                "/healthz/ready" => source.Problem is { } problem
                    ? Text(context, StatusCodes.Status503ServiceUnavailable, $"not ready: {problem}\n")
                    : Text(context, StatusCodes.Status200OK, "ready\n"),
                _ => Text(context, StatusCodes.Status404NotFound, "not found; try /metrics /healthz/live /healthz/ready\n"),
            };
        });
        return app;
    }

    /// <summary>The API client and what needs it (watch caches, destination index, controller, self-managed certificates), when an API is configured.</summary>
    private static void AddKubernetes(IServiceCollection services, WebhookOptions options)
    {
        var available = KubernetesClientConfiguration.IsInCluster()
                        || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("KUBECONFIG"))
                        || File.Exists(KubernetesClientConfiguration.KubeConfigDefaultLocation);
        if (available)
        {
            KubernetesClientConfiguration configuration;
            try
            {
                configuration = KubernetesClientConfiguration.BuildDefaultConfig();
            }
            catch (Exception e) when (e is k8s.Exceptions.KubeConfigException or IOException or UnauthorizedAccessException or FormatException)
            {
                var source = Environment.GetEnvironmentVariable("KUBECONFIG") is { Length: > 0 } path ? $"KUBECONFIG={path}" : "the in-cluster service account or ~/.kube/config";
                throw new ArgumentException($"the Kubernetes API configuration ({source}) is unusable: {e.Message}", e);
            }

            services.AddSingleton<IKubernetes>(_ => new Kubernetes(configuration));
        }

        // Watch caches: admission reads namespaces and capture ports from memory; sidecars read the index.
        var watching = available && (options.NamespaceLookup || options.DestinationIndex);
        if (watching)
        {
            services.AddSingleton<DestinationFeed>();
            services.AddSingleton<ClusterView>();
            services.AddHostedService(sp => sp.GetRequiredService<ClusterView>());
            services.AddSingleton<ICapturePortSource>(sp => sp.GetRequiredService<ClusterView>());
        }

        if (watching && options.DestinationIndex)
        {
            services.AddSingleton<IIndexAccess>(sp => new KubernetesIndexAccess(sp.GetRequiredService<IKubernetes>(), sp.GetRequiredService<ClusterView>(), sp.GetRequiredService<TimeProvider>()));
            services.AddSingleton<IndexEndpoint>();
        }

        if (options.NamespaceLookup && watching)
        {
            services.AddSingleton<INamespaceInjectionSource>(sp => sp.GetRequiredService<ClusterView>());
        }
        else
        {
            services.AddSingleton<INamespaceInjectionSource, TrustSelectorNamespaceSource>();
        }

        if (options.Controller && available)
        {
            var identity = Environment.GetEnvironmentVariable("POD_NAME") ?? Environment.MachineName;
            services.AddSingleton(new ControllerOptions(options.Injector.PolicyConfigMap, options.Injector.WebhookNamespace, "backendtls-controller", identity, options.Resync, options.WebhookConfiguration));
            services.AddHostedService<PolicyController>();
        }

        if (options.CertificateMode == "self-managed" && !available)
        {
            throw new ArgumentException("--certificate-mode self-managed needs the Kubernetes API (in-cluster service account or a kubeconfig); none was found");
        }
    }

    private static void AddCertificates(IServiceCollection services, WebhookOptions options)
    {
        if (options.CertificateMode == "self-managed")
        {
            var ns = options.Injector.WebhookNamespace;
            string[] names = [$"{options.ServiceName}.{ns}.svc", $"{options.ServiceName}.{ns}.svc.cluster.local", $"{options.ServiceName}.{ns}"];
            services.AddSingleton<ICertificateStore>(sp => new KubernetesCertificateStore(sp.GetRequiredService<IKubernetes>(), ns, options.CertificateSecret, options.WebhookConfiguration));
            services.AddSingleton(sp => new SelfManagedCertificateSource(sp.GetRequiredService<ICertificateStore>(), names,
                sp.GetRequiredService<WebhookMetrics>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<SelfManagedCertificateSource>>()));
            services.AddSingleton<ICertificateSource>(sp => sp.GetRequiredService<SelfManagedCertificateSource>());
            services.AddHostedService(sp => sp.GetRequiredService<SelfManagedCertificateSource>());
            return;
        }

        services.AddSingleton(sp => new FileCertificateSource(options.CertificateFile, options.KeyFile,
            sp.GetRequiredService<WebhookMetrics>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<FileCertificateSource>>()));
        services.AddSingleton<ICertificateSource>(sp => sp.GetRequiredService<FileCertificateSource>());
        services.AddHostedService(sp => sp.GetRequiredService<FileCertificateSource>());
    }

    private static Task WriteMetricsAsync(HttpContext context, WebhookMetrics metrics)
    {
        // Prometheus 3 refuses a scrape without a Content-Type it knows.
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        return metrics.Registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted);
    }

    private static Task Text(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(text, context.RequestAborted);
    }
}
