using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static BackendTls.Webhook.Json.JsonFields;

namespace BackendTls.Webhook.Admission;

/// <summary>What could be read from a review body: the request (when its uid is readable) or why not.</summary>
internal sealed record ReadReview(AdmissionRequest? Request, string? Uid, string? Problem);

/// <summary>
/// Reads an AdmissionReview body defensively. Anyone who can create a pod decides what the object holds, and
/// a body is not trusted to be well-typed or even valid text: every field is read by its expected kind, and
/// the first one that is not names itself in the problem. A review whose <c>request.uid</c> can be read
/// always gets an answer for that uid; anything else is a bad request.
/// </summary>
internal static class AdmissionReader
{
    private const int MaxDepth = 128;

    public static ReadReview Read(ReadOnlySpan<byte> body)
    {
        // One pass over the raw bytes: malformed JSON, invalid UTF-8 and lone surrogate escapes are found
        // here (and the uid read), before any of them can throw from a JsonObject deep inside the injector.
        var textProblem = FindInvalidText(body, out var syntaxProblem, out var uid);
        if (syntaxProblem is not null)
        {
            return new ReadReview(null, null, $"the body is not a JSON AdmissionReview: invalid JSON at {syntaxProblem}");
        }

        JsonNode? root;
        try
        {
            // Duplicate names are refused here: a JsonObject holding them would throw on first access.
            root = JsonNode.Parse(body, documentOptions: new JsonDocumentOptions { MaxDepth = MaxDepth, AllowDuplicateProperties = false });
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return new ReadReview(null, null, "the body is not a JSON AdmissionReview: an object repeats a property name");
        }

        if (uid is null)
        {
            var kindText = textProblem is null && Child(root, "kind") is JsonValue k && k.GetValueKind() == JsonValueKind.String ? k.GetValue<string>() : null;
            return new ReadReview(null, null, kindText is "AdmissionReview"
                ? "the AdmissionReview has no request, or no readable request.uid (a non-empty string)"
                : $"expected kind AdmissionReview, apiVersion {AdmissionReview.ApiVersionV1}, with a request.uid; got kind \"{kindText}\"");
        }

        if (textProblem is not null)
        {
            return new ReadReview(null, uid, $"{textProblem} is not valid text (invalid UTF-8 or a lone surrogate)");
        }

        var request = Child(root, "request");

        var problems = new List<string>();
        var apiVersion = String(root, "apiVersion", "apiVersion", problems);
        var kind = String(root, "kind", "kind", problems);
        if (problems.Count == 0 && (kind != "AdmissionReview" || apiVersion != AdmissionReview.ApiVersionV1))
        {
            problems.Add($"expected kind AdmissionReview, apiVersion {AdmissionReview.ApiVersionV1}; got kind \"{kind}\", apiVersion \"{apiVersion}\"");
        }

        if (request is not JsonObject)
        {
            problems.Add("request is not an object");
        }

        var gvk = Child(request, "kind");
        var parsed = new AdmissionRequest
        {
            Uid = uid,
            Kind = gvk is null ? null : new GroupVersionKind(String(gvk, "group", "request.kind.group", problems), String(gvk, "version", "request.kind.version", problems), String(gvk, "kind", "request.kind.kind", problems)),
            SubResource = String(request, "subResource", "request.subResource", problems),
            Name = String(request, "name", "request.name", problems),
            Namespace = String(request, "namespace", "request.namespace", problems),
            Operation = String(request, "operation", "request.operation", problems),
            Object = Child(request, "object"),
            DryRun = Bool(request, "dryRun", "request.dryRun", problems),
        };
        if (gvk is not null and not JsonObject)
        {
            problems.Add("request.kind is not an object");
        }

        return problems.Count > 0 ? new ReadReview(null, uid, problems[0]) : new ReadReview(parsed, uid, null);
    }

    private static bool IsValidText(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]))
            {
                if (i + 1 >= text.Length || !char.IsLowSurrogate(text[++i]))
                {
                    return false;
                }
            }
            else if (char.IsLowSurrogate(text[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The JSON path of the first property name or string that is not valid text, or null; a syntax error
    /// goes to <paramref name="syntaxProblem"/> instead. Reads <c>request.uid</c> on the way.
    /// </summary>
    private static string? FindInvalidText(ReadOnlySpan<byte> body, out string? syntaxProblem, out string? uid)
    {
        syntaxProblem = null;
        uid = null;
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = MaxDepth });
        var path = new List<string>();
        var indexes = new List<int>();
        string? found = null;
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject or JsonTokenType.StartArray:
                        Step(path, indexes);
                        path.Add(reader.TokenType == JsonTokenType.StartArray ? "[]" : ".");
                        indexes.Add(-1);
                        break;
                    case JsonTokenType.EndObject or JsonTokenType.EndArray:
                        path.RemoveAt(path.Count - 1);
                        indexes.RemoveAt(indexes.Count - 1);
                        break;
                    case JsonTokenType.PropertyName:
                        var name = TryGetString(ref reader);
                        path[^1] = "." + (name ?? "?");
                        found ??= name is null ? Render(path) : null;
                        break;
                    case JsonTokenType.String:
                        Step(path, indexes);
                        var text = TryGetString(ref reader);
                        found ??= text is null ? Render(path) : null;
                        if (reader.CurrentDepth == 2 && path is [".request", ".uid"] && text is { Length: > 0 })
                        {
                            uid = text;
                        }

                        break;
                    default:
                        Step(path, indexes);
                        break;
                }
            }
        }
        catch (JsonException e)
        {
            syntaxProblem = $"line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}";
        }

        return found;
    }

    private static void Step(List<string> path, List<int> indexes)
    {
        if (path.Count > 0 && path[^1].StartsWith('['))
        {
            indexes[^1]++;
            path[^1] = $"[{indexes[^1]}]";
        }
    }

    private static string? TryGetString(ref Utf8JsonReader reader)
    {
        try
        {
            var text = reader.GetString();
            return text is not null && IsValidText(text) ? text : null;
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    private static string Render(List<string> path)
    {
        var text = new StringBuilder();
        foreach (var part in path)
        {
            text.Append(part);
        }

        return text.Length > 0 && text[0] == '.' ? text.ToString(1, text.Length - 1) : text.ToString();
    }
}
