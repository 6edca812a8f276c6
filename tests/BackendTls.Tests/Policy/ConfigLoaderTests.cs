using BackendTls.Policy.Loading;
using BackendTls.Sidecar.Demo;

namespace BackendTls.Tests.Policy;

public sealed class ConfigLoaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("loader-").FullName;
    private readonly string _caPem = CertificateAuthority.Create("CN=Loader Root").CertificatePem;

    public void Dispose() => Directory.Delete(_dir, true);

    private LoadOutcome Load(string yaml, params (string Name, string Content)[] files)
    {
        File.WriteAllText(Path.Combine(_dir, "backendtls.yaml"), yaml);
        foreach (var (name, content) in files)
        {
            File.WriteAllText(Path.Combine(_dir, name), content);
        }

        return new ConfigLoader().Load(new ConfigDirectory(_dir));
    }

    private const string Header = "apiVersion: backendtls.io/v1\nkind: SidecarConfig\ntargets:\n";

    [Fact]
    public void HandWrittenYaml_Loads_WithDefaults()
    {
        var outcome = Load(Header + """
            - service: {namespace: httpbin, name: httpbin, port: 8000}
              hostname: www.example.com
              caCertificates: [{file: ca.crt}]
            """, ("ca.crt", _caPem));

        Assert.True(outcome.Succeeded, string.Join("\n", outcome.Errors));
        var target = Assert.Single(outcome.Config!.Targets);
        Assert.Equal("httpbin/httpbin:8000", target.Id);
        Assert.Equal("httpbin.httpbin.svc.cluster.local:8000", target.Address);
        Assert.Equal(TrustMode.PolicyCertificates, target.Trust);
        Assert.Equal("1.2", target.Tls.MinVersionText);
        Assert.Equal("h2,http/1.1", target.Tls.AlpnText);
    }

    [Fact]
    public void Json_IsAccepted_Too()
    {
        var outcome = Load("""{"apiVersion":"backendtls.io/v1","kind":"SidecarConfig","targets":[{"service":{"namespace":"a","name":"b","port":443},"hostname":"b.example.com","wellKnownCACertificates":"System"}]}""");
        Assert.True(outcome.Succeeded, string.Join("\n", outcome.Errors));
        Assert.Equal(TrustMode.System, outcome.Config!.Targets[0].Trust);
    }

    [Theory]
    [InlineData("- service: {namespace: a, name: b, port: 0}\n  hostname: b.example.com\n  wellKnownCACertificates: System\n", "service.port: 0 is not a port")]
    [InlineData("- service: {namespace: a, name: b, port: 443}\n  hostname: \"*.example.com\"\n  wellKnownCACertificates: System\n", "hostname: \"*.example.com\" is not a valid hostname")]
    [InlineData("- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  wellKnownCACertificates: Mine\n", "the only value is \"System\"")]
    [InlineData("- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  caCertificates: [{file: ../../etc/passwd}]\n", "is not a file name in the config directory")]
    [InlineData("- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  caCertificates: [{file: nope.crt}]\n", "cannot read \"nope.crt\"")]
    [InlineData("- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  wellKnownCACertificates: System\n  options: {backendtls.io/min-tls-version: \"1.1\"}\n", "TLS 1.0 and 1.1 are broken")]
    [InlineData("- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  wellKnownCACertificates: System\n  options: {backendtls.io/typo: x}\n", "unknown option \"backendtls.io/typo\"")]
    [InlineData("- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  wellKnownCACertificates: System\n  subjectAltNames: [{type: Hostname, uri: \"spiffe://x/y\"}]\n", "subjectAltNames[0].hostname")]
    [InlineData("- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  wellKnownCACertificates: System\n  unknownField: 1\n", "unknownField")]
    [InlineData("- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  wellKnownCACertificates: System\n- service: {namespace: a, name: b, port: 443}\n  hostname: c.example.com\n  wellKnownCACertificates: System\n", "the same Service port is already targets[0]")]
    public void InvalidConfig_NamesTargetFieldAndFix(string targets, string expected)
    {
        var outcome = Load(Header + targets);

        Assert.False(outcome.Succeeded);
        Assert.Contains(outcome.Errors, e => e.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void CaFileWithPrivateKey_IsRefused()
    {
        var outcome = Load(Header + "- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  caCertificates: [{file: ca.crt}]\n",
            ("ca.crt", _caPem + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"));

        Assert.Contains(outcome.Errors, e => e.Contains("contains a private key", StringComparison.Ordinal));
    }

    [Fact]
    public void WrongApiVersion_SaysWhichIsRead()
    {
        var outcome = Load("apiVersion: backendtls.io/v2\nkind: SidecarConfig\n");
        Assert.Contains(outcome.Errors, e => e.Contains("this sidecar reads apiVersion \"backendtls.io/v1\"", StringComparison.Ordinal));
    }

    [Fact]
    public void NotYaml_ReportsLine()
    {
        var outcome = Load("targets: [unclosed");
        Assert.Contains(outcome.Errors, e => e.Contains("line", StringComparison.Ordinal));
    }

    [Fact]
    public void NoConfigFile_IsAnEmptyConfig_WithAWarningThatSaysHowToCreateOne()
    {
        // An optional ConfigMap that does not exist yet: the sidecar must become ready (and forward nothing).
        var outcome = new ConfigLoader().Load(new ConfigDirectory(Path.Combine(_dir, "not-mounted")));

        Assert.True(outcome.Succeeded);
        Assert.Empty(outcome.Config!.Targets);
        Assert.Contains(outcome.Config.Warnings, w => w.Contains("render", StringComparison.Ordinal));
    }

    [Fact]
    public void Fingerprint_ChangesWithCaContent_NotWithUnrelatedFiles()
    {
        const string yaml = Header + "- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  caCertificates: [{file: ca.crt}]\n";
        var first = Load(yaml, ("ca.crt", _caPem)).Config!.Fingerprint;
        var unrelated = Load(yaml, ("README", "x")).Config!.Fingerprint;
        var rotated = Load(yaml, ("ca.crt", CertificateAuthority.Create("CN=Other").CertificatePem)).Config!.Fingerprint;

        Assert.Equal(first, unrelated);
        Assert.NotEqual(first, rotated);
    }

    private LoadOutcome LoadCompressed(byte[] gzip, bool alsoPlain = false)
    {
        File.WriteAllBytes(Path.Combine(_dir, "backendtls.yaml.gz"), gzip);
        if (alsoPlain)
        {
            File.WriteAllText(Path.Combine(_dir, "backendtls.yaml"), Header);
        }

        return new ConfigLoader().Load(new ConfigDirectory(_dir));
    }

    [Fact]
    public void Gzip_AsTheControllerWritesLargeConfigs_LoadsTheSame()
    {
        const string yaml = Header + "- service: {namespace: a, name: b, port: 443}\n  hostname: b.example.com\n  wellKnownCACertificates: System\n";
        var plain = Load(yaml);
        File.Delete(Path.Combine(_dir, "backendtls.yaml"));

        var compressed = LoadCompressed(BoundedFile.Gzip(yaml));

        Assert.True(compressed.Succeeded, string.Join("\n", compressed.Errors));
        Assert.Equal(plain.Config!.Fingerprint, compressed.Config!.Fingerprint);
        Assert.Equal(BoundedFile.Gzip(yaml), BoundedFile.Gzip(yaml)); // deterministic: unchanged content is no ConfigMap write
    }

    [Fact]
    public void Gzip_BombBothFilesOrNotGzip_RefusedSayingWhich()
    {
        var bomb = BoundedFile.Gzip(new string(' ', BoundedFile.MaxConfigFileBytes + 1));
        Assert.True(bomb.Length < 64 * 1024); // small on disk

        Assert.Contains(LoadCompressed(bomb).Errors, e => e.Contains("decompresses to more than 16 MiB", StringComparison.Ordinal));
        Assert.Contains(LoadCompressed(BoundedFile.Gzip(Header), alsoPlain: true).Errors, e => e.Contains("both", StringComparison.Ordinal) && e.Contains("keep one", StringComparison.Ordinal));
        File.Delete(Path.Combine(_dir, "backendtls.yaml"));
        Assert.Contains(LoadCompressed("not gzip at all"u8.ToArray()).Errors, e => e.Contains("is not gzip data", StringComparison.Ordinal));
    }
}
