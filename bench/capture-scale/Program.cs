// The destination index at cluster scale. Prints figures; writes the offline render's config directory to
// args[0] so the script can start the real sidecar on it. Usage: CaptureScale OUT_DIR [NAMESPACES=500]
// [SERVICES_PER_NAMESPACE=10] [ENDPOINTS_PER_SERVICE=10] [INJECTED_NAMESPACES=100]
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BackendTls.Policy.Destinations;
using BackendTls.Policy.Loading;
using BackendTls.Policy.Rendering;
using BackendTls.Sidecar.Demo;
using BackendTls.Sidecar.Destinations;
using BackendTls.Webhook.Cluster;
using BackendTls.Webhook.Controller;

var output = args[0];
int Arg(int i, int fallback) => args.Length > i ? int.Parse(args[i], CultureInfo.InvariantCulture) : fallback;
var namespaces = Arg(1, 500);
var perNamespace = Arg(2, 10);
var perService = Arg(3, 10);
var injected = Arg(4, 100);
var targets = namespaces * perNamespace;
Console.WriteLine($"cluster: {namespaces} namespaces x {perNamespace} Services = {targets} policy targets, {perService} endpoints each = {targets * perService} endpoints; {injected} injected namespaces");

// Names as diverse as a real cluster's (random parts compress as badly as real ones), and a CA of each team's own.
var random = new Random(42);
string Hex(int length) => Convert.ToHexStringLower(random.GetItems<byte>(Enumerable.Range(0, 256).Select(b => (byte)b).ToArray(), (length + 1) / 2))[..length];
var objects = new List<KubeObject>();
var distinctCas = Math.Min(namespaces, 500);
var cas = Enumerable.Range(0, distinctCas).Select(i => CertificateAuthority.Create($"CN=Team {i} Root")).ToList();
for (var n = 0; n < namespaces; n++)
{
    var ns = $"team-{Hex(6)}-{n}";
    var ca = cas[n % distinctCas];
    objects.Add(Object($$$$"""{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"root-ca","namespace":"{{{{ns}}}}"},"data":{"ca.crt":{{{{JsonSerializer.Serialize(ca.CertificatePem)}}}}}}"""));
    for (var s = 0; s < perNamespace; s++)
    {
        var index = (n * perNamespace) + s;
        var name = $"{(s % 2 == 0 ? "payments" : "catalog")}-{Hex(8)}";
        var clusterIp = $"10.{96 + (index >> 16)}.{(index >> 8) & 255}.{index & 255}";
        objects.Add(Object($$$$"""{"apiVersion":"v1","kind":"Service","metadata":{"name":"{{{{name}}}}","namespace":"{{{{ns}}}}"},"spec":{"clusterIP":"{{{{clusterIp}}}}","ports":[{"name":"https","port":443,"targetPort":"https"}]}}"""));
        var endpoints = string.Join(",", Enumerable.Range(0, perService).Select(e =>
        {
            var ip = (index * perService) + e;
            return $$$$"""{"addresses":["10.{{{{128 + (ip >> 16)}}}}.{{{{(ip >> 8) & 255}}}}.{{{{ip & 255}}}}"]}""";
        }));
        objects.Add(Object($$$$"""{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"{{{{name}}}}-a","namespace":"{{{{ns}}}}","labels":{"kubernetes.io/service-name":"{{{{name}}}}"}},"addressType":"IPv4","ports":[{"name":"https","port":8443}],"endpoints":[{{{{endpoints}}}}]}"""));
        objects.Add(Object($$$$"""{"apiVersion":"gateway.networking.k8s.io/v1","kind":"BackendTLSPolicy","metadata":{"name":"{{{{name}}}}","namespace":"{{{{ns}}}}"},"spec":{"targetRefs":[{"group":"","kind":"Service","name":"{{{{name}}}}"}],"validation":{"caCertificateRefs":[{"group":"","kind":"ConfigMap","name":"root-ca"}],"hostname":"{{{{name}}}}.{{{{ns}}}}.svc.prod.example.com"}}}"""));
    }
}

