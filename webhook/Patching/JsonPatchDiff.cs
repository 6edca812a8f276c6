using System.Text.Json.Nodes;

namespace BackendTls.Webhook.Patching;

/// <summary>
/// Computes an RFC 6902 JSON Patch that turns one JSON tree into another. Objects are diffed key by key;
/// arrays element by element, matching elements by their <c>name</c> (containers, volumes, env, ports)
/// or, failing that, by value, so inserting a container yields one <c>add</c> at its index rather than a
/// rewrite of the array. No operation is emitted for what did not change; an unchanged tree gives an
/// empty patch.
/// </summary>
internal static class JsonPatchDiff
{
    public static JsonArray Create(JsonNode? from, JsonNode? to)
    {
        var operations = new JsonArray();
        Diff(string.Empty, from, to, operations);
        return operations;
    }

    /// <summary>Escapes one JSON Pointer token (RFC 6901): <c>~</c> → <c>~0</c>, <c>/</c> → <c>~1</c>.</summary>
    public static string Escape(string token) => token.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    private static void Diff(string path, JsonNode? from, JsonNode? to, JsonArray operations)
    {
        if (from is JsonObject fromObject && to is JsonObject toObject)
        {
            foreach (var (key, value) in fromObject)
            {
                if (!toObject.ContainsKey(key))
                {
                    operations.Add(Operation("remove", $"{path}/{Escape(key)}"));
                }
                else
                {
                    Diff($"{path}/{Escape(key)}", value, toObject[key], operations);
                }
            }

            foreach (var (key, value) in toObject)
            {
                if (!fromObject.ContainsKey(key))
                {
                    operations.Add(Operation("add", $"{path}/{Escape(key)}", value));
                }
            }

            return;
        }

        if (from is JsonArray fromArray && to is JsonArray toArray)
        {
            DiffArray(path, fromArray, toArray, operations);
            return;
        }

        if (!JsonNode.DeepEquals(from, to))
        {
            operations.Add(Operation("replace", path, to));
        }
    }

    private static void DiffArray(string path, JsonArray from, JsonArray to, JsonArray operations)
    {
        var fromKeys = from.Select(Identity).ToArray();
        var toKeys = to.Select(Identity).ToArray();
        var (matchedFrom, matchedTo) = LongestCommonSubsequence(fromKeys, toKeys);

        // Removals first, from the end, so earlier indices stay valid.
        for (var i = from.Count - 1; i >= 0; i--)
        {
            if (!matchedFrom[i])
            {
                operations.Add(Operation("remove", $"{path}/{i}"));
            }
        }

        // Then walk the target left to right: the working array's prefix equals the target's prefix, and
        // its next element is the next matched one, so "add at i" and "diff at i" address the right place.
        var remaining = new Queue<JsonNode?>(from.Where((_, i) => matchedFrom[i]));
        for (var i = 0; i < to.Count; i++)
        {
            if (matchedTo[i])
            {
                Diff($"{path}/{i}", remaining.Dequeue(), to[i], operations);
            }
            else
            {
                operations.Add(Operation("add", $"{path}/{i}", to[i]));
            }
        }
    }

    /// <summary>What makes two array elements "the same element": their name, else their whole value.</summary>
    private static string Identity(JsonNode? node) =>
        node is JsonObject obj && obj["name"] is JsonValue name && name.TryGetValue<string>(out var text)
            ? "name:" + text
            : "value:" + (node?.ToJsonString() ?? "null");

    private static (bool[] From, bool[] To) LongestCommonSubsequence(string[] a, string[] b)
    {
        var lengths = new int[a.Length + 1, b.Length + 1];
        for (var i = a.Length - 1; i >= 0; i--)
        {
            for (var j = b.Length - 1; j >= 0; j--)
            {
                lengths[i, j] = a[i] == b[j] ? lengths[i + 1, j + 1] + 1 : Math.Max(lengths[i + 1, j], lengths[i, j + 1]);
            }
        }

        var inA = new bool[a.Length];
        var inB = new bool[b.Length];
        for (int i = 0, j = 0; i < a.Length && j < b.Length;)
        {
            if (a[i] == b[j])
            {
                inA[i++] = true;
                inB[j++] = true;
            }
            else if (lengths[i + 1, j] >= lengths[i, j + 1])
            {
                i++;
            }
            else
            {
                j++;
            }
        }

        return (inA, inB);
    }

    private static JsonObject Operation(string op, string path, JsonNode? value = null)
    {
        var operation = new JsonObject { ["op"] = op, ["path"] = path };
        if (op != "remove")
        {
            operation["value"] = value?.DeepClone();
        }

        return operation;
    }
}
