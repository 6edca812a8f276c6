using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using BackendTls.Policy.Rendering;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Shared;
using BackendTls.Tests.Support;

namespace BackendTls.Tests.EndToEnd;

/// <summary>
/// What must stay true under real load, with real processes: the sidecar (its own process), nginx as the
/// TLS backend, wrk as the load. No request fails while the backend reloads, its certificate rotates and
/// the CA bundle is swapped; memory stays flat while a GiB goes each way; thousands of idle gateway
/// connections cost little and leave the admin port answering.
/// </summary>
public sealed partial class ResilienceTests : IAsyncDisposable
{
    private const string Hostname = "www.example.com";
    private static readonly string SidecarDll = Path.Combine(AppContext.BaseDirectory, "backendtls-sidecar.dll");
    private readonly string _work = Directory.CreateTempSubdirectory("resilience-").FullName;
    private readonly CertificateAuthority _ca = CertificateAuthority.Create("CN=Resilience Root");
    private readonly CertificateAuthority _otherCa = CertificateAuthority.Create("CN=Another Root");

    public async ValueTask DisposeAsync()
    {
        _ca.Dispose();
        _otherCa.Dispose();
        await Task.Yield();
        Directory.Delete(_work, recursive: true);
    }

    private string Config => Path.Combine(_work, "config");

    /// <summary>Writes a fresh leaf for the backend (cert and key PEM) where nginx reads it.</summary>
    private void IssueBackendCertificate()
    {
        using var leaf = _ca.Issue("CN=backend", dnsNames: [Hostname]);
        File.WriteAllText(Path.Combine(_work, "backend.crt"), leaf.ExportCertificatePem());
        File.WriteAllText(Path.Combine(_work, "backend.key"), leaf.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>Publishes the policy with the given CA bundle the way kubelet updates a mounted ConfigMap.</summary>
    private void PublishPolicy(string caBundle) => KubeletVolume.Publish(Config, PolicyRenderer.RenderYaml(
        [("in.yaml", Manifests.Service("svc") + Manifests.CaConfigMap("root-ca", caBundle) + Manifests.Policy("p", "svc", Hostname))]).Files);

    private async Task<(Nginx Backend, int Port)> StartBackendAsync(string locations)
    {
        IssueBackendCertificate();
        var port = ExternalProcess.FreePort();
        var backend = await Nginx.StartAsync($$"""
              keepalive_requests 1000000;
              server {
                listen 127.0.0.1:{{port}} ssl;
                ssl_certificate {{_work}}/backend.crt;
                ssl_certificate_key {{_work}}/backend.key;
                client_max_body_size 0;
                {{locations}}
              }
            """, port, master: true);
        return (backend, port);
    }

    private async Task<(ExternalProcess Sidecar, int Listen, int Admin)> StartSidecarAsync(int backendPort, params string[] extra)
    {
        var listen = ExternalProcess.FreePort();
        var admin = ExternalProcess.FreePort();
        var sidecar = ExternalProcess.Start("dotnet",
        [
            SidecarDll, "--config-dir", Config, "--listen", $"127.0.0.1:{listen}", "--admin", $"127.0.0.1:{admin}",
            "--resolve", $"svc.default.svc.cluster.local:8443:127.0.0.1:{backendPort}", "--log-level", "Warning", .. extra,
        ]);
        await sidecar.WaitForHttpOkAsync($"http://127.0.0.1:{admin}/healthz/ready");
        return (sidecar, listen, admin);
    }

    private static long RssKiB(int pid) => File.ReadLines($"/proc/{pid}/status").Where(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
        .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture)).Single();

    [SkippableFact]
    public async Task UnderLoad_BackendReloads_CertificateRotations_CaBundleSwaps_NoRequestFails()
    {
        Skip.IfNot(Nginx.Available && ExternalProcess.OnPath("wrk"), "nginx and wrk are needed (apt-get install nginx-light wrk)");
        PublishPolicy(_ca.CertificatePem);
        var (backend, backendPort) = await StartBackendAsync("location / { return 200 \"ok\\n\"; }");
        await using var _ = backend;
        var (sidecar, listen, _) = await StartSidecarAsync(backendPort);
        await using var __ = sidecar;

        var load = ExternalProcess.RunAsync("wrk", ["-t1", "-c16", "-d8s", "-H", $"Host: {Hostname}", $"http://127.0.0.1:{listen}/"]);
        var reloads = 0;
        var rotations = 0;
        var swaps = 0;
        for (var i = 0; i < 8; i++)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(700));
            // Swap the CA bundle: alternately the CA alone and the CA with another one beside it (both valid).
            PublishPolicy(i % 2 == 0 ? _ca.CertificatePem + _otherCa.CertificatePem : _ca.CertificatePem);
            swaps++;
            if (i % 2 == 1)
            {
                IssueBackendCertificate();
                rotations++;
            }

            await backend.ReloadAsync();
            reloads++;
        }

