using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using BackendTls.Webhook.Injection;
using BackendTls.Webhook.Tests.Patching;
using BackendTls.Webhook.Tests.Support;

namespace BackendTls.Webhook.Tests.Admission;

/// <summary>AdmissionReviews POSTed over real HTTPS, as the API server does.</summary>
public class AdmissionEndpointTests
{
    private static JsonObject Review(JsonNode? pod, string uid = "0f9a3f5e-1111-2222-3333-444455556666", string operation = "CREATE",
        string kind = "Pod", string ns = "edge", bool dryRun = false) => new()
    {
        ["apiVersion"] = "admission.k8s.io/v1",
        ["kind"] = "AdmissionReview",
        ["request"] = new JsonObject
        {
            ["uid"] = uid,
            ["kind"] = new JsonObject { ["group"] = "", ["version"] = "v1", ["kind"] = kind },
            ["resource"] = new JsonObject { ["group"] = "", ["version"] = "v1", ["resource"] = "pods" },
            ["namespace"] = ns,
            ["operation"] = operation,
            ["object"] = pod?.DeepClone(),
            ["dryRun"] = dryRun,
        },
    };

    private static async Task<(HttpStatusCode Status, JsonNode? Body, string Text)> PostAsync(WebhookFixture webhook, string body, string contentType = "application/json")
    {
        using var response = await webhook.Client.PostAsync("/mutate", new StringContent(body, Encoding.UTF8, contentType));
        var text = await response.Content.ReadAsStringAsync();
        JsonNode? json = null;
        if (response.Content.Headers.ContentType?.MediaType == "application/json")
        {
            json = JsonNode.Parse(text);
        }

        return (response.StatusCode, json, text);
    }

