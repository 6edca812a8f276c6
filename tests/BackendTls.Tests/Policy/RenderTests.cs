using BackendTls.Tests.Shared;
using BackendTls.Policy.Loading;
using BackendTls.Policy.Model;
using BackendTls.Policy.Rendering;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Support;

namespace BackendTls.Tests.Policy;

public class RenderTests
{
    private static readonly string CaPem = CertificateAuthority.Create("CN=gatewayapi").CertificatePem;

    private static string Conformance(string file) =>
        File.ReadAllText(Path.Combine(TestPaths.Reference, "gateway-api", "conformance-v1.6.1", file));

    /// <summary>The conformance suite creates its CA ConfigMaps itself; these stand in for them.</summary>
    private static string ConformanceCas(string ns = "gateway-conformance-infra") =>
        Manifests.CaConfigMap("tls-checks-ca-certificate", CaPem, ns) + Manifests.CaConfigMap("mismatch-ca-certificate", CaPem, ns);

    private static RenderResult Render(params string[] yaml) =>
        PolicyRenderer.RenderYaml(yaml.Select((y, i) => ($"input{i}.yaml", y)));

    private static PolicyResult PolicyNamed(RenderResult result, string name) =>
        Assert.Single(result.Policies, p => p.Policy.Name == name);

    private static TargetConfig TargetFor(RenderResult result, string service, int port) =>
        Assert.Single(result.Config.Targets!, t => t.Service!.Name == service && t.Service.Port == port);

    [Fact]
    public void Conformance_BackendTLSPolicy_RendersEveryPolicyAccepted()
    {
        var result = Render(Conformance("backendtlspolicy.yaml"), ConformanceCas());

        Assert.All(result.Policies, p => Assert.True(p.IsAccepted, $"{p.Policy}: {p.Accepted.Message}"));
        var normative = TargetFor(result, "backendtlspolicy-test", 443);
        Assert.Equal("abc.example.com", normative.Hostname);
        Assert.Equal("btls", normative.Service!.PortName);
        Assert.Equal("ConfigMap gateway-conformance-infra/tls-checks-ca-certificate", Assert.Single(normative.CaCertificates!).Source);
        Assert.Equal("mismatch.example.com", TargetFor(result, "backendtlspolicy-host-mismatch-test", 443).Hostname);
    }

    [Fact]
    public void Conformance_ConflictResolution_OlderOrAlphabeticallyFirstWins_SectionNameKeepsItsPort()
    {
        var result = Render(Conformance("backendtlspolicy-conflict-resolution.yaml"), ConformanceCas());

        Assert.True(PolicyNamed(result, "conflicted-without-section-name-1").IsAccepted);
        var loser = PolicyNamed(result, "conflicted-without-section-name-2");
        Assert.Equal((false, PolicyReasons.Conflicted), (loser.Accepted.Status, loser.Accepted.Reason));
        Assert.Contains("conflicted-without-section-name-1", loser.Accepted.Message, StringComparison.Ordinal);
        Assert.Equal("other.example.com", TargetFor(result, "backendtlspolicy-conflicted-without-section-name-test", 443).Hostname);

        Assert.Equal(PolicyReasons.Conflicted, PolicyNamed(result, "conflicted-with-section-name-2").Accepted.Reason);
        Assert.Equal("other.example.com", TargetFor(result, "backendtlspolicy-conflicted-with-section-name-test", 443).Hostname);

        Assert.True(PolicyNamed(result, "not-conflicted-with-section-name").IsAccepted);
        Assert.True(PolicyNamed(result, "not-conflicted-without-section-name").IsAccepted);
        Assert.Equal("other.example.com", TargetFor(result, "backendtlspolicy-not-conflicted-test", 443).Hostname);
        Assert.Equal("abc.example.com", TargetFor(result, "backendtlspolicy-not-conflicted-test", 8443).Hostname);
    }

    [Fact]
    public void Conflict_OlderCreationTimestampWinsOverName()
    {
        var older = Manifests.Policy("zzz-older", "svc", "older.example.com").Replace("namespace: default}", "namespace: default, creationTimestamp: \"2024-01-01T00:00:00Z\"}", StringComparison.Ordinal);
        var newer = Manifests.Policy("aaa-newer", "svc", "newer.example.com").Replace("namespace: default}", "namespace: default, creationTimestamp: \"2025-01-01T00:00:00Z\"}", StringComparison.Ordinal);
        var result = Render(Manifests.Service("svc"), Manifests.CaConfigMap("root-ca", CaPem), newer, older);

        Assert.True(PolicyNamed(result, "zzz-older").IsAccepted);
        Assert.Equal(PolicyReasons.Conflicted, PolicyNamed(result, "aaa-newer").Accepted.Reason);
        Assert.Equal("older.example.com", TargetFor(result, "svc", 8443).Hostname);
    }

