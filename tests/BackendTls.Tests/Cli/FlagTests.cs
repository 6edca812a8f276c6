using BackendTls.Policy.Cli;
using BackendTls.Sidecar.Cli;
using BackendTls.Sidecar.Hosting;

namespace BackendTls.Tests.Cli;

/// <summary>Every command reads its flags through one FlagSet: same syntax, every problem at once, exit 2 with usage.</summary>
public class FlagTests
{
    [Fact]
    public void EveryProblem_IsReported_AtOnce()
    {
        var e = Assert.Throws<OptionsException>(() => SidecarOptions.Parse(
            ["--listen", "nowhere", "--connect-timeout", "soon", "--bogus", "1", "--log-level", "loud"],
            name => name == "BACKENDTLS_DRAIN_TIMEOUT" ? "-5" : null));

        Assert.Equal(5, e.Problems.Count);
        Assert.Contains(e.Problems, p => p.StartsWith("--listen \"nowhere\" is not ADDR:PORT", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.StartsWith("--connect-timeout \"soon\" is not a number of seconds", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.StartsWith("unknown flag --bogus", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.StartsWith("--log-level \"loud\" is not a log level", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.StartsWith("BACKENDTLS_DRAIN_TIMEOUT=\"-5\" is not a number of seconds", StringComparison.Ordinal));
    }

    [Fact]
    public void BothSpellings_AndShortNames_MeanTheSame()
    {
        var spaced = SidecarOptions.Parse(["--admin", "127.0.0.1:9", "--log-format", "json"], _ => null);
        var equals = SidecarOptions.Parse(["--admin=127.0.0.1:9", "--log-format=json"], _ => null);

        Assert.Equal(spaced, equals with { Resolve = spaced.Resolve });
    }

    [Fact]
    public void Usage_IsGeneratedFromTheTable_WithDefaults()
    {
        var usage = SidecarOptions.Usage;

        foreach (var flag in new[] { "--config-dir DIR", "--listen ADDR:PORT", "--body-idle-timeout SECONDS", "--resolve HOST:PORT:ADDR[:PORT]" })
        {
            Assert.Contains(flag, usage, StringComparison.Ordinal);
        }

        Assert.Contains("[127.0.0.1:15001]", usage, StringComparison.Ordinal);
        Assert.Contains("BACKENDTLS_<NAME>", usage, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("render", new[] { "-f", "x.yaml" }, "give exactly one of -o DIR or --configmap NAME")]
    [InlineData("render", new[] { "-o", "dir", "--bogus=1" }, "unknown flag --bogus")]
    [InlineData("render", new[] { "--output" }, "--output needs a value")]
    [InlineData("wait", new[] { "--timeout", "never" }, "--timeout \"never\" is not a number of seconds")]
    [InlineData("wait", new[] { "--url", "ftp://x" }, "--url \"ftp://x\" is not an http(s) URL")]
    [InlineData("demo", new[] { "--fast" }, "unknown flag --fast")]
    public async Task OtherCommands_Exit2_WithTheProblemAndTheirUsage(string command, string[] args, string problem)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();

        var code = command switch
        {
            "render" => RenderCommand.Run(args, new StringReader(string.Empty), stdout, stderr),
            "wait" => await WaitCommand.RunAsync(args, stdout, stderr),
            _ => await DemoCommand.RunAsync(args, stdout, stderr),
        };

        Assert.Equal(2, code);
        Assert.Contains($"{command}: {problem}", stderr.ToString(), StringComparison.Ordinal);
        Assert.Contains($"backendtls-sidecar {command}", stderr.ToString(), StringComparison.Ordinal);
    }
}