    [Fact]
    public async Task GatewayPod_PatchedOverHttps_PatchAppliesToThePod()
    {
        await using var webhook = await WebhookFixture.StartAsync();
        var pod = Corpus.Load("ingress-nginx.yaml");

        var (status, body, _) = await PostAsync(webhook, Review(pod).ToJsonString());

        Assert.Equal(HttpStatusCode.OK, status);
        var response = body!["response"]!;
        Assert.Equal("0f9a3f5e-1111-2222-3333-444455556666", (string?)response["uid"]);
        Assert.True((bool)response["allowed"]!);
        Assert.Equal("JSONPatch", (string?)response["patchType"]);
        var patch = JsonNode.Parse(Convert.FromBase64String((string)response["patch"]!))!.AsArray();
        var patched = JsonPatchDiffTests.Apply(pod, patch);
        // Transparent mode (the default): capture-init, then the sidecar, then the pod's own init containers.
        Assert.Equal([InjectorSettings.CaptureInitName, InjectorSettings.ContainerName],
            patched["spec"]!["initContainers"]!.AsArray().Take(2).Select(c => (string?)c!["name"]));
        Assert.Contains("backendtls_webhook_admissions_total{result=\"injected\",reason=\"injected\"} 1", await webhook.GetMetricsAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AlreadyInjected_NoPatchAtAll()
    {
        await using var webhook = await WebhookFixture.StartAsync();
        var injected = PodInjector.Inject(Corpus.Load("no-volumes.yaml"), "edge", new InjectorSettings(), new NamespaceInfo("edge", NamespaceInjection.Enabled), new StaticCapturePorts([])).Pod;

        var (_, body, _) = await PostAsync(webhook, Review(injected).ToJsonString());

        Assert.True((bool)body!["response"]!["allowed"]!);
        Assert.Null(body["response"]!["patch"]);
        Assert.Null(body["response"]!["patchType"]);
    }

    [Fact]
    public async Task Warnings_ReachTheResponse()
    {
        await using var webhook = await WebhookFixture.StartAsync();
        var pod = Corpus.Load("no-volumes.yaml");
        pod["metadata"]!["annotations"] = new JsonObject { [InjectionLabels.CpuRequest] = "lots" };

        var (_, body, _) = await PostAsync(webhook, Review(pod).ToJsonString());

        Assert.Contains("using the default", (string?)body!["response"]!["warnings"]![0], StringComparison.Ordinal);
    }

    [Fact]
    public async Task HostNetworkSkip_IsAWarning_NotAPatch()
    {
        await using var webhook = await WebhookFixture.StartAsync();
        var pod = Corpus.Load("no-volumes.yaml");
        pod["spec"]!["hostNetwork"] = true;

        var (_, body, _) = await PostAsync(webhook, Review(pod).ToJsonString());

        Assert.True((bool)body!["response"]!["allowed"]!);
        Assert.Null(body["response"]!["patch"]);
        Assert.Contains("hostNetwork", (string?)body["response"]!["warnings"]![0], StringComparison.Ordinal);
        Assert.Contains("reason=\"host_network\"", await webhook.GetMetricsAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task DryRun_AnsweredTheSameWay()
    {
        await using var webhook = await WebhookFixture.StartAsync();

        var (_, body, _) = await PostAsync(webhook, Review(Corpus.Load("no-volumes.yaml"), dryRun: true).ToJsonString());

        Assert.NotNull(body!["response"]!["patch"]);
    }

    [Theory]
    [InlineData("UPDATE", "Pod")]
    [InlineData("CREATE", "Deployment")]
    public async Task NotAPodCreate_AllowedUnchanged(string operation, string kind)
    {
        await using var webhook = await WebhookFixture.StartAsync();

        var (_, body, _) = await PostAsync(webhook, Review(Corpus.Load("no-volumes.yaml"), operation: operation, kind: kind).ToJsonString());

        Assert.True((bool)body!["response"]!["allowed"]!);
        Assert.Null(body["response"]!["patch"]);
    }

    [Fact]
    public async Task UnreadableObject_RefusedWithSameUidAndMessage()
    {
        await using var webhook = await WebhookFixture.StartAsync();

        var (status, body, _) = await PostAsync(webhook, Review(JsonValue.Create("not a pod"), uid: "abc").ToJsonString());

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("abc", (string?)body!["response"]!["uid"]);
        Assert.False((bool)body["response"]!["allowed"]!);
        Assert.Contains("cannot read", (string?)body["response"]!["status"]!["message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task PodWithWronglyTypedField_RefusedWithMessage_ProcessSurvives()
    {
        await using var webhook = await WebhookFixture.StartAsync();
        var pod = Corpus.Load("no-volumes.yaml");
        pod["spec"]!["containers"] = "not a list";

        var (_, body, _) = await PostAsync(webhook, Review(pod, uid: "u1").ToJsonString());
        var (_, after, _) = await PostAsync(webhook, Review(Corpus.Load("no-volumes.yaml"), uid: "u2").ToJsonString());

        Assert.Equal("u1", (string?)body!["response"]!["uid"]);
        Assert.False((bool)body["response"]!["allowed"]!);
        Assert.Contains("spec.containers is a string, not a list", (string?)body["response"]!["status"]!["message"], StringComparison.Ordinal);
        Assert.Equal("u2", (string?)after!["response"]!["uid"]);
        Assert.True((bool)after["response"]!["allowed"]!);
    }

    [Theory]
    [InlineData("{not json", "application/json", HttpStatusCode.BadRequest, "not a JSON AdmissionReview")]
    [InlineData("{\"kind\":\"Pod\",\"apiVersion\":\"v1\"}", "application/json", HttpStatusCode.BadRequest, "expected kind AdmissionReview")]
    [InlineData("{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\"}", "application/json", HttpStatusCode.BadRequest, "no request")]
    [InlineData("{}", "text/plain", HttpStatusCode.UnsupportedMediaType, "Content-Type must be application/json")]
    public async Task MalformedInput_400sWithClearMessage(string body, string contentType, HttpStatusCode expected, string message)
    {
        await using var webhook = await WebhookFixture.StartAsync();

        var (status, _, text) = await PostAsync(webhook, body, contentType);

        Assert.Equal(expected, status);
        Assert.Contains(message, text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1beta1\",\"request\":{\"uid\":\"x\"}}", "expected kind AdmissionReview, apiVersion admission.k8s.io/v1")]
    [InlineData("{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"x\",\"kind\":{\"kind\":5}}}", "request.kind.kind is a number, not a string")]
    [InlineData("{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"x\",\"kind\":{\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":{\"metadata\":[]}}}", "metadata is a list, not an object")]
    [InlineData("{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"x\",\"kind\":{\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":{\"metadata\":{\"name\":123}}}}", "metadata.name is a number, not a string")]
    [InlineData("{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"x\",\"kind\":{\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":{\"metadata\":{\"name\":\"a\\ud800b\"}}}}", "request.object.metadata.name is not valid text")]
    public async Task ReadableUid_AlwaysAnswered200ForThatUid_RefusedNamingTheField(string body, string message)
    {
        await using var webhook = await WebhookFixture.StartAsync();

        var (status, json, _) = await PostAsync(webhook, body);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("x", (string?)json!["response"]!["uid"]);
        Assert.False((bool)json["response"]!["allowed"]!);
        Assert.Contains(message, (string?)json["response"]!["status"]!["message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task OversizedBody_413()
    {
        await using var webhook = await WebhookFixture.StartAsync();
        var huge = Review(new JsonObject { ["metadata"] = new JsonObject { ["annotations"] = new JsonObject { ["x"] = new string('a', 8 * 1024 * 1024) } } }).ToJsonString();

        // HTTP/2, as the API server speaks it: the 413 can arrive while the body is still being sent.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/mutate")
        {
            Content = new StringContent(huge, Encoding.UTF8, "application/json"),
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var response = await webhook.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Fact]
    public async Task CertificateRotation_NewCertificateServedWithoutRestart()
    {
        await using var webhook = await WebhookFixture.StartAsync();
        var rotated = BackendTls.Webhook.Certificates.ServingCertificates.IssueServing(webhook.Bundle.CaCertificatePem, webhook.Bundle.CaKeyPem, ["localhost"], DateTimeOffset.UtcNow);
        using var before = await ServedCertificateAsync(webhook.Port);

        File.WriteAllText(webhook.KeyFile, rotated.KeyPem);
        File.WriteAllText(webhook.CertificateFile, rotated.CertificatePem);
        using var expected = rotated.LoadServing();

        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (DateTime.UtcNow < deadline)
        {
            using var served = await ServedCertificateAsync(webhook.Port);
            if (served.Thumbprint == expected.Thumbprint)
            {
                Assert.NotEqual(before.Thumbprint, served.Thumbprint);
                return;
            }

            await Task.Delay(200);
        }

        Assert.Fail("the rotated certificate was not served within 15 s");
    }

    [Fact]
    public async Task Metrics_HaveThePrometheusTextContentType()
    {
        await using var webhook = await WebhookFixture.StartAsync();
        using var client = new HttpClient();

        using var response = await client.GetAsync($"http://127.0.0.1:{webhook.MetricsPort}/metrics");

        // Prometheus 3 refuses a scrape without a Content-Type it knows.
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        Assert.Contains("process_working_set_bytes", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Readiness_ReflectsTheCertificate()
    {
        await using var webhook = await WebhookFixture.StartAsync();
        Assert.Equal("ready\n", await webhook.GetMetricsAsync("/healthz/ready"));
        Assert.Contains("backendtls_webhook_certificate_expiry_timestamp_seconds", await webhook.GetMetricsAsync(), StringComparison.Ordinal);
    }

    private static async Task<System.Security.Cryptography.X509Certificates.X509Certificate2> ServedCertificateAsync(int port)
    {
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        using var ssl = new System.Net.Security.SslStream(tcp.GetStream(), false, (_, _, _, _) => true);
        await ssl.AuthenticateAsClientAsync("localhost");
        return new System.Security.Cryptography.X509Certificates.X509Certificate2(ssl.RemoteCertificate!);
    }
}
