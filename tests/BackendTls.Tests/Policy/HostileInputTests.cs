using BackendTls.Tests.Shared;
using System.Diagnostics;
using BackendTls.Policy.Loading;
using BackendTls.Policy.Rendering;
using BackendTls.Policy.Yaml;
using BackendTls.Sidecar.Demo;

namespace BackendTls.Tests.Policy;

/// <summary>
/// One config file from a careless or hostile writer must cost a clear error, never the process: deep
/// nesting, alias bombs, files that are devices, links out of the config directory, huge files.
/// </summary>
public sealed class HostileInputTests : IDisposable
{
    private const string Header = "apiVersion: backendtls.io/v1\nkind: SidecarConfig\n";
    private readonly string _dir = Directory.CreateTempSubdirectory("hostile-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>The issue's repro: <c>targets: [[[[...]]]]</c>, 70 levels deep.</summary>
    public static string Nested(int depth) => Header + "targets: " + new string('[', depth) + new string(']', depth) + "\n";

    /// <summary>Nine anchors, each aliased nine times by the next: 9^9 nodes if expanded (about 400 bytes).</summary>
    public static string AliasBomb()
    {
        var lines = new List<string> { "a0: &a0 [x, x, x, x, x, x, x, x, x]" };
        for (var i = 1; i < 9; i++)
        {
            lines.Add($"a{i}: &a{i} [{string.Join(", ", Enumerable.Repeat($"*a{i - 1}", 9))}]");
        }

        return Header + string.Join("\n", lines) + "\ntargets: *a8\n";
    }

    private LoadOutcome Load(string yaml)
    {
        File.WriteAllText(Path.Combine(_dir, "backendtls.yaml"), yaml);
        return new ConfigLoader().Load(new ConfigDirectory(_dir));
    }

    [Theory]
    [InlineData(70)]
    [InlineData(20_000)]
    public void DeepNesting_RefusedWithTheLimit_NoCrash(int depth)
    {
        var outcome = Load(Nested(depth));

        var error = Assert.Single(outcome.Errors);
        Assert.Contains($"nested deeper than {YamlDocuments.MaxDepth} levels", error, StringComparison.Ordinal);
        Assert.Contains("line 3", error, StringComparison.Ordinal);
    }

    [Fact]
    public void AliasBomb_RefusedFast_WithoutExpanding()
    {
        var stopwatch = Stopwatch.StartNew();
        var allocated = GC.GetAllocatedBytesForCurrentThread();

        var outcome = Load(AliasBomb());

        Assert.Contains("aliases count as what they repeat", Assert.Single(outcome.Errors), StringComparison.Ordinal);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - allocated < 4L << 30, "refused before expanding gigabytes");
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(60), $"took {stopwatch.Elapsed}");
    }

    [Fact]
    public void AliasesOfModestSize_StillWork()
    {
        var outcome = Load(Header + """
            targets:
            - service: {namespace: a, name: b, port: 443}
              hostname: b.example.com
              wellKnownCACertificates: &trust System
              subjectAltNames: &sans [{type: Hostname, hostname: "*.example.com"}]
            - service: {namespace: a, name: c, port: 443}
              hostname: c.example.com
              wellKnownCACertificates: *trust
              subjectAltNames: *sans
            """);

        Assert.True(outcome.Succeeded, string.Join("\n", outcome.Errors));
        Assert.Equal("DNS:*.example.com", outcome.Config!.Targets[1].SubjectAltNames.Single().ToString());
    }

    [Fact]
    public void ConfigFileLinkedToAnEndlessDevice_RefusedUnread()
    {
        File.CreateSymbolicLink(Path.Combine(_dir, "backendtls.yaml"), "/dev/zero");

        var outcome = new ConfigLoader().Load(new ConfigDirectory(_dir));

        Assert.Contains("is not a regular file (a device, pipe or socket)", Assert.Single(outcome.Errors), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConfigFileThatIsAFifo_RefusedWithoutBlocking()
    {
        var fifo = Path.Combine(_dir, "backendtls.yaml");
        using (var mkfifo = Process.Start("mkfifo", fifo))
        {
            await mkfifo.WaitForExitAsync();
        }

        var outcome = await Task.Run(() => new ConfigLoader().Load(new ConfigDirectory(_dir))).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Contains("is not a regular file", Assert.Single(outcome.Errors), StringComparison.Ordinal);
    }

    [Fact]
    public void HugeConfigFile_RefusedAtTheSizeLimit()
    {
        using (var file = File.Create(Path.Combine(_dir, "backendtls.yaml")))
        {
            file.SetLength(BoundedFile.MaxConfigFileBytes + 1);
        }

        var outcome = new ConfigLoader().Load(new ConfigDirectory(_dir));

        Assert.Contains("is larger than 16 MiB", Assert.Single(outcome.Errors), StringComparison.Ordinal);
    }

    [Fact]
    public void CaFileLinkedOutOfTheConfigDirectory_Refused_LikeAnAbsolutePath()
    {
        using var ca = CertificateAuthority.Create("CN=Outside");
        var outside = Directory.CreateTempSubdirectory("outside-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(outside, "ca.crt"), ca.CertificatePem);
            File.CreateSymbolicLink(Path.Combine(_dir, "ca.crt"), Path.Combine(outside, "ca.crt"));

            var outcome = Load(Header + "targets:\n- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  caCertificates: [{file: ca.crt}]\n");

            var error = Assert.Single(outcome.Errors);
            Assert.Contains($"is a link to {Path.Combine(outside, "ca.crt")}, outside the config directory", error, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(outside, true);
        }
    }

    [Fact]
    public void KubeletLinks_StayInside_AndLoad()
    {
        using var ca = CertificateAuthority.Create("CN=Inside");
        KubeletVolume.Publish(_dir, new Dictionary<string, string>
        {
            ["backendtls.yaml"] = Header + "targets:\n- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  caCertificates: [{file: ca.crt}]\n",
            ["ca.crt"] = ca.CertificatePem,
        });

        var outcome = new ConfigLoader().Load(new ConfigDirectory(_dir));

        Assert.True(outcome.Succeeded, string.Join("\n", outcome.Errors));
    }

    [Fact]
    public void WrongFieldKind_SaidInOurOwnWords_WithThePath()
    {
        var outcome = Load(Header + "targets:\n- service: {namespace: a, name: b, port: [443]}\n  hostname: b.example.com\n");

        var error = Assert.Single(outcome.Errors);
        Assert.Contains("targets[0].service.port", error, StringComparison.Ordinal);
        Assert.Contains("a value of the wrong kind", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(70, "nested deeper")]
    [InlineData(0, "aliases count as what they repeat")]
    public void RenderInputs_HaveTheSameLimits(int depth, string expected)
    {
        var text = depth > 0 ? "kind: Service\nspec: " + new string('[', depth) + new string(']', depth) + "\n" : AliasBomb();

        var error = Assert.Throws<RenderInputException>(() => PolicyRenderer.RenderYaml([("in.yaml", text)]));

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("True")]
    [InlineData("yes")]
    [InlineData("Off")]
    [InlineData("y")]
    [InlineData("~")]
    [InlineData("0x1F")]
    [InlineData("0o17")]
    [InlineData("0b101")]
    [InlineData("1_000")]
    [InlineData("1:30")]
    [InlineData(".inf")]
    [InlineData("-.Inf")]
    [InlineData(".NaN")]
    [InlineData("2026-12-01")]
    [InlineData("1e3")]
    [InlineData("+12")]
    [InlineData("=")]
    [InlineData("<<")]
    [InlineData("")]
    public void YamlWriter_QuotesStringsOtherResolversReadAsOtherTypes(string value)
    {
        var yaml = YamlDocuments.ToYaml(new System.Text.Json.Nodes.JsonObject { ["annotation"] = value });

        Assert.Equal($"annotation: \"{value}\"\n", yaml);
        Assert.Equal(value, YamlDocuments.Parse(yaml, "out", typedScalars: true)[0]["annotation"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("plain-text")]
    [InlineData("www.example.com")]
    [InlineData("nginx:1.27")]
    public void YamlWriter_LeavesOrdinaryStringsPlain(string value)
    {
        Assert.Equal($"annotation: {value}\n", YamlDocuments.ToYaml(new System.Text.Json.Nodes.JsonObject { ["annotation"] = value }));
    }
}
