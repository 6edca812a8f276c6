using System.Text.Json;
using System.Text.Json.Serialization;

namespace BackendTls.Webhook.Injection;

/// <summary>
/// The <c>backendtls.io/status</c> annotation: what the injector added, so a second pass (reinvocation,
/// an inject CLI run on injected YAML, a template upgrade) recognises it and changes nothing or exactly it.
/// </summary>
internal sealed record InjectionStatus
{
    [JsonPropertyName("version")]
    public int Version { get; init; } = 1;

    [JsonPropertyName("mode")]
    public string Mode { get; init; } = "native";

    [JsonPropertyName("container")]
    public string Container { get; init; } = InjectorSettings.ContainerName;

    [JsonPropertyName("volume")]
    public string Volume { get; init; } = InjectorSettings.VolumeName;

    [JsonPropertyName("image")]
    public string? Image { get; init; }

    [JsonPropertyName("templateHash")]
    public string? TemplateHash { get; init; }

    [JsonPropertyName("annotations")]
    public IReadOnlyList<string>? AddedAnnotations { get; init; }

    /// <summary>The capture-init container, in transparent mode.</summary>
    [JsonPropertyName("initContainer")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? InitContainer { get; init; }

    /// <summary>The xtables lock and index token volumes, in transparent mode.</summary>
    [JsonPropertyName("extraVolumes")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? ExtraVolumes { get; init; }

    public string Serialize() => JsonSerializer.Serialize(this, InjectionStatusJson.Default.InjectionStatus);

    public static InjectionStatus? TryParse(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize(text, InjectionStatusJson.Default.InjectionStatus);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

[JsonSerializable(typeof(InjectionStatus))]
internal sealed partial class InjectionStatusJson : JsonSerializerContext;