        var (code, output) = await load;

        Assert.True(code == 0, output);
        Assert.Equal((8, 4, 8), (reloads, rotations, swaps));
        var log = sidecar.Output.Length > 4000 ? sidecar.Output[^4000..] : sidecar.Output;
        Assert.False(output.Contains("Non-2xx", StringComparison.Ordinal) || output.Contains("Socket errors", StringComparison.Ordinal), output + "\nsidecar:\n" + log);
        Assert.True(int.Parse(RequestsDone().Match(output).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) > 1000, output);
    }

    [GeneratedRegex(@"(\d+) requests in")]
    private static partial Regex RequestsDone();

    [Fact]
    public async Task OneGibibyteEachWay_StreamsThrough_MemoryStaysFlat()
    {
        PublishPolicy(_ca.CertificatePem);
        const long Size = 1L << 30;
        using var leaf = _ca.Issue("CN=sink", dnsNames: [Hostname]);
        await using var sink = new SinkBackend(leaf);
        var (sidecar, listen, _) = await StartSidecarAsync(sink.Port);
        await using var __ = sidecar;
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
        var baseline = RssKiB(sidecar.Id);
        var peak = baseline;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                peak = Math.Max(peak, RssKiB(sidecar.Id));
                await Task.Delay(50);
            }
        });

        using var download = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{listen}/download?bytes={Size}");
        download.Headers.Host = Hostname;
        using var downloaded = await client.SendAsync(download, HttpCompletionOption.ResponseHeadersRead);
        long received = 0;
        await using (var body = await downloaded.Content.ReadAsStreamAsync())
        {
            var buffer = new byte[1 << 16];
            int read;
            while ((read = await body.ReadAsync(buffer)) > 0)
            {
                received += read;
            }
        }

        using var upload = new HttpRequestMessage(HttpMethod.Post, $"http://127.0.0.1:{listen}/upload") { Content = new ZeroContent(Size) };
        upload.Headers.Host = Hostname;
        using var uploaded = await client.SendAsync(upload);
        var answer = await uploaded.Content.ReadAsStringAsync();
        await sampling.CancelAsync();
        await sampler;

        Assert.Equal((HttpStatusCode.OK, Size), (downloaded.StatusCode, received));
        Assert.Equal((HttpStatusCode.OK, $"received={Size}"), (uploaded.StatusCode, answer));
        Assert.True(peak - baseline < 48 * 1024, $"RSS grew from {baseline / 1024} MiB to {peak / 1024} MiB while 2 GiB went through");
    }

    /// <summary>A request body of zeros of a given length, generated as it is sent.</summary>
    private sealed class ZeroContent(long length) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            var zeros = new byte[1 << 16];
            for (var left = length; left > 0; left -= zeros.Length)
            {
                await stream.WriteAsync(zeros.AsMemory(0, (int)Math.Min(zeros.Length, left)));
            }
        }

        protected override bool TryComputeLength(out long size)
        {
            size = length;
            return true;
        }
    }

    [SkippableFact]
    public async Task FiveThousandIdleKeepAliveConnections_AdminAnswers_MemoryWithinTheInjectedLimit()
    {
        Skip.IfNot(Nginx.Available, "nginx is not installed (apt-get install nginx-light)");
        PublishPolicy(_ca.CertificatePem);
        var (backend, backendPort) = await StartBackendAsync("location / { return 200 \"ok\\n\"; }");
        await using var _ = backend;
        var (sidecar, listen, admin) = await StartSidecarAsync(backendPort);
        await using var __ = sidecar;
        var before = RssKiB(sidecar.Id);
        var connections = new List<Socket>();
        try
        {
            var request = System.Text.Encoding.ASCII.GetBytes($"GET / HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");
            for (var i = 0; i < 5000; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(IPAddress.Loopback, listen);
                connections.Add(socket);
                if (i % 10 == 0)
                {
                    // Every tenth has served a request and sits idle on keep-alive; the rest never spoke.
                    await socket.SendAsync(request);
                    var buffer = new byte[512];
                    await socket.ReceiveAsync(buffer);
                }
            }

            using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var ready = await client.GetAsync($"http://127.0.0.1:{admin}/healthz/ready");
            var after = RssKiB(sidecar.Id);

            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            // The injected container's limit is 128Mi (JIT here; the image is AOT and smaller).
            Assert.True(after < 128 * 1024, $"RSS {after / 1024} MiB with 5,000 idle connections (before: {before / 1024} MiB)");
            Assert.True(after - before < 40 * 1024, $"5,000 idle connections cost {(after - before) / 1024} MiB ({(after - before) * 1024 / 5000} bytes each)");
        }
        finally
        {
            connections.ForEach(c => c.Dispose());
        }
    }
}
