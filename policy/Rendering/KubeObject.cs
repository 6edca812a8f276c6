using System.Text.Json.Nodes;

namespace BackendTls.Policy.Rendering;

/// <summary>
/// A Kubernetes object as read from YAML/JSON (the shape <c>kubectl get -o yaml</c> prints), with typed
/// access to the few fields render needs. Unknown fields are ignored, as the API server would keep them.
/// </summary>
public sealed class KubeObject
{
    private KubeObject(JsonObject root, string origin)
    {
        Root = root;
        Origin = origin;
        ApiVersion = root["apiVersion"]?.GetValueKind() == System.Text.Json.JsonValueKind.String ? (string?)root["apiVersion"] : null;
        Kind = AsString(root["kind"]);
        Name = AsString(root["metadata"]?["name"]);
        Namespace = AsString(root["metadata"]?["namespace"]) ?? "default";
    }

    public JsonObject Root { get; }

    /// <summary>Where the object came from (file and document number), for messages.</summary>
    public string Origin { get; }

    public string? ApiVersion { get; }

    public string? Kind { get; }

    public string? Name { get; }

    public string Namespace { get; }

    public string Group => ApiVersion is { } v && v.Contains('/', StringComparison.Ordinal) ? v[..v.IndexOf('/', StringComparison.Ordinal)] : string.Empty;

    public long Generation => long.TryParse(AsString(Root["metadata"]?["generation"]), out var g) ? g : 1;

    public DateTimeOffset? CreationTimestamp =>
        DateTimeOffset.TryParse(AsString(Root["metadata"]?["creationTimestamp"]), System.Globalization.CultureInfo.InvariantCulture,
            System.Globalization.DateTimeStyles.AssumeUniversal, out var t) ? t : null;

    /// <summary>Kind and namespace/name, e.g. <c>BackendTLSPolicy httpbin/httpbin-backend-tls</c>.</summary>
    public string Display => $"{Kind} {Namespace}/{Name}";

    public JsonNode? this[string path] => Navigate(Root, path);

    /// <summary>Expands <c>kind: List</c> (and *List kinds) into their items.</summary>
    public static IEnumerable<KubeObject> FromDocuments(IReadOnlyList<JsonNode> documents, string origin)
    {
        for (var i = 0; i < documents.Count; i++)
        {
            var where = documents.Count == 1 ? origin : $"{origin} (document {i + 1})";
            if (documents[i] is not JsonObject obj)
            {
                throw new RenderInputException($"{where}: not a Kubernetes object (expected a mapping with apiVersion and kind)");
            }

            var kind = AsString(obj["kind"]);
            if (kind is not null && kind.EndsWith("List", StringComparison.Ordinal) && obj["items"] is JsonArray items)
            {
                for (var j = 0; j < items.Count; j++)
                {
                    if (items[j] is JsonObject item)
                    {
                        yield return new KubeObject(item, $"{where} items[{j}]");
                    }
                }

                continue;
            }

            var result = new KubeObject(obj, where);
            if (result.Kind is null || result.ApiVersion is null)
            {
                throw new RenderInputException($"{where}: missing apiVersion or kind; is this a Kubernetes manifest?");
            }

            if (result.Name is null)
            {
                throw new RenderInputException($"{where}: {result.Kind} has no metadata.name");
            }

            yield return result;
        }
    }

    public static string? AsString(JsonNode? node) =>
        node is JsonValue value && value.TryGetValue<string>(out var s) ? s : node?.ToJsonString();

    /// <summary>A number written as a number or a string (YAML read untyped gives strings); null otherwise.</summary>
    public static int? AsInt(JsonNode? node) =>
        int.TryParse(AsString(node), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value) ? value : null;

    private static JsonNode? Navigate(JsonNode? node, string path)
    {
        foreach (var part in path.Split('.'))
        {
            node = node is JsonObject obj ? obj[part] : null;
        }

        return node;
    }
}

/// <summary>Input that render cannot work with at all (not a manifest, not YAML).</summary>
public sealed class RenderInputException(string message) : Exception(message);
