using System.Text.Json.Nodes;
using System.Text;
using System.Text.Json;
using BackendTls.Policy.Destinations;
using BackendTls.Policy.Loading;
using BackendTls.Policy.Model;
using BackendTls.Policy.Rendering;

namespace BackendTls.Webhook.Controller;

/// <summary>What the controller sees: the objects render needs, and the namespaces running injected pods.</summary>
internal sealed record ClusterState(
    IReadOnlyList<KubeObject> Objects,
    IReadOnlySet<string> InjectedNamespaces)
{
    /// <summary>The injected pods (with their capture-config annotation).</summary>
    public IReadOnlyList<InjectedPod> Pods { get; init; } = [];

    /// <summary>The CA of the webhook's serving certificate (PEM), written as index-ca.crt for the sidecars' index watch.</summary>
    public string? IndexCa { get; init; }
}

/// <summary>A ConfigMap the sidecars of one namespace mount.</summary>
internal sealed record DesiredConfigMap(string Namespace, string Name, IReadOnlyDictionary<string, string> Data)
{
    /// <summary>Files too large to fit as text, gzip-compressed (name ends in .gz).</summary>
    public IReadOnlyDictionary<string, byte[]> BinaryData { get; init; } = new Dictionary<string, byte[]>();
}

/// <summary>A policy's new <c>status</c>, and whether it differs from what the API has.</summary>
internal sealed record PolicyStatusUpdate(string Namespace, string Name, JsonObject Status, bool Changed);

/// <summary>A Kubernetes Event to record.</summary>
internal sealed record KubeEvent(EventSubject Regarding, string Type, string Reason, string Message);

/// <param name="ConfigMaps">One per injected namespace.</param>
/// <param name="Statuses">Every policy's status.</param>
/// <param name="Events">On policies whose status changed.</param>
/// <param name="Notices">Events that hold while a condition lasts (uncaptured ports, explicit-mode fallback): recorded once each by the controller.</param>
/// <param name="Render">What render made of the objects.</param>
internal sealed record ReconcileResult(
    IReadOnlyList<DesiredConfigMap> ConfigMaps,
    IReadOnlyList<PolicyStatusUpdate> Statuses,
    IReadOnlyList<KubeEvent> Events,
    IReadOnlyList<KubeEvent> Notices,
    RenderResult Render)
{
    /// <summary>Why the ConfigMaps were not written this pass (they keep their last content).</summary>
    public IReadOnlyList<string> Problems { get; init; } = [];
}

/// <summary>
/// The controller's decisions as a pure function: objects in, rendered ConfigMaps, policy status and
/// events out. Rendering is <see cref="PolicyRenderer"/>, the same code as <c>backendtls-sidecar render</c>.
/// </summary>
/// <remarks>
/// Ancestors: a BackendTLSPolicy's status is reported per ancestor. Gateway implementations use the
/// Gateway; this product is not one: it attaches to the Service for every injected gateway pod, whichever
/// Gateway or route sends traffic there. So each ancestor entry is the targeted Service (group "", kind
/// Service), as Istio does for its mesh ancestor (docs/controller.md). Entries of other controllers are
/// kept as they are; the list is capped at 16 as the API requires.
/// </remarks>
internal static class PolicyReconciler
{
    public const string ControllerName = "backendtls.io/sidecar-controller";
    public const int MaxAncestors = 16;

    /// <summary>The file of the webhook's serving CA in the sidecars' config directory.</summary>
    public const string IndexCaFile = "index-ca.crt";

    /// <summary>The API server's limit on a ConfigMap's data, less room for its metadata.</summary>
    public const int MaxConfigMapBytes = (1024 * 1024) - (16 * 1024);

    /// <summary>Above this the two large files go gzip-compressed (a ConfigMap of 5,000 targets is about 2 MiB as text).</summary>
    public const int CompressAbove = 512 * 1024;

