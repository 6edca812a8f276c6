using System.Net;
using System.Text.Json;
using BackendTls.Sidecar.Demo;
using BackendTls.Sidecar.Configuration;
using BackendTls.Sidecar.Telemetry;
using BackendTls.Sidecar.Upstreams;
using BackendTls.Tests.Policy;
using BackendTls.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace BackendTls.Tests.Functional;

/// <summary>A running sidecar that is handed hostile config files keeps serving with its last good config.</summary>
public class HostileReloadTests
{
    private const string Hostname = "abc.example.com";

    public static TheoryData<string, string> HostileFiles => new()
    {
        { HostileInputTests.Nested(70), "nested deeper than" },
        { HostileInputTests.Nested(20_000), "nested deeper than" },
        { HostileInputTests.AliasBomb(), "aliases count as what they repeat" },
    };

    [Theory]
    [MemberData(nameof(HostileFiles))]
    public async Task HostileFile_OnLiveReload_KeepsTheLastGood_ReportsWhy_ThenTakesTheNextGoodOne(string hostile, string reported)
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        await using var sidecar = new SidecarFixture();
        await sidecar.StartForBackendAsync(backend.Port, ca.CertificatePem, Hostname);
        var goodConfig = File.ReadAllText(Path.Combine(sidecar.ConfigDir, "backendtls.yaml"));

        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "backendtls.yaml"), hostile);

        await SidecarFixture.EventuallyAsync(async () => (await sidecar.MetricsAsync()).Contains("backendtls_config_valid 0", StringComparison.Ordinal),
            "the hostile file is noticed and refused", TimeSpan.FromSeconds(30));
        Assert.Equal(HttpStatusCode.OK, (await sidecar.GetAsync(Hostname)).StatusCode);
        var ready = JsonDocument.Parse(await sidecar.Client.GetStringAsync(sidecar.AdminUrl + "/healthz/ready")).RootElement;
        Assert.Contains(reported, ready.GetProperty("lastLoad").GetProperty("errors")[0].GetString(), StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "backendtls.yaml"), goodConfig + "\n# fixed\n");
        await SidecarFixture.EventuallyAsync(async () => (await sidecar.MetricsAsync()).Contains("backendtls_config_valid 1", StringComparison.Ordinal),
            "the next good file is applied");
    }

    [Fact]
    public async Task FileEvents_AfterPollTicks_StillWakeTheReload_WithoutWaitingForTheNextTick()
    {
        var dir = Directory.CreateTempSubdirectory("watch-").FullName;
        var time = new FakeTimeProvider();
        var poll = TimeSpan.FromSeconds(10);
        var settings = new ConfigSettings(dir, "cluster.local", poll, new UpstreamSettings(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1), new Dictionary<string, string>(), TimeSpan.FromSeconds(1)));
        using var store = new ConfigStore(settings, new SidecarMetrics(), NullLoggerFactory.Instance, time);
        try
        {
            File.WriteAllText(Path.Combine(dir, "backendtls.yaml"), "apiVersion: backendtls.io/v1\nkind: SidecarConfig\ntargets: []\n");
            store.ReloadIfChanged();
            var first = store.Current!.Config.Fingerprint;
            await store.StartAsync(CancellationToken.None);
            for (var i = 0; i < 3; i++)
            {
                time.Advance(poll); // ticks that find nothing new: each used to leave an abandoned waiter behind
                await Task.Yield();
            }

            File.WriteAllText(Path.Combine(dir, "backendtls.yaml"), "apiVersion: backendtls.io/v1\nkind: SidecarConfig\ntargets: []\n# changed\n");

            // Only the 50 ms settle delay may pass on the fake clock, never the 10 s poll.
            await SidecarFixture.EventuallyAsync(() =>
            {
                time.Advance(TimeSpan.FromMilliseconds(50));
                return Task.FromResult(store.Current!.Config.Fingerprint != first);
            }, "the file event reloaded the config before the next poll tick", TimeSpan.FromSeconds(5));
            Assert.True(time.GetUtcNow() - time.Start < poll * 4, "reloaded by the event, not by a tick");
        }
        finally
        {
            await store.StopAsync(CancellationToken.None);
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public async Task ReloadThatAddsAListenPort_BindsIt_AndReportsOneThatCannotBeBound()
    {
        using var ca = CertificateAuthority.Create("CN=Root");
        using var leaf = ca.Issue("CN=backend", dnsNames: [Hostname]);
        await using var backend = await EchoBackend.StartAsync(leaf);
        await using var sidecar = new SidecarFixture();
        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "ca.crt"), ca.CertificatePem);
        string Config(int? port, string name = "svc") => $"apiVersion: backendtls.io/v1\nkind: SidecarConfig\ntargets:\n" +
            $"- service: {{namespace: default, name: {name}, port: 8443}}\n  hostname: {Hostname}\n  caCertificates: [{{file: ca.crt}}]\n" +
            $"  address: 127.0.0.1:{backend.Port}\n" + (port is { } p ? $"  listenPort: {p}\n" : "");
        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "backendtls.yaml"), Config(null));
        await sidecar.StartAsync();

        var dedicated = SidecarFixture.FreePort();
        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "backendtls.yaml"), Config(dedicated));
        await SidecarFixture.EventuallyAsync(async () =>
        {
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{dedicated}/x");
                request.Headers.Host = "anything.local";
                return (await sidecar.Client.SendAsync(request)).StatusCode == HttpStatusCode.OK;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, "the new listenPort is bound and routes to its target");

        using var taken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var busy = ((IPEndPoint)taken.LocalEndpoint).Port;
        File.WriteAllText(Path.Combine(sidecar.ConfigDir, "backendtls.yaml"), Config(dedicated) + Config(busy, "other")[(Config(busy, "other").IndexOf("- service", StringComparison.Ordinal))..]);
        await SidecarFixture.EventuallyAsync(async () =>
            (await sidecar.Client.GetStringAsync(sidecar.AdminUrl + "/healthz/ready")).Contains($"\"{busy}\": \"cannot listen on 127.0.0.1:{busy}", StringComparison.Ordinal),
            "readiness names the port that could not be bound, and why");
    }
}
