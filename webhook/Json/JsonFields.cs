using System.Text.Json;
using System.Text.Json.Nodes;

namespace BackendTls.Webhook.Json;

/// <summary>
/// Reads fields of untrusted JSON by their expected kind. A field of another kind is a problem that names
/// the field ("request.kind.kind is a number, not a string"), never an exception from a cast.
/// </summary>
internal static class JsonFields
{
    /// <summary>The child of an object, or null for anything else (arrays, values, missing).</summary>
    public static JsonNode? Child(JsonNode? node, string name) =>
        node is JsonObject obj && obj.TryGetPropertyValue(name, out var value) ? value : null;

    /// <summary>A string field: absent (null) or a string; any other kind is a problem naming the field.</summary>
    public static string? String(JsonNode? parent, string name, string path, List<string> problems)
    {
        var node = Child(parent, name);
        switch (node)
        {
            case null:
                return null;
            case JsonValue value when value.GetValueKind() == JsonValueKind.String:
                return value.GetValue<string>();
            default:
                problems.Add($"{path} is {KindOf(node)}, not a string");
                return null;
        }
    }

    public static bool? Bool(JsonNode? parent, string name, string path, List<string> problems)
    {
        var node = Child(parent, name);
        switch (node)
        {
            case null:
                return null;
            case JsonValue value when value.GetValueKind() is JsonValueKind.True or JsonValueKind.False:
                return value.GetValue<bool>();
            default:
                problems.Add($"{path} is {KindOf(node)}, not true or false");
                return null;
        }
    }

    public static string KindOf(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "a list",
        JsonValue value => value.GetValueKind() switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            _ => "null",
        },
        _ => "something else",
    };
}
