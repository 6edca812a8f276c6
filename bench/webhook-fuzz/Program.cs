using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using BackendTls.Policy.Yaml;
using BackendTls.Tests.Shared;

// bench/webhook-fuzz: the webhook process, its HTTPS port, the corpus folder, the count, the concurrency, how long to watch after, its certificate.
if (args.Length < 7)
{
    Console.Error.WriteLine("usage: WebhookFuzz WEBHOOK_PID HTTPS_PORT CORPUS_DIR COUNT CONCURRENCY SETTLE_SECONDS SERVING_CERT");
    return 2;
}

var pid = int.Parse(args[0], CultureInfo.InvariantCulture);
var port = int.Parse(args[1], CultureInfo.InvariantCulture);
var seeds = ReviewFuzzer.Seeds(Directory.GetFiles(args[2], "*.yaml").Select(f => YamlDocuments.Parse(File.ReadAllText(f), f, typedScalars: true)[0].AsObject()));
var count = int.Parse(args[3], CultureInfo.InvariantCulture);
var concurrency = int.Parse(args[4], CultureInfo.InvariantCulture);
var settle = int.Parse(args[5], CultureInfo.InvariantCulture);

static long RssKiB(int pid) => File.ReadLines($"/proc/{pid}/status").Where(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
    .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture)).Single();

// The webhook's self-signed serving certificate, pinned.
using var serving = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificateFromFile(args[6]);
var pinned = serving.GetCertHashString();
using var handler = new SocketsHttpHandler
{
    SslOptions = { RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate?.GetCertHashString() == pinned },
    MaxConnectionsPerServer = concurrency,
};
// HTTP/2 as the API server speaks it; FUZZ_HTTP=1.1 for one connection per request in flight instead.
var version = Environment.GetEnvironmentVariable("FUZZ_HTTP") == "1.1" ? HttpVersion.Version11 : HttpVersion.Version20;
using var client = new HttpClient(handler)
{
    BaseAddress = new Uri($"https://127.0.0.1:{port}"),
    DefaultRequestVersion = version,
    DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
};
var cold = RssKiB(pid);

async Task<(Dictionary<int, int> Statuses, int Wrong)> FuzzAsync(int total, int inFlight, int seed)
{
    var statuses = new Dictionary<int, int>();
    var wrong = 0;
    var next = -1;
    await Task.WhenAll(Enumerable.Range(0, inFlight).Select(async worker =>
    {
        var random = new Random(seed + worker);
        while (Interlocked.Increment(ref next) < total)
        {
            var body = ReviewFuzzer.Mutate(seeds[random.Next(seeds.Count)], random);
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new("application/json");
            using var response = await client.PostAsync("/mutate", content);
            var answer = await response.Content.ReadAsByteArrayAsync();
            lock (statuses)
            {
                statuses[(int)response.StatusCode] = statuses.GetValueOrDefault((int)response.StatusCode) + 1;
            }

            var uid = ReviewFuzzer.ReadableUid(body);
            var ok = uid is null
                ? response.StatusCode == HttpStatusCode.BadRequest
                : response.StatusCode == HttpStatusCode.OK && (string?)JsonNode.Parse(answer)?["response"]?["uid"] == uid;
            if (!ok)
            {
                Interlocked.Increment(ref wrong);
            }
        }
    }));
    return (statuses, wrong);
}

// Warm: every code path has run once (its code is in memory), then the webhook sat idle for a while.
await FuzzAsync(2000, 4, 1);
await Task.Delay(TimeSpan.FromSeconds(25));
var idle = RssKiB(pid);
var peak = idle;
using var sampling = new CancellationTokenSource();
var sampler = Task.Run(async () =>
{
    while (!sampling.IsCancellationRequested)
    {
        peak = Math.Max(peak, RssKiB(pid));
        await Task.Delay(100);
    }
});
var stopwatch = Stopwatch.StartNew();
var (statuses, wrong) = await FuzzAsync(count, concurrency, 20261201);
var elapsed = stopwatch.Elapsed;
var afterRun = RssKiB(pid);
client.Dispose(); // the connections close, as the API server's do when its load ends
var settled = new List<(int Seconds, long Rss)>();
for (var s = 1; s <= settle; s++)
{
    await Task.Delay(1000);
    if (s is 5 or 10 or 30 or 60 || s == settle)
    {
        settled.Add((s, RssKiB(pid)));
    }
}

await sampling.CancelAsync();
await sampler;
Console.WriteLine($"reviews: {count} in {elapsed.TotalSeconds:0.0} s ({count / elapsed.TotalSeconds:0} /s), {concurrency} in flight over HTTP/{version}");
Console.WriteLine($"statuses: {string.Join(", ", statuses.OrderBy(p => p.Key).Select(p => $"{p.Key}={p.Value}"))}; answers not as the oracle expects: {wrong}");
Console.WriteLine($"webhook RSS: at start {cold / 1024.0:0.0} MiB, idle after a warm-up {idle / 1024.0:0.0} MiB, peak {peak / 1024.0:0.0} MiB, at the end of the run {afterRun / 1024.0:0.0} MiB");
Console.WriteLine("after the run: " + string.Join(", ", settled.Select(p => $"{p.Seconds} s {p.Rss / 1024.0:0.0} MiB")));
Console.WriteLine($"ratio after {settled[^1].Seconds} s to idle: {settled[^1].Rss / (double)idle:0.00}x (target under 2x)");
return wrong == 0 && !statuses.ContainsKey(500) ? 0 : 1;
