using BackendTls.Policy.Cli;
using BackendTls.Sidecar.Hosting;

namespace BackendTls.Tests.Forwarding;

public class SidecarOptionsTests
{
    private static SidecarOptions Parse(string[] args, Dictionary<string, string>? env = null) =>
        SidecarOptions.Parse(args, name => env is not null && env.TryGetValue(name, out var v) ? v : null);

    [Fact]
    public void Defaults_LoopbackListener_AdminOnAllInterfaces()
    {
        var options = Parse([]);
        Assert.Equal("127.0.0.1:15001", options.Listen.ToString());
        Assert.Equal("0.0.0.0:15090", options.Admin.ToString());
        Assert.Equal("/etc/backendtls/config", options.ConfigDir);
    }

    [Fact]
    public void FlagsOverrideEnvironment()
    {
        var options = Parse(["--connect-timeout", "2.5", "--resolve=a.b:443:10.0.0.1"],
            new() { ["BACKENDTLS_CONNECT_TIMEOUT"] = "9", ["BACKENDTLS_LOG_FORMAT"] = "json" });
        Assert.Equal(TimeSpan.FromSeconds(2.5), options.ConnectTimeout);
        Assert.Equal("json", options.LogFormat);
        Assert.Equal("10.0.0.1:443", options.Resolve["a.b:443"]);
    }

    [Theory]
    [InlineData("svc:8443:127.0.0.1:9000", "svc:8443", "127.0.0.1:9000")]
    [InlineData("svc:8443:[::1]", "svc:8443", "[::1]:8443")]
    [InlineData("SVC:8443:127.0.0.2", "svc:8443", "127.0.0.2:8443")]
    public void Resolve_CurlStyle(string entry, string key, string endpoint) =>
        Assert.Equal(endpoint, Parse(["--resolve", entry]).Resolve[key]);

    [Theory]
    [InlineData(new[] { "--listen", "nowhere" }, "--listen \"nowhere\" is not ADDR:PORT")]
    [InlineData(new[] { "--resolve", "svc:8443" }, "is not HOST:PORT:ADDR")]
    [InlineData(new[] { "--resolve", "svc:8443:example.com" }, "is not an IP address")]
    [InlineData(new[] { "--connect-timeout", "-1" }, "--connect-timeout \"-1\" is not a number of seconds")]
    [InlineData(new[] { "--bogus", "1" }, "unknown flag --bogus")]
    [InlineData(new[] { "--log-format", "xml" }, "use text or json")]
    [InlineData(new[] { "--idle-timeout" }, "--idle-timeout needs a value")]
    public void BadValues_NameTheFlagAndTheFix(string[] args, string message)
    {
        var e = Assert.Throws<OptionsException>(() => Parse(args));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }
}
