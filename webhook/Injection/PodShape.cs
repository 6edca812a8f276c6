using System.Text.Json;
using System.Text.Json.Nodes;
using BackendTls.Webhook.Json;

namespace BackendTls.Webhook.Injection;

/// <summary>
/// Checks that every field the injector reads has the kind Kubernetes gives it, and names the first that
/// does not ("spec.containers[1].name is a number, not a string"). The API server validates pods only
/// after mutating webhooks ran, so a webhook sees objects of any shape; this keeps the injector's code
/// free of checks at every step and its refusals exact.
/// </summary>
internal static class PodShape
{
    public static string? Problem(JsonObject pod)
    {
        var problems = new List<string>();
        var metadata = JsonFields.Child(pod, "metadata");
        if (Expect<JsonObject>(metadata, "metadata", problems))
        {
            JsonFields.String(metadata, "name", "metadata.name", problems);
            JsonFields.String(metadata, "generateName", "metadata.generateName", problems);
            JsonFields.String(metadata, "namespace", "metadata.namespace", problems);
            StringMap(JsonFields.Child(metadata, "labels"), "metadata.labels", problems);
            StringMap(JsonFields.Child(metadata, "annotations"), "metadata.annotations", problems);
        }

        var spec = JsonFields.Child(pod, "spec");
        if (Expect<JsonObject>(spec, "spec", problems))
        {
            var hostNetwork = JsonFields.Child(spec, "hostNetwork");
            if (hostNetwork is not null && hostNetwork.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
            {
                problems.Add($"spec.hostNetwork is {JsonFields.KindOf(hostNetwork)}, not true or false");
            }

            foreach (var list in (string[])["initContainers", "containers", "volumes"])
            {
                var items = JsonFields.Child(spec, list);
                if (!Expect<JsonArray>(items, $"spec.{list}", problems) || items is null)
                {
                    continue;
                }

                var array = items.AsArray();
                for (var i = 0; i < array.Count; i++)
                {
                    if (Expect<JsonObject>(array[i], $"spec.{list}[{i}]", problems, allowNull: false))
                    {
                        JsonFields.String(array[i], "name", $"spec.{list}[{i}].name", problems);
                    }
                }
            }
        }

        return problems.Count > 0 ? problems[0] : null;
    }

    /// <summary>True when the node is absent or of kind <typeparamref name="T"/>; otherwise records the problem.</summary>
    private static bool Expect<T>(JsonNode? node, string path, List<string> problems, bool allowNull = true)
        where T : JsonNode
    {
        if (node is T || (node is null && allowNull))
        {
            return true;
        }

        problems.Add($"{path} is {JsonFields.KindOf(node)}, not {(typeof(T) == typeof(JsonObject) ? "an object" : "a list")}");
        return false;
    }

    private static void StringMap(JsonNode? node, string path, List<string> problems)
    {
        if (!Expect<JsonObject>(node, path, problems) || node is null)
        {
            return;
        }

        foreach (var (key, value) in node.AsObject())
        {
            JsonFields.String(node, key, $"{path}[\"{key}\"]", problems);
            if (value is null)
            {
                problems.Add($"{path}[\"{key}\"] is null, not a string");
            }
        }
    }
}
