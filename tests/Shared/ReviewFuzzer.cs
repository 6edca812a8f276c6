using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace BackendTls.Tests.Shared;

/// <summary>
/// Mutated AdmissionReviews for fuzzing the webhook (the test suite and bench/webhook-fuzz): wrong kinds at
/// random fields, deleted fields, invalid UTF-8, lone surrogates, duplicate names, deep nesting, byte noise.
/// </summary>
internal static class ReviewFuzzer
{
    /// <summary>Reviews of real gateway pods, plus one that is not a pod.</summary>
    public static IReadOnlyList<JsonObject> Seeds(IEnumerable<JsonObject> pods) =>
    [
        .. pods.Select(p => Review(p, "Pod", "CREATE")),
        Review(new JsonObject { ["metadata"] = new JsonObject { ["name"] = "cm" } }, "ConfigMap", "UPDATE"),
    ];

    public static JsonObject Review(JsonObject pod, string kind, string operation) => new()
    {
        ["apiVersion"] = "admission.k8s.io/v1",
        ["kind"] = "AdmissionReview",
        ["request"] = new JsonObject
        {
            ["uid"] = "7c4e1f1a-0000-4000-8000-000000000001",
            ["kind"] = new JsonObject { ["group"] = "", ["version"] = "v1", ["kind"] = kind },
            ["resource"] = new JsonObject { ["group"] = "", ["version"] = "v1", ["resource"] = "pods" },
            ["namespace"] = "edge",
            ["operation"] = operation,
            ["object"] = pod.DeepClone(),
            ["dryRun"] = false,
        },
    };

    /// <summary>An independent reading of request.uid: what the webhook must echo, or null when it cannot be read.</summary>
    public static string? ReadableUid(byte[] body)
    {
        try
        {
            using var document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 128, AllowDuplicateProperties = false });
            var request = document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("request", out var r) ? r : default;
            if (request.ValueKind != JsonValueKind.Object || !request.TryGetProperty("uid", out var uid) || uid.ValueKind != JsonValueKind.String)
            {
                return null;
            }

            var text = uid.GetString();
            return string.IsNullOrEmpty(text) || !text.EnumerateRunes().All(r => r != Rune.ReplacementChar) || HasLoneSurrogate(text) ? null : text;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException)
        {
            return null;
        }
    }

    private static bool HasLoneSurrogate(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsSurrogate(text[i]) && !char.IsSurrogatePair(text, i) && (i == 0 || !char.IsSurrogatePair(text, i - 1)))
            {
                return true;
            }
        }

        return false;
    }

    public static byte[] Mutate(JsonObject seed, Random random)
    {
        var tree = seed.DeepClone();
        var rounds = random.Next(1, 4);
        string? text = null;
        for (var round = 0; round < rounds; round++)
        {
            switch (random.Next(8))
            {
                case 0 or 1:
                    ReplaceRandomNode(tree, random, RandomValue(random));
                    break;
                case 2:
                    DeleteRandomProperty(tree, random);
                    break;
                case 3:
                    ReplaceRandomNode(tree, random, Nested(random.Next(50, 300)));
                    break;
                default:
                    text ??= tree.ToJsonString();
                    text = MutateText(text, random);
                    break;
            }
        }

        var bytes = Encoding.UTF8.GetBytes(text ?? tree.ToJsonString());
        return random.Next(20) == 0 ? Noise(bytes, random) : InvalidUtf8(bytes, random);
    }

    private static JsonNode? RandomValue(Random random) => random.Next(8) switch
    {
        0 => JsonValue.Create(random.Next()),
        1 => JsonValue.Create("mutated"),
        2 => JsonValue.Create(random.Next(2) == 0),
        3 => null,
        4 => new JsonArray(JsonValue.Create(1), JsonValue.Create("x"), null),
        5 => new JsonObject { ["unexpected"] = JsonValue.Create(random.NextDouble()) },
        6 => new JsonArray(),
        _ => JsonValue.Create(new string('z', random.Next(1, 3000))),
    };

    private static JsonNode Nested(int depth)
    {
        JsonNode node = new JsonArray();
        for (var i = 0; i < depth; i++)
        {
            node = new JsonArray(node);
        }

        return node;
    }

    private static List<(JsonNode Parent, string? Key, int Index)> Slots(JsonNode root)
    {
        var slots = new List<(JsonNode, string?, int)>();
        var stack = new Stack<JsonNode>([root]);
        while (stack.TryPop(out var node))
        {
            if (node is JsonObject obj)
            {
                foreach (var (key, value) in obj)
                {
                    slots.Add((obj, key, -1));
                    if (value is not null)
                    {
                        stack.Push(value);
                    }
                }
            }
            else if (node is JsonArray array)
            {
                for (var i = 0; i < array.Count; i++)
                {
                    slots.Add((array, null, i));
                    if (array[i] is { } value)
                    {
                        stack.Push(value);
                    }
                }
            }
        }

        return slots;
    }

    private static void ReplaceRandomNode(JsonNode root, Random random, JsonNode? value)
    {
        var slots = Slots(root);
        if (slots.Count == 0)
        {
            return;
        }

        // Favour the fields the injector reads: metadata, spec, containers.
        var (parent, key, index) = slots[random.Next(2) == 0 ? random.Next(Math.Min(40, slots.Count)) : random.Next(slots.Count)];
        if (parent is JsonObject obj)
        {
            obj[key!] = value;
        }
        else
        {
            ((JsonArray)parent)[index] = value;
        }
    }

    private static void DeleteRandomProperty(JsonNode root, Random random)
    {
        var properties = Slots(root).Where(s => s.Key is not null).ToList();
        if (properties.Count > 0)
        {
            var (parent, key, _) = properties[random.Next(properties.Count)];
            ((JsonObject)parent).Remove(key!);
        }
    }

    /// <summary>Text-level mutations a tree cannot hold: lone surrogate escapes and duplicate names.</summary>
    private static string MutateText(string text, Random random)
    {
        var quotes = Enumerable.Range(0, text.Length).Where(i => text[i] == '"').ToList();
        if (quotes.Count == 0)
        {
            return text;
        }

        var at = quotes[random.Next(quotes.Count)] + 1;
        return random.Next(3) switch
        {
            0 => text.Insert(at, random.Next(2) == 0 ? "\\ud800" : "\\udc00x"),
            1 => text.Insert(text.IndexOf('{', StringComparison.Ordinal) + 1, "\"kind\":\"dup\","),
            _ => text.Insert(at, "\\u0000\\\"\\\\"),
        };
    }

    private static byte[] InvalidUtf8(byte[] bytes, Random random)
    {
        if (random.Next(6) != 0)
        {
            return bytes;
        }

        var quotes = Enumerable.Range(0, bytes.Length).Where(i => bytes[i] == '"').ToList();
        if (quotes.Count == 0)
        {
            return bytes;
        }

        var at = quotes[random.Next(quotes.Count)] + 1;
        byte[] junk = random.Next(3) switch { 0 => [0xFF], 1 => [0xC3], _ => [0xED, 0xA0, 0x80] }; // bad byte, truncated, encoded surrogate
        return [.. bytes[..at], .. junk, .. bytes[at..]];
    }

    private static byte[] Noise(byte[] bytes, Random random)
    {
        var copy = (byte[])bytes.Clone();
        switch (random.Next(3))
        {
            case 0:
                copy[random.Next(copy.Length)] = (byte)random.Next(256);
                return copy;
            case 1:
                return copy[..random.Next(copy.Length)];
            default:
                return [.. copy, .. Encoding.UTF8.GetBytes("garbage")];
        }
    }
}
