using BackendTls.Tests.Shared;
using System.Text.Json.Nodes;
using BackendTls.Policy.Rendering;
using BackendTls.Policy.Yaml;
using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Support;
using Json.Schema;

namespace BackendTls.Tests.Policy;

/// <summary>Keeps docs/config.schema.json and the code in step: what render writes must validate.</summary>
public class ConfigSchemaTests
{
    private static readonly JsonSchema Schema =
        JsonSchema.FromText(File.ReadAllText(Path.Combine(TestPaths.RepositoryRoot, "docs", "config.schema.json")));

    private static EvaluationResults Evaluate(string yaml) =>
        Schema.Evaluate(System.Text.Json.JsonSerializer.SerializeToElement(YamlDocuments.Parse(yaml, "backendtls.yaml")[0], BackendTls.Tests.Support.TestJson.Default.JsonNode), new EvaluationOptions { OutputFormat = OutputFormat.List });

    [Fact]
    public void RenderedConfigs_ValidateAgainstTheDocumentedSchema()
    {
        var ca = CertificateAuthority.Create("CN=Schema Root").CertificatePem;
        var inputs = Manifests.Service("a") + Manifests.Service("b") + Manifests.Service("c") + Manifests.CaConfigMap("root-ca", ca)
                     + Manifests.Policy("pa", "a", "a.example.com", options: "backendtls.io/alpn: h2\nbackendtls.io/min-tls-version: \"1.3\"",
                         extraValidation: "subjectAltNames: [{type: URI, uri: \"spiffe://x/y\"}, {type: Hostname, hostname: \"*.example.com\"}]")
                     + Manifests.Policy("pb", "b", "b.example.com", caRefs: "[{group: \"\", kind: ConfigMap, name: missing}]")
                     + Manifests.Policy("pc", "c", "c.example.com", caRefs: "[]").Replace("caCertificateRefs: []", "wellKnownCACertificates: System", StringComparison.Ordinal);
        var rendered = PolicyRenderer.RenderYaml([("in.yaml", inputs)]);

        var results = Evaluate(rendered.Files["backendtls.yaml"]);

        Assert.True(results.IsValid, string.Join("\n", (results.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}"))));
        Assert.Equal(3, rendered.Config.Targets!.Count);
    }

    [Theory]
    [InlineData("apiVersion: backendtls.io/v1\nkind: SidecarConfig\ntargets:\n- service: {namespace: a, name: b, port: 1}\n  hostname: b.example.com\n  options: {backendtls.io/alpn: h3}\n")]
    [InlineData("apiVersion: backendtls.io/v1\nkind: SidecarConfig\ntargets:\n- service: {namespace: a, name: b, port: 1}\n  hostname: b.example.com\n  wellKnownCACertificates: System\n  caCertificates: [{file: x}]\n")]
    [InlineData("apiVersion: backendtls.io/v2\nkind: SidecarConfig\n")]
    public void SchemaRejects_WhatTheLoaderRejects(string yaml) => Assert.False(Evaluate(yaml).IsValid);

    [Fact]
    public void YamlRoundTrip_KeepsStringsThatLookLikeNumbers()
    {
        var yaml = YamlDocuments.ToYaml(new JsonObject { ["version"] = "1.3", ["flag"] = "true", ["pem"] = "a\nb\n" });
        var back = YamlDocuments.Parse(yaml, "x")[0];
        Assert.Equal("1.3", (string?)back["version"]);
        Assert.Equal("true", (string?)back["flag"]);
        Assert.Equal("a\nb\n", (string?)back["pem"]);
    }
}