    public static ReconcileResult Reconcile(ClusterState state, string configMapName, DateTimeOffset now)
    {
        var render = PolicyRenderer.Render(state.Objects, DestinationScope.PolicyTargets);
        var files = new SortedDictionary<string, string>(render.Files.ToDictionary(), StringComparer.Ordinal)
        {
            [DestinationIndex.FileName] = BootstrapIndex(render.Destinations!),
        };
        if (state.IndexCa is not null)
        {
            files[IndexCaFile] = state.IndexCa;
        }

        var (text, binary) = Fit(files);
        var size = text.Sum(f => Encoding.UTF8.GetByteCount(f.Value)) + binary.Sum(f => f.Value.Length);
        var problems = new List<string>();
        if (size > MaxConfigMapBytes)
        {
            problems.Add($"the rendered ConfigMap would be {size / 1024} KiB, over the API server's 1 MiB limit even compressed " +
                         $"({render.Config.Targets!.Count} targets, {text.Count(f => f.Key.StartsWith("ca.", StringComparison.Ordinal))} distinct CA bundles); " +
                         "the ConfigMaps keep their last content. Share CA bundles between policies, or split the gateways' policies by namespace");
        }

        var configMaps = problems.Count > 0
            ? []
            : state.InjectedNamespaces.Order(StringComparer.Ordinal)
                .Select(ns => new DesiredConfigMap(ns, configMapName, text) { BinaryData = binary })
                .ToList();

        var uncaptured = CaptureCoverage.Find(render, state.Pods);
        var notices = uncaptured.SelectMany(gap => gap.Pods.Select(pod => CaptureCoverage.PodEvent(gap, pod)))
            .Concat(state.Pods.Select(CaptureCoverage.FallbackEvent).OfType<KubeEvent>())
            .ToList();
        var statuses = new List<PolicyStatusUpdate>();
        var events = new List<KubeEvent>();
        var byName = state.Objects.Where(o => o.Kind == "BackendTLSPolicy")
            .ToDictionary(o => (o.Namespace, o.Name!), o => o);
        foreach (var result in render.Policies)
        {
            var policy = byName[(result.Policy.Namespace!, result.Policy.Name!)];
            var previous = policy["status"]?["ancestors"] as JsonArray ?? [];
            var ancestors = MergeAncestors(previous, Ancestors(policy), result, now,
                ancestor => CaptureCoverage.Condition(uncaptured, state.Pods, policy.Namespace, policy.Name!, $"{policy.Namespace}/{(string?)ancestor["name"]}"));
            var status = new JsonObject { ["ancestors"] = ancestors };
            var changed = !JsonNode.DeepEquals(previous, ancestors);
            statuses.Add(new PolicyStatusUpdate(policy.Namespace, policy.Name!, status, changed));
            if (changed)
            {
                events.Add(Event(policy, result));
            }
        }

        return new ReconcileResult(configMaps, statuses, events, notices, render) { Problems = problems };
    }

    /// <summary>Text as it is, unless the whole is large: then the config and the index go gzip-compressed (the sidecar reads either).</summary>
    private static (IReadOnlyDictionary<string, string> Text, IReadOnlyDictionary<string, byte[]> Binary) Fit(IReadOnlyDictionary<string, string> files)
    {
        if (files.Sum(f => Encoding.UTF8.GetByteCount(f.Value)) <= CompressAbove)
        {
            return (files, new Dictionary<string, byte[]>());
        }

        string[] large = [SidecarConfig.FileName, DestinationIndex.FileName];
        return (files.Where(f => !large.Contains(f.Key)).ToDictionary(StringComparer.Ordinal),
                files.Where(f => large.Contains(f.Key)).ToDictionary(f => f.Key + BoundedFile.GzipSuffix, f => BoundedFile.Gzip(f.Value), StringComparer.Ordinal));
    }

