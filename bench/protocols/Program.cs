// WebSocket and gRPC through a real sidecar process, against the same backends direct, in one run; then
// 1,000 concurrent WebSockets (the sidecar's RSS), then the handshake cost of a client certificate. Prints
// figures and ratios. Everything listens on 127.0.0.1; the sidecar is killed at the end.
using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using BackendTls.Policy.Rendering;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Shared;
using BackendTls.Tests.Shared.Grpc;
using Grpc.Core;
using Grpc.Net.Client;

var rounds = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 2000;
const string Host = "bench.example.com";
using var ca = CertificateAuthority.Create("CN=Bench Root");
using var clientCa = CertificateAuthority.Create("CN=Bench Client Root");
var work = Directory.CreateTempSubdirectory("protocols-bench-").FullName;
try
{
    await using var ws = await WebSocketBackend.StartAsync(ca.Issue("CN=ws", dnsNames: [Host]));
    await using var grpc = await GrpcBackend.StartAsync(ca.Issue("CN=grpc", dnsNames: [Host]));
    await using var plain = await EchoBackend.StartAsync(ca.Issue("CN=plain", dnsNames: [Host]), httpProtocols: Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1);
    await using var mtls = await EchoBackend.StartAsync(ca.Issue("CN=mtls", dnsNames: [Host]), httpProtocols: Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1,
        acceptClientCertificate: c => c is not null);

    // The config the controller would render: four Services, one CA, the same hostname.
    var manifests = Manifests.CaConfigMap("root-ca", ca.CertificatePem);
    foreach (var name in new[] { "ws", "grpc", "plain", "mtls" })
    {
        manifests += Manifests.Service(name) + Manifests.Policy(name, name, Host);
    }

    var config = Path.Combine(work, "config");
    BackendTls.Sidecar.Cli.RenderCommand.WriteDirectory(config, PolicyRenderer.RenderYaml([("bench.yaml", manifests)]).Files);
    var secret = Directory.CreateDirectory(Path.Combine(work, "client")).FullName;
    using (var client = clientCa.Issue("CN=gateway", serverAuth: false))
    {
        File.WriteAllText(Path.Combine(secret, "tls.crt"), client.ExportCertificatePem());
        File.WriteAllText(Path.Combine(secret, "tls.key"), client.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
    }

    var (port, admin) = (FreePort(), FreePort());
    var sidecarArgs = new List<string> { Path.Combine(AppContext.BaseDirectory, "backendtls-sidecar.dll"), "run", "--config-dir", config,
        "--listen", $"127.0.0.1:{port}", "--admin", $"127.0.0.1:{admin}", "--log-level", "Warning", "--client-certificate-dir", secret };
    foreach (var (name, backendPort) in new[] { ("ws", ws.Port), ("grpc", grpc.Port), ("plain", plain.Port), ("mtls", mtls.Port) })
    {
        sidecarArgs.AddRange(["--resolve", $"{name}.default.svc.cluster.local:8443:127.0.0.1:{backendPort}"]);
    }

    using var sidecar = Process.Start(new ProcessStartInfo("dotnet", sidecarArgs) { RedirectStandardOutput = true, RedirectStandardError = true })!;
    using var http = new HttpClient();
    for (var i = 0; ; i++)
    {
        try
        {
            if ((await http.GetAsync($"http://127.0.0.1:{admin}/healthz/ready")).IsSuccessStatusCode)
            {
                break;
            }
        }
        catch (HttpRequestException) when (i < 300)
        {
        }

        await Task.Delay(50);
    }

    try
    {
        Console.WriteLine($"protocols bench: {rounds} round trips each, sidecar pid {sidecar.Id} (JIT), {Environment.ProcessorCount} cores");

        // 1. WebSocket: a 64-byte message and its echo, one at a time, on one socket.
        var message = new byte[64];
        var direct = await WebSocketRoundTripsAsync(await DirectWebSocketAsync(ws.Port, ca.Certificate), message, rounds);
        var proxied = await WebSocketRoundTripsAsync(await WebSocketBackend.ConnectThroughAsync(port, new Uri($"ws://ws.default.svc.cluster.local:8443/echo"), CancellationToken.None), message, rounds);
        Report("WebSocket 64 B round trip", direct, proxied);

        // 2. gRPC unary: 64 bytes each way.
        using var directChannel = GrpcChannel.ForAddress($"https://{Host}:{grpc.Port}", new GrpcChannelOptions { HttpHandler = Trusting(ca.Certificate, grpc.Port) });
        using var proxiedChannel = GrpcClients.Loopback("grpc.default.svc.cluster.local:8443", port);
        Report("gRPC unary 64 B", await UnaryAsync(directChannel, message, rounds), await UnaryAsync(proxiedChannel, message, rounds));

        // 3. 1,000 concurrent WebSockets through the sidecar: its RSS before, with them open, after.
        var before = Rss(sidecar.Id);
        var sockets = new List<ClientWebSocket>();
        for (var i = 0; i < 1000; i++)
        {
            var socket = await WebSocketBackend.ConnectThroughAsync(port, new Uri($"ws://ws.default.svc.cluster.local:8443/echo"), CancellationToken.None);
            await socket.SendAsync(message, WebSocketMessageType.Binary, true, CancellationToken.None);
            await WebSocketBackend.ReceiveAsync(socket, CancellationToken.None);
            sockets.Add(socket);
        }

        var open = Rss(sidecar.Id);
        await Task.WhenAll(sockets.Select(s => s.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None)));
        sockets.ForEach(s => s.Dispose());
        Console.WriteLine($"1,000 concurrent WebSockets: sidecar RSS {before / 1024.0:0.0} MiB before, {open / 1024.0:0.0} MiB with all open ({(open - before) / 1000.0:0.0} KiB each)");

        // 4. Handshake cost of a client certificate: each request forces a new verified connection (?close).
        for (var i = 0; i < 300; i++)
        {
            foreach (var target in new[] { "plain", "mtls" })
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{port}/?close=1");
                request.Headers.Host = $"{target}.default.svc.cluster.local:8443";
                using var response = await http.SendAsync(request);
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    throw new InvalidOperationException($"{target}: {response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                }
            }
        }

        var metrics = await http.GetStringAsync($"http://127.0.0.1:{admin}/metrics");
        double Mean(string target) =>
            double.Parse(Regex.Match(metrics, $"backendtls_upstream_handshake_duration_seconds_sum\\{{target=\"default/{target}:8443\"\\}} (\\S+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)
            / double.Parse(Regex.Match(metrics, $"backendtls_upstream_handshake_duration_seconds_count\\{{target=\"default/{target}:8443\"\\}} (\\S+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) * 1000;
        Console.WriteLine($"verified handshake (sidecar's histogram, 300 each, no session resumption): without a client certificate {Mean("plain"):0.00} ms, " +
            $"with one {Mean("mtls"):0.00} ms ({Mean("mtls") / Mean("plain"):0.00}x)");
    }
    finally
    {
        sidecar.Kill(entireProcessTree: true);
    }
}
finally
{
    Directory.Delete(work, recursive: true);
}

static async Task<List<double>> WebSocketRoundTripsAsync(ClientWebSocket socket, byte[] message, int rounds)
{
    using (socket)
    {
        var times = new List<double>(rounds);
        for (var i = 0; i < rounds + 100; i++)
        {
            var started = Stopwatch.GetTimestamp();
            await socket.SendAsync(message, WebSocketMessageType.Binary, true, CancellationToken.None);
            await WebSocketBackend.ReceiveAsync(socket, CancellationToken.None);
            if (i >= 100)
            {
                times.Add(Stopwatch.GetElapsedTime(started).TotalMicroseconds);
            }
        }

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        return times;
    }
}

static async Task<List<double>> UnaryAsync(GrpcChannel channel, byte[] message, int rounds)
{
    var invoker = channel.CreateCallInvoker();
    var times = new List<double>(rounds);
    for (var i = 0; i < rounds + 100; i++)
    {
        var started = Stopwatch.GetTimestamp();
        await invoker.AsyncUnaryCall(EchoGrpc.Unary, null, new CallOptions(), message);
        if (i >= 100)
        {
            times.Add(Stopwatch.GetElapsedTime(started).TotalMicroseconds);
        }
    }

    return times;
}

static async Task<ClientWebSocket> DirectWebSocketAsync(int backendPort, X509Certificate2 root)
{
    var client = new ClientWebSocket();
    client.Options.KeepAliveInterval = TimeSpan.Zero;
    await client.ConnectAsync(new Uri($"wss://{Host}:{backendPort}/echo"), new HttpMessageInvoker(Trusting(root, backendPort)), CancellationToken.None);
    return client;
}

// The direct client verifies like the sidecar does: the policy's CA, the hostname.
static SocketsHttpHandler Trusting(X509Certificate2 root, int backendPort) => new()
{
    ConnectCallback = async (_, token) =>
    {
        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(IPAddress.Loopback, backendPort, token);
        return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
    },
    SslOptions = new System.Net.Security.SslClientAuthenticationOptions
    {
        CertificateChainPolicy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, CustomTrustStore = { root }, RevocationMode = X509RevocationMode.NoCheck },
    },
};

static void Report(string what, List<double> direct, List<double> proxied)
{
    static double P(List<double> values, double q)
    {
        var sorted = values.Order().ToList();
        return sorted[Math.Min(sorted.Count - 1, (int)(q * sorted.Count))];
    }

    Console.WriteLine($"{what}: direct (client does verified TLS) p50 {P(direct, 0.5):0} us, p99 {P(direct, 0.99):0} us; " +
        $"through the sidecar p50 {P(proxied, 0.5):0} us, p99 {P(proxied, 0.99):0} us; ratio p50 {P(proxied, 0.5) / P(direct, 0.5):0.00}x, p99 {P(proxied, 0.99) / P(direct, 0.99):0.00}x");
}

static long Rss(int pid) => long.Parse(File.ReadAllLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
    System.Globalization.CultureInfo.InvariantCulture);

static int FreePort()
{
    using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
    listener.Start();
    return ((IPEndPoint)listener.LocalEndpoint).Port;
}
