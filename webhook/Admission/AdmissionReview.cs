using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace BackendTls.Webhook.Admission;

/// <summary>
/// <c>admission.k8s.io/v1</c> AdmissionReview, only the fields a mutating webhook uses. KubernetesClient
/// has no model for it. The object stays a raw JSON tree: the patch is computed against exactly what the
/// API server sent, so fields our Pod model does not know can never turn into spurious removes.
/// </summary>
internal sealed record AdmissionReview
{
    public const string ApiVersionV1 = "admission.k8s.io/v1";

    [JsonPropertyName("apiVersion")]
    public string? ApiVersion { get; init; }

    [JsonPropertyName("kind")]
    public string? Kind { get; init; }

    [JsonPropertyName("request")]
    public AdmissionRequest? Request { get; init; }

    [JsonPropertyName("response")]
    public AdmissionResponse? Response { get; init; }
}

internal sealed record AdmissionRequest
{
    [JsonPropertyName("uid")]
    public string? Uid { get; init; }

    [JsonPropertyName("kind")]
    public GroupVersionKind? Kind { get; init; }

    [JsonPropertyName("resource")]
    public GroupVersionResource? Resource { get; init; }

    [JsonPropertyName("subResource")]
    public string? SubResource { get; init; }

    [JsonPropertyName("name")]
    public string? Name { get; init; }

    [JsonPropertyName("namespace")]
    public string? Namespace { get; init; }

    [JsonPropertyName("operation")]
    public string? Operation { get; init; }

    [JsonPropertyName("object")]
    public JsonNode? Object { get; init; }

    [JsonPropertyName("dryRun")]
    public bool? DryRun { get; init; }
}

internal sealed record GroupVersionKind(
    [property: JsonPropertyName("group")] string? Group,
    [property: JsonPropertyName("version")] string? Version,
    [property: JsonPropertyName("kind")] string? Kind);

internal sealed record GroupVersionResource(
    [property: JsonPropertyName("group")] string? Group,
    [property: JsonPropertyName("version")] string? Version,
    [property: JsonPropertyName("resource")] string? Resource);

internal sealed record AdmissionResponse
{
    [JsonPropertyName("uid")]
    public required string Uid { get; init; }

    [JsonPropertyName("allowed")]
    public required bool Allowed { get; init; }

    [JsonPropertyName("status")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public AdmissionStatus? Status { get; init; }

    [JsonPropertyName("patch")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Patch { get; init; }

    [JsonPropertyName("patchType")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? PatchType { get; init; }

    [JsonPropertyName("warnings")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Warnings { get; init; }
}

internal sealed record AdmissionStatus(
    [property: JsonPropertyName("code")] int Code,
    [property: JsonPropertyName("message")] string Message);

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(AdmissionReview))]
internal sealed partial class AdmissionJsonContext : JsonSerializerContext;