// 1. The controller's pass: render into the ConfigMap every injected namespace mounts.
var injectedSet = Enumerable.Range(0, injected).Select(i => $"gw-{i}").ToHashSet();
ReconcileResult? reconciled = null;
var reconcileMs = Median(3, () => reconciled = PolicyReconciler.Reconcile(new ClusterState(objects, injectedSet), "backendtls-policy", DateTimeOffset.UtcNow));
var configMap = reconciled!.ConfigMaps[0];
var configMapBytes = configMap.Data.Sum(f => Encoding.UTF8.GetByteCount(f.Key) + Encoding.UTF8.GetByteCount(f.Value))
                     + configMap.BinaryData.Sum(f => Encoding.UTF8.GetByteCount(f.Key) + f.Value.Length);
var textBytes = reconciled.Render.Files.Sum(f => (long)Encoding.UTF8.GetByteCount(f.Value));
Console.WriteLine($"controller pass (render + status of {targets} policies): {reconcileMs:0} ms");
Console.WriteLine($"ConfigMap per injected namespace: {Kib(configMapBytes)} ({Pct(configMapBytes, 1 << 20)} of the 1 MiB limit); as text it would be {Kib(textBytes)}");
var caFiles = configMap.Data.Where(f => f.Key.StartsWith("ca.", StringComparison.Ordinal)).ToList();
Console.WriteLine($"  {caFiles.Count} CA files (named by content, one per distinct bundle): {Kib(caFiles.Sum(f => (long)Encoding.UTF8.GetByteCount(f.Value)))}");
foreach (var (name, bytes) in configMap.BinaryData)
{
    Console.WriteLine($"  {name}: {Kib(bytes.Length)}");
}

// 2. The offline render (the render command: every Service and its endpoints), written for the real sidecar.
RenderResult? offline = null;
var renderMs = Median(3, () => offline = PolicyRenderer.Render(objects));
Directory.CreateDirectory(output);
foreach (var (name, text) in offline!.Files)
{
    File.WriteAllText(Path.Combine(output, name), text);
}

var offlineIndex = Encoding.UTF8.GetByteCount(offline.Files[DestinationIndex.FileName]);
Console.WriteLine($"offline render (render -f, every Service with endpoints): {renderMs:0} ms; destinations.json {Kib(offlineIndex)}");

// 3. The webhook's index: every Service's entry, the full answer, and the delta of one endpoint change.
var entries = offline.Destinations!.Services;
var feed = new DestinationFeed();
var before = Allocated();
var buildMs = Stopwatch.StartNew();
foreach (var entry in entries)
{
    feed.Set($"{entry.Namespace}/{entry.Name}", entry);
}

buildMs.Stop();
var feedBytes = Retained(before);
string fullJson = string.Empty;
var serveMs = Median(5, () => fullJson = JsonSerializer.Serialize(feed.Since(null, 0), DestinationUpdateJsonContext.Default.DestinationUpdate));
var revision = feed.Revision;
var changed = entries[0] with { Endpoints = [entries[0].Endpoints[0] with { Addresses = [.. entries[0].Endpoints[0].Addresses, "10.255.0.1"] }] };
feed.Set($"{changed.Namespace}/{changed.Name}", changed);
var deltaJson = JsonSerializer.Serialize(feed.Since(feed.Epoch, revision), DestinationUpdateJsonContext.Default.DestinationUpdate);
var deltaBytes = Encoding.UTF8.GetByteCount(deltaJson);
Console.WriteLine($"webhook index: {entries.Count} Services built in {buildMs.Elapsed.TotalMilliseconds:0} ms, {Mib(feedBytes)} held; " +
                  $"full answer {Kib(Encoding.UTF8.GetByteCount(fullJson))} serialized in {serveMs:0} ms; one endpoint change: a {deltaBytes} B delta");

