using System.Net;
using BackendTls.Webhook.Controller;
using k8s;
using Microsoft.Extensions.Logging.Abstractions;

namespace BackendTls.Webhook.Tests.Controller;

/// <summary>
/// ChangeWatch against an in-process stand-in of the API server's list/watch endpoint for Services (a few
/// lines of Kestrel, not a Kubernetes implementation): list, watch, an event, a 410 ERROR event, relist.
/// The real API server is exercised by the k3s tests.
/// </summary>
public sealed class ChangeWatchTests
{
    /// <summary>Stand-in: answers lists with a resourceVersion; the first watch sends one event then 410.</summary>
    private sealed class ApiStandIn : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _lists;
        private int _watches;

        public ApiStandIn()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
            _app = builder.Build();
            _app.Run(async context =>
            {
                context.Response.ContentType = "application/json";
                if (context.Request.Query["watch"] != "true")
                {
                    var version = Interlocked.Increment(ref _lists) * 10;
                    await context.Response.WriteAsync($$"""{"apiVersion":"v1","kind":"ServiceList","metadata":{"resourceVersion":"{{version}}"},"items":[]}""");
                    return;
                }

                WatchedFrom.Add(context.Request.Query["resourceVersion"].ToString());
                if (Interlocked.Increment(ref _watches) == 1)
                {
                    await context.Response.WriteAsync("""{"type":"ADDED","object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"n","resourceVersion":"11"}}}""" + "\n");
                    await context.Response.WriteAsync("""{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}}""" + "\n");
                    return;
                }

                await Task.Delay(Timeout.Infinite, context.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
            });
        }

        public List<string> WatchedFrom { get; } = [];

        public int Lists => Volatile.Read(ref _lists);

        public string Url => _app.Urls.First();

        public Task StartAsync() => _app.StartAsync();

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    [Fact]
    public async Task ListWatchEvent_Then410_Relists_AndWatchesFromTheNewVersion()
    {
        await using var api = new ApiStandIn();
        await api.StartAsync();
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = api.Url });
        var signals = 0;
        var watch = new ChangeWatch("services",
            async ct => (await client.CoreV1.ListServiceForAllNamespacesAsync(cancellationToken: ct)).Metadata.ResourceVersion,
            (rv, ct) => Types(client.CoreV1.WatchListServiceForAllNamespacesAsync(resourceVersion: rv, cancellationToken: ct)),
            () => Interlocked.Increment(ref signals),
            NullLogger.Instance);
        using var stop = new CancellationTokenSource();

        var running = watch.RunAsync(stop.Token);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (api.WatchedFrom.Count < 2 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        await stop.CancelAsync();
        await running;

        Assert.Equal(2, api.Lists); // the 410 made it list again
        Assert.Equal(["10", "20"], api.WatchedFrom.Take(2)); // each watch starts from its list's resourceVersion
        Assert.True(signals >= 3, $"signals: {signals} (list, event, relist)");
    }

    private static async IAsyncEnumerable<WatchEventType> Types<T>(IAsyncEnumerable<(WatchEventType, T)> events)
    {
        await foreach (var (type, _) in events)
        {
            yield return type;
        }
    }
}
