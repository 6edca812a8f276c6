using System.Text;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Shared;
using BackendTls.Tests.Shared.Grpc;
using BackendTls.Tests.Support;
using Grpc.Core;
using Grpc.Net.Client;

namespace BackendTls.Tests.Functional;

/// <summary>
/// gRPC through the sidecar: a real client (Grpc.Net.Client, h2c with prior knowledge, as a gateway's
/// grpc_pass speaks it) to a real server (Grpc.AspNetCore over TLS, ALPN h2). Every kind of call, trailers,
/// deadlines, a large message, a failed verification the client can read, and nginx grpc_pass in front.
/// </summary>
public sealed class GrpcTests
{
    private const string Hostname = "abc.example.com";

    private sealed class Bed(CertificateAuthority ca, GrpcBackend backend, SidecarFixture sidecar) : IAsyncDisposable
    {
        public SidecarFixture Sidecar => sidecar;

        public async ValueTask DisposeAsync()
        {
            await sidecar.DisposeAsync();
            await backend.DisposeAsync();
            ca.Dispose();
        }
    }

    private static async Task<Bed> StartAsync(string[]? sans = null, TimeSpan? responseTimeout = null)
    {
        EchoService.Seen.Clear();
        var ca = CertificateAuthority.Create("CN=Test Root");
        var backend = await GrpcBackend.StartAsync(ca.Issue("CN=grpc", dnsNames: sans ?? [Hostname]));
        var sidecar = new SidecarFixture { ResponseTimeout = responseTimeout ?? TimeSpan.FromSeconds(60) };
        await sidecar.StartForBackendAsync(backend.Port, ca.CertificatePem, Hostname);
        return new Bed(ca, backend, sidecar);
    }

    /// <summary>A channel whose :authority is the policy hostname and whose TCP goes to <paramref name="port"/> on loopback.</summary>
    private static GrpcChannel Channel(int port) => GrpcClients.Loopback(Hostname, port);

    private static byte[] Text(string text) => Encoding.ASCII.GetBytes(text);