    [Theory]
    [InlineData("nonexistent-ca-certificate-ref", "backendtlspolicy-nonexistent-ca-certificate-ref-test", "not found")]
    [InlineData("malformed-ca-certificate-ref", "backendtlspolicy-malformed-ca-certificate-ref-test", "no key ca.crt")]
    public void Conformance_InvalidCaRef_NoValidCACertificate_RenderedFailClosed(string policy, string service, string message)
    {
        var result = Render(Conformance("backendtlspolicy-invalid-ca-certificate-ref.yaml"));

        var status = PolicyNamed(result, policy);
        Assert.Equal((false, PolicyReasons.NoValidCACertificate), (status.Accepted.Status, status.Accepted.Reason));
        Assert.Equal((false, PolicyReasons.InvalidCACertificateRef), (status.ResolvedRefs.Status, status.ResolvedRefs.Reason));
        Assert.Contains(message, status.ResolvedRefs.Message, StringComparison.Ordinal);
        var target = TargetFor(result, service, 443);
        Assert.Null(target.CaCertificates);
        Assert.Null(target.WellKnownCACertificates);
        Assert.NotEmpty(target.InvalidCaCertificateRefs!); // fail closed: the sidecar answers 503, never plaintext
    }

    [Fact]
    public void Conformance_InvalidKind_ResolvedRefsInvalidKind()
    {
        var result = Render(Conformance("backendtlspolicy-invalid-kind.yaml"));

        var status = PolicyNamed(result, "invalid-kind");
        Assert.Equal(PolicyReasons.NoValidCACertificate, status.Accepted.Reason);
        Assert.Equal((false, PolicyReasons.InvalidKind), (status.ResolvedRefs.Status, status.ResolvedRefs.Reason));
        Assert.Contains("invalid.io/InvalidKind", status.ResolvedRefs.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Conformance_San_RendersHostnameAndUriSubjectAltNames()
    {
        var result = Render(Conformance("backendtlspolicy-san.yaml"), ConformanceCas());

        Assert.All(result.Policies, p => Assert.True(p.IsAccepted, $"{p.Policy}: {p.Accepted.Message}"));
        var sans = result.Config.Targets!.SelectMany(t => t.SubjectAltNames ?? []).ToList();
        Assert.Contains(sans, s => s is { Type: "URI", Uri: "spiffe://abc.example.com/test-identity" });
        Assert.Contains(sans, s => s is { Type: "Hostname", Hostname: "abc.example.com" });
    }

    [Fact]
    public void OneValidAndOneMissingRef_AcceptedButNotResolved_UsesTheValidOne()
    {
        var policy = Manifests.Policy("p", "svc", "svc.example.com",
            caRefs: "[{group: \"\", kind: ConfigMap, name: root-ca}, {group: \"\", kind: ConfigMap, name: missing}]");
        var result = Render(Manifests.Service("svc"), Manifests.CaConfigMap("root-ca", CaPem), policy);

        var status = PolicyNamed(result, "p");
        Assert.True(status.IsAccepted);
        Assert.Equal((false, PolicyReasons.InvalidCACertificateRef), (status.ResolvedRefs.Status, status.ResolvedRefs.Reason));
        Assert.Single(TargetFor(result, "svc", 8443).CaCertificates!);
    }

    [Fact]
    public void SecretCaRef_OnlyCaCrtIsCopied_NeverTheKey()
    {
        var secret = $"""
            apiVersion: v1
            kind: Secret
            metadata: {"{"}name: root-ca, namespace: default{"}"}
            type: kubernetes.io/tls
            data:
              ca.crt: {Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(CaPem))}
              tls.key: {Convert.ToBase64String("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"u8.ToArray())}
            ---

            """;
        var result = Render(Manifests.Service("svc"), secret, Manifests.Policy("p", "svc", "svc.example.com", caRefs: "[{group: \"\", kind: Secret, name: root-ca}]"));

        Assert.True(PolicyNamed(result, "p").IsAccepted);
        Assert.DoesNotContain(result.Files.Values, f => f.Contains("PRIVATE KEY", StringComparison.Ordinal));
        var ca = Assert.Single(result.Files, f => f.Key.StartsWith("ca.", StringComparison.Ordinal));
        Assert.Contains("BEGIN CERTIFICATE", ca.Value, StringComparison.Ordinal);
        Assert.Contains("source: Secret default/root-ca", result.Files["backendtls.yaml"], StringComparison.Ordinal);
    }

    [Fact]
    public void CaCrtThatIsNotPem_IsInvalidRef_WithTheFix()
    {
        var result = Render(Manifests.Service("svc"), Manifests.CaConfigMap("root-ca", "not a certificate"), Manifests.Policy("p", "svc", "svc.example.com"));

        var status = PolicyNamed(result, "p");
        Assert.Equal(PolicyReasons.NoValidCACertificate, status.Accepted.Reason);
        Assert.Contains("BEGIN CERTIFICATE", status.ResolvedRefs.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WellKnownSystem_IsAccepted_UnknownValueIsInvalid()
    {
        var system = Manifests.Policy("sys", "svc", "svc.example.com", caRefs: "[]").Replace("caCertificateRefs: []", "wellKnownCACertificates: System", StringComparison.Ordinal);
        var other = Manifests.Policy("other", "svc2", "svc.example.com", caRefs: "[]").Replace("caCertificateRefs: []", "wellKnownCACertificates: example.com/mine", StringComparison.Ordinal);
        var result = Render(Manifests.Service("svc"), Manifests.Service("svc2"), system, other);

        Assert.True(PolicyNamed(result, "sys").IsAccepted);
        Assert.Equal("System", TargetFor(result, "svc", 8443).WellKnownCACertificates);
        var invalid = PolicyNamed(result, "other");
        Assert.Equal(PolicyReasons.Invalid, invalid.Accepted.Reason);
        Assert.Contains("\"System\"", invalid.Accepted.Message, StringComparison.Ordinal);
        Assert.NotEmpty(TargetFor(result, "svc2", 8443).InvalidCaCertificateRefs!); // invalid policy: fail closed
    }

    [Theory]
    [InlineData("backendtls.io/min-tls-version: \"1.3\"", true, null)]
    [InlineData("backendtls.io/alpn: http/1.1", true, null)]
    [InlineData("backendtls.io/min-tls-versoin: \"1.3\"", false, "unknown option")]
    [InlineData("backendtls.io/min-tls-version: \"1.0\"", false, "not allowed")]
    [InlineData("minTLS: \"1.3\"", false, "domain prefix")]
    [InlineData("kgateway.dev/cipher-suites: X", true, null)]
    [InlineData("backendtls.io/tls12-cipher-suites: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,ECDHE-ECDSA-AES256-GCM-SHA384", true, null)]
    [InlineData("backendtls.io/tls12-cipher-suites: \"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305\"", true, null)]
    [InlineData("backendtls.io/tls12-cipher-suites: TLS_AES_128_GCM_SHA256", false, "is a TLS 1.3 suite")]
    [InlineData("backendtls.io/tls12-cipher-suites: TLS_RSA_WITH_RC4_128_SHA", false, "is broken")]
    [InlineData("backendtls.io/tls12-cipher-suites: TLS_RSA_WITH_NULL_SHA256", false, "is broken")]
    [InlineData("backendtls.io/tls12-cipher-suites: AES128-SHA-FAST", false, "is not a TLS 1.2 cipher suite name")]
    [InlineData("backendtls.io/tls12-cipher-suites: \"49199\"", false, "is not a TLS 1.2 cipher suite name")]
    [InlineData("backendtls.io/tls12-cipher-suites: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\nbackendtls.io/min-tls-version: \"1.3\"", false, "would never be used")]
    public void Options_OursValidated_OthersReported(string option, bool accepted, string? message)
    {
        var result = Render(Manifests.Service("svc"), Manifests.CaConfigMap("root-ca", CaPem), Manifests.Policy("p", "svc", "svc.example.com", options: option));

        var status = PolicyNamed(result, "p");
        Assert.Equal(accepted, status.IsAccepted);
        if (message is not null)
        {
            Assert.Contains(message, status.Accepted.Message, StringComparison.Ordinal);
        }

        if (option.StartsWith("kgateway", StringComparison.Ordinal))
        {
            Assert.Contains(status.Warnings, w => w.Contains("another implementation", StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData("1.3", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256,TLS_AES_128_GCM_SHA256")]
    [InlineData("1.2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")]
    public void Tls12CipherSuites_KeepTls13sOwn_UnlessTheMaximumIs12(string max, string expected)
    {
        var errors = new List<string>();
        var tls = BackendTls.Policy.Validation.TlsSettings.Parse(new Dictionary<string, string>
        {
            ["backendtls.io/tls12-cipher-suites"] = "ECDHE-RSA-AES128-GCM-SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            ["backendtls.io/max-tls-version"] = max,
        }, errors);

        Assert.Empty(errors);
        Assert.Equal("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", tls.Tls12CipherSuites); // the duplicate once
        Assert.Equal(expected, string.Join(",", tls.CipherSuites!));
    }

    [Fact]
    public void MissingService_TargetNotFound_WithKubectlHint()
    {
        var result = Render(Manifests.CaConfigMap("root-ca", CaPem), Manifests.Policy("p", "nosuch", "svc.example.com"));

        var status = PolicyNamed(result, "p");
        Assert.Equal(PolicyReasons.TargetNotFound, status.Accepted.Reason);
        Assert.Contains("kubectl get service -n default nosuch -o yaml", status.Accepted.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownSectionName_TargetNotFound_ListsThePorts()
    {
        var policy = Manifests.Policy("p", "svc", "svc.example.com").Replace("name: svc}", "name: svc, sectionName: nope}", StringComparison.Ordinal);
        var result = Render(Manifests.Service("svc"), Manifests.CaConfigMap("root-ca", CaPem), policy);

        var status = PolicyNamed(result, "p");
        Assert.Equal(PolicyReasons.TargetNotFound, status.Accepted.Reason);
        Assert.Contains("no port named \"nope\"; use one of: https", status.Accepted.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("hostname: \"*.example.com\"", "not a valid hostname")]
    [InlineData("hostname: 10.0.0.1x_", "not a valid hostname")]
    public void InvalidHostname_Invalid_NamesTheField(string replacement, string message)
    {
        var policy = Manifests.Policy("p", "svc", "svc.example.com").Replace("hostname: svc.example.com", replacement, StringComparison.Ordinal);
        var result = Render(Manifests.Service("svc"), Manifests.CaConfigMap("root-ca", CaPem), policy);

        var status = PolicyNamed(result, "p");
        Assert.Equal(PolicyReasons.Invalid, status.Accepted.Reason);
        Assert.Contains("spec.validation.hostname", status.Accepted.Message, StringComparison.Ordinal);
        Assert.Contains(message, status.Accepted.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void V1alpha2_IsRejectedWithUpgradeHint()
    {
        var result = Render(Manifests.Service("svc"), Manifests.Policy("p", "svc", "svc.example.com", apiVersion: "v1alpha2"));
        Assert.Contains("v1alpha2", PolicyNamed(result, "p").Accepted.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NotYaml_ThrowsWithLineAndColumn()
    {
        var e = Assert.Throws<RenderInputException>(() => Render("kind: [unclosed"));
        Assert.Contains("input0.yaml: line", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void KindList_ItemsAreRead()
    {
        var list = $$"""
            apiVersion: v1
            kind: List
            items:
            - apiVersion: v1
              kind: Service
              metadata: {name: svc, namespace: default}
              spec: {ports: [{name: https, port: 8443}]}
            """;
        var result = Render(list, Manifests.CaConfigMap("root-ca", CaPem), Manifests.Policy("p", "svc", "svc.example.com"));
        Assert.True(PolicyNamed(result, "p").IsAccepted);
    }

    [Fact]
    public void RenderedDirectory_LoadsInTheSidecar_RoundTrip()
    {
        var result = Render(Conformance("backendtlspolicy-conflict-resolution.yaml"), Conformance("backendtlspolicy-invalid-kind.yaml"), ConformanceCas());
        var dir = Directory.CreateTempSubdirectory().FullName;
        try
        {
            foreach (var (name, content) in result.Files)
            {
                File.WriteAllText(Path.Combine(dir, name), content);
            }

            var outcome = new ConfigLoader().Load(new ConfigDirectory(dir));
            Assert.True(outcome.Succeeded, string.Join("\n", outcome.Errors));
            Assert.Equal(result.Config.Targets!.Count, outcome.Config!.Targets.Count);
            Assert.Contains(outcome.Config.Targets, t => t.Trust == TrustMode.FailClosed);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void SameCaInManyNamespaces_OneFileNamedByContent_EachTargetKeepsItsSource()
    {
        var yaml = string.Concat(Enumerable.Range(0, 3).Select(i =>
            Manifests.Service("svc", ns: $"team-{i}") + Manifests.CaConfigMap("root-ca", CaPem, $"team-{i}") + Manifests.Policy("p", "svc", "svc.example.com", ns: $"team-{i}")));

        var result = PolicyRenderer.RenderYaml([("in.yaml", yaml)]);

        var ca = Assert.Single(result.Files, f => f.Key.StartsWith("ca.", StringComparison.Ordinal));
        Assert.Matches("^ca\\.[0-9a-f]{16}\\.crt$", ca.Key);
        Assert.All(result.Config.Targets!, t => Assert.Equal(ca.Key, t.CaCertificates!.Single().File));
        Assert.Equal(["ConfigMap team-0/root-ca", "ConfigMap team-1/root-ca", "ConfigMap team-2/root-ca"], result.Config.Targets!.Select(t => t.CaCertificates!.Single().Source));
    }
}