    /// <summary>
    /// The mounted index: the policy targets' ClusterIPs and ports, without endpoints. Endpoints churn, and a
    /// ConfigMap that carried them would be rewritten in every injected namespace on every rollout; the
    /// sidecars get them from the webhook's live index instead (docs/transparent-capture.md).
    /// </summary>
    private static string BootstrapIndex(DestinationIndex index) =>
        JsonSerializer.Serialize(index with { Services = index.Services.Select(s => s with { Endpoints = [] }).ToList() },
            DestinationIndexJsonContext.Default.DestinationIndex);

    /// <summary>One ancestor per distinct targeted object (normally a Service).</summary>
    private static List<JsonObject> Ancestors(KubeObject policy)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var result = new List<JsonObject>();
        foreach (var reference in policy["spec.targetRefs"] as JsonArray ?? [])
        {
            var group = KubeObject.AsString(reference?["group"]) ?? string.Empty;
            var kind = KubeObject.AsString(reference?["kind"]) ?? "Service";
            var name = KubeObject.AsString(reference?["name"]);
            if (name is null || !seen.Add($"{group}/{kind}/{name}"))
            {
                continue;
            }

            result.Add(new JsonObject { ["group"] = group, ["kind"] = kind, ["namespace"] = policy.Namespace, ["name"] = name });
        }

        return result;
    }

    private static JsonArray MergeAncestors(JsonArray previous, List<JsonObject> ours, PolicyResult result, DateTimeOffset now, Func<JsonObject, PolicyCondition?> capture)
    {
        var merged = new JsonArray();
        foreach (var entry in previous)
        {
            if ((string?)entry?["controllerName"] != ControllerName && merged.Count < MaxAncestors)
            {
                merged.Add(entry!.DeepClone()); // never touch other controllers' entries
            }
        }

        foreach (var ancestor in ours)
        {
            if (merged.Count >= MaxAncestors)
            {
                break;
            }

            var old = previous.FirstOrDefault(e => (string?)e?["controllerName"] == ControllerName && JsonNode.DeepEquals(e?["ancestorRef"], ancestor));
            var conditions = new JsonArray(
                Condition(result.Accepted, result.Generation, old, now),
                Condition(result.ResolvedRefs, result.Generation, old, now));
            if (capture(ancestor) is { } captured)
            {
                conditions.Add(Condition(captured, result.Generation, old, now));
            }

            merged.Add(new JsonObject
            {
                ["ancestorRef"] = ancestor.DeepClone(),
                ["controllerName"] = ControllerName,
                ["conditions"] = conditions,
            });
        }

        return merged;
    }

    /// <summary>A metav1.Condition; lastTransitionTime moves only when the status flips.</summary>
    private static JsonObject Condition(PolicyCondition condition, long generation, JsonNode? oldEntry, DateTimeOffset now)
    {
        var status = condition.Status ? "True" : "False";
        var previous = (oldEntry?["conditions"] as JsonArray)?.FirstOrDefault(c => (string?)c?["type"] == condition.Type);
        var transition = previous is not null && (string?)previous["status"] == status
            ? (string?)previous["lastTransitionTime"]
            : null;
        return new JsonObject
        {
            ["type"] = condition.Type,
            ["status"] = status,
            ["reason"] = condition.Reason,
            ["message"] = Truncate(condition.Message, 32768),
            ["observedGeneration"] = generation,
            ["lastTransitionTime"] = transition ?? now.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
        };
    }

    private static KubeEvent Event(KubeObject policy, PolicyResult result)
    {
        var subject = new EventSubject(null, "BackendTLSPolicy", policy.Namespace, policy.Name!);
        if (result.Accepted.Status && result.ResolvedRefs.Status)
        {
            var targets = result.AppliedTargets.Count == 0 ? "no Service port" : string.Join(", ", result.AppliedTargets);
            return new KubeEvent(subject, "Normal", "Rendered", $"Sidecars verify TLS to {targets} with this policy");
        }

        var failing = result.Accepted.Status ? result.ResolvedRefs : result.Accepted;
        return new KubeEvent(subject, "Warning", failing.Reason, Truncate(failing.Message, 1000));
    }

    private static string Truncate(string text, int max) => text.Length <= max ? text : text[..(max - 3)] + "...";
}