    [Fact]
    public async Task Unary_OverVerifiedTlsWithPolicySni_TrailersIntact()
    {
        await using var bed = await StartAsync();
        using var channel = Channel(bed.Sidecar.ListenPort);
        var invoker = channel.CreateCallInvoker();

        using var call = invoker.AsyncUnaryCall(EchoGrpc.Unary, null, new CallOptions(), Text("hello"));
        Assert.Equal("hello", Encoding.ASCII.GetString(await call.ResponseAsync));
        Assert.Equal("yes", call.GetTrailers().GetValue("x-echo-trailer"));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        var (sni, authority) = Assert.Single(EchoService.Seen);
        Assert.Equal((Hostname, Hostname), (sni, authority));
        var metrics = await bed.Sidecar.MetricsAsync();
        Assert.Contains("backendtls_upstream_handshakes_total{target=\"default/svc:8443\",result=\"ok\",reason=\"verified\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("backendtls_requests_total{target=\"default/svc:8443\",code=\"200\"} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerStreaming_EachMessageArrivesAsSent_NotCutByTheResponseTimeout()
    {
        // --response-timeout 1 s covers the response headers only; this stream runs 2.5 s.
        await using var bed = await StartAsync(responseTimeout: TimeSpan.FromSeconds(1));
        using var channel = Channel(bed.Sidecar.ListenPort);
        using var call = channel.CreateCallInvoker().AsyncServerStreamingCall(EchoGrpc.Split, null, new CallOptions(), Text("5,500"));
        var received = new List<string>();
        await foreach (var message in call.ResponseStream.ReadAllAsync())
        {
            received.Add(Encoding.ASCII.GetString(message));
        }

        Assert.Equal(["0", "1", "2", "3", "4"], received);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task ClientStreaming_AndBidi_BothWays()
    {
        await using var bed = await StartAsync();
        using var channel = Channel(bed.Sidecar.ListenPort);
        var invoker = channel.CreateCallInvoker();

        using (var concat = invoker.AsyncClientStreamingCall(EchoGrpc.Concat, null, new CallOptions()))
        {
            foreach (var part in new[] { "a", "b", "c" })
            {
                await concat.RequestStream.WriteAsync(Text(part));
            }

            await concat.RequestStream.CompleteAsync();
            Assert.Equal("abc", Encoding.ASCII.GetString(await concat.ResponseAsync));
        }

        using var bidi = invoker.AsyncDuplexStreamingCall(EchoGrpc.Bidi, null, new CallOptions());
        foreach (var part in new[] { "one", "two", "three" })
        {
            // One message out, its echo back, before the next goes: a proxy that buffered either way would hang here.
            await bidi.RequestStream.WriteAsync(Text(part));
            Assert.True(await bidi.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(part, Encoding.ASCII.GetString(bidi.ResponseStream.Current));
        }

        await bidi.RequestStream.CompleteAsync();
        Assert.False(await bidi.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.OK, bidi.GetStatus().StatusCode);
    }

    [Fact]
    public async Task DeadlineExceeded_ReachesTheClient_AndTheBackendWasTold()
    {
        await using var bed = await StartAsync();
        using var channel = Channel(bed.Sidecar.ListenPort);
        var started = System.Diagnostics.Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RpcException>(async () =>
            await channel.CreateCallInvoker().AsyncUnaryCall(EchoGrpc.Sleep, null, new CallOptions(deadline: DateTime.UtcNow.AddMilliseconds(500)), Text("z")));
        Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(9), $"the call took {started.Elapsed}: the deadline did not end it");
    }

    [Fact]
    public async Task LargeMessage_16MiB_EchoedIntact()
    {
        await using var bed = await StartAsync();
        using var channel = Channel(bed.Sidecar.ListenPort);
        var large = System.Security.Cryptography.RandomNumberGenerator.GetBytes(16 * 1024 * 1024);
        var echoed = await channel.CreateCallInvoker().AsyncUnaryCall(EchoGrpc.Unary, null, new CallOptions(), large);
        Assert.True(large.AsSpan().SequenceEqual(echoed), "the 16 MiB message came back changed");
    }

    [Fact]
    public async Task VerificationFails_ClientReadsUnavailable_WithTheReason()
    {
        await using var bed = await StartAsync(sans: ["other.example.com"]);
        using var channel = Channel(bed.Sidecar.ListenPort);
        var error = await Assert.ThrowsAsync<RpcException>(async () =>
            await channel.CreateCallInvoker().AsyncUnaryCall(EchoGrpc.Unary, null, new CallOptions(), Text("hello")));
        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
        Assert.StartsWith("hostname_mismatch: ", error.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("other.example.com", error.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(EchoService.Seen);
        Assert.Contains("reason=\"hostname_mismatch\"} 1", await bed.Sidecar.MetricsAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Shutdown_WithAStreamStillRunning_EndsWithinTheDrainTimeout()
    {
        EchoService.Seen.Clear();
        using var ca = CertificateAuthority.Create("CN=Test Root");
        await using var backend = await GrpcBackend.StartAsync(ca.Issue("CN=grpc", dnsNames: [Hostname]));
        var sidecar = new SidecarFixture { DrainTimeout = TimeSpan.FromSeconds(1) };
        await sidecar.StartForBackendAsync(backend.Port, ca.CertificatePem, Hostname);
        using var channel = Channel(sidecar.ListenPort);
        using var call = channel.CreateCallInvoker().AsyncServerStreamingCall(EchoGrpc.Split, null, new CallOptions(), Text("100,100")); // 10 s
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));

        var stopping = System.Diagnostics.Stopwatch.StartNew();
        await sidecar.StopAsync();
        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(6), $"shutdown took {stopping.Elapsed} with a drain timeout of 1 s");
        await sidecar.DisposeAsync();
        await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
            }
        });
    }

    [SkippableFact]
    public async Task NginxGrpcPass_InFront_UnaryAndStreaming()
    {
        Skip.IfNot(Nginx.Available, "nginx is not installed (apt-get install nginx-light)");
        await using var bed = await StartAsync();
        var port = ExternalProcess.FreePort();
        // A gateway as nginx's gRPC guide configures it: HTTP/2 in, grpc_pass to the backend (here the sidecar).
        await using var gateway = await Nginx.StartAsync($$"""
            server {
              listen 127.0.0.1:{{port}} http2;
              location / { grpc_pass grpc://127.0.0.1:{{bed.Sidecar.ListenPort}}; grpc_set_header Host {{Hostname}}; }
            }
            """, port);
        using var channel = Channel(port);
        var invoker = channel.CreateCallInvoker();
        Assert.Equal("through nginx", Encoding.ASCII.GetString(await invoker.AsyncUnaryCall(EchoGrpc.Unary, null, new CallOptions(), Text("through nginx"))));
        using var call = invoker.AsyncServerStreamingCall(EchoGrpc.Split, null, new CallOptions(), Text("3,10"));
        var count = 0;
        await foreach (var _ in call.ResponseStream.ReadAllAsync())
        {
            count++;
        }

        Assert.Equal(3, count);
        Assert.All(EchoService.Seen, seen => Assert.Equal(Hostname, seen.Sni));
    }
}