// 4. The sidecar's table from the full index (what it does with the first answer and every delta).
DestinationTable? table = null;
var tableBefore = Allocated();
var tableMs = Median(3, () => table = DestinationTable.Build(new DestinationIndex { Services = entries }));
var tableBytes = Retained(tableBefore);
var lookups = Stopwatch.StartNew();
var probe = new System.Net.IPEndPoint(System.Net.IPAddress.Parse("10.128.3.7"), 8443);
var found = 0;
for (var i = 0; i < 1_000_000; i++)
{
    found += table!.Lookup(probe).Length;
}

lookups.Stop();
Console.WriteLine($"sidecar table: {table!.Addresses} addresses built in {tableMs:0} ms, about {Mib(tableBytes)}; lookup {lookups.Elapsed.TotalNanoseconds / 1_000_000:0} ns ({found / 1_000_000} match)");

// 5. The sidecar's config load (5,000 targets and their CA files).
var loadMs = Median(3, () =>
{
    var outcome = new ConfigLoader().Load(new ConfigDirectory(output));
    if (!outcome.Succeeded)
    {
        throw new InvalidOperationException(string.Join("\n", outcome.Errors));
    }
});
var configText = File.ReadAllText(Path.Combine(output, "backendtls.yaml"));
var parseMs = Median(3, () => ConfigLoader.Parse(configText, "backendtls.yaml"));
Console.WriteLine($"sidecar config load ({targets} targets): {loadMs:0} ms, of which parsing the YAML {parseMs:0} ms");

// 6. Write amplification of one endpoint change, the channel we chose against the ConfigMap channel.
var configMapWithEndpoints = configMapBytes - configMap.BinaryData[DestinationIndex.FileName + BoundedFile.GzipSuffix].Length
                             + BoundedFile.Gzip(JsonSerializer.Serialize(reconciled.Render.Destinations!, DestinationIndexJsonContext.Default.DestinationIndex)).Length;
Console.WriteLine($"one endpoint change, {injected} injected namespaces with one gateway pod each:");
Console.WriteLine($"  live index (chosen): 0 ConfigMap writes; {deltaBytes} B to each sidecar = {Kib(deltaBytes * injected)} in all");
Console.WriteLine($"  endpoints in the ConfigMap (not chosen): {injected} ConfigMap writes of {Kib(configMapWithEndpoints)} = {Mib(configMapWithEndpoints * (long)injected)} " +
                  $"({(configMapWithEndpoints * (double)injected / Math.Max(1, deltaBytes * injected)):0}x), each then remounted by kubelet" +
                  (configMapWithEndpoints > 1 << 20 ? "; and over the 1 MiB ConfigMap limit" : string.Empty));
Console.WriteLine($"one policy change: {injected} ConfigMap writes of {Kib(configMapBytes)} = {Mib(configMapBytes * (long)injected)}");

static KubeObject Object(string json) => KubeObject.FromDocuments([JsonNode.Parse(json)!], "generated").Single();

static double Median(int runs, Action action)
{
    var times = new List<double>();
    for (var i = 0; i < runs; i++)
    {
        var watch = Stopwatch.StartNew();
        action();
        times.Add(watch.Elapsed.TotalMilliseconds);
    }

    return times.Order().ElementAt(runs / 2);
}

static long Allocated()
{
    GC.Collect();
    GC.WaitForPendingFinalizers();
    GC.Collect();
    return GC.GetTotalMemory(forceFullCollection: true);
}

static long Retained(long before) => Allocated() - before;

static string Kib(long bytes) => $"{bytes / 1024.0:0.0} KiB";

static string Mib(long bytes) => $"{bytes / (1024.0 * 1024):0.0} MiB";

static string Pct(long part, long whole) => $"{part * 100.0 / whole:0}%";
