using System.Text.Json.Nodes;

namespace BackendTls.Webhook.Injection;

/// <summary>What the injector knows of a pod's namespace: whether it asked for injection, and its Pod Security level.</summary>
internal sealed record NamespaceInfo(string Name, NamespaceInjection Injection, string? PodSecurityEnforce = null);

/// <summary>Whether a namespace asked for injection, as far as the caller knows.</summary>
internal enum NamespaceInjection
{
    /// <summary>Labelled <c>backendtls.io/inject=enabled</c> (or the caller asks explicitly, as the CLI does).</summary>
    Enabled,

    /// <summary>Not labelled: only pods labelled <c>backendtls.io/inject=enabled</c> are injected.</summary>
    NotEnabled,

    /// <summary>Not looked up: trust the webhook's namespaceSelector, which already filtered.</summary>
    Unknown,
}

internal enum InjectionOutcome
{
    Injected,
    Updated,
    Unchanged,
    Skipped,
}

/// <summary>
/// The pod after injection (the same instance when nothing changed), and why: <c>ReasonCode</c> is short and
/// bounded (a metric label: injected, template_changed, already_injected, system_namespace, ...), <c>Reason</c>
/// says the same for people.
/// </summary>
internal sealed record InjectionResult(JsonObject Pod, InjectionOutcome Outcome, string ReasonCode, string Reason, IReadOnlyList<string> Warnings)
{
    public bool Changed => Outcome is InjectionOutcome.Injected or InjectionOutcome.Updated;
}

/// <summary>
/// Adds the sidecar to a pod (or a pod template: both have metadata and spec). Works on the JSON tree as
/// received, so fields our models don't know survive untouched. Idempotent: a pod injected with the same
/// template is returned unchanged; one injected with an older template is updated in place.
/// </summary>
internal static class PodInjector
{
    private static readonly string[] PrometheusAnnotations = ["prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"];
    private const string DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container";

    /// <param name="pod">The pod (or pod template) as received.</param>
    /// <param name="podNamespace">Its namespace, when the caller knows it better than the object.</param>
    /// <param name="defaults">The webhook's injection settings.</param>
    /// <param name="namespaceInfo">The namespace's injection label and Pod Security level.</param>
    /// <param name="capturePorts">The ports transparent capture covers (from the watch cache, or the CLI's manifests).</param>
    public static InjectionResult Inject(JsonObject pod, string? podNamespace, InjectorSettings defaults, NamespaceInfo namespaceInfo, ICapturePortSource capturePorts)
    {
        var warnings = new List<string>();
        var labels = StringMap(pod["metadata"]?["labels"]);
        var annotations = StringMap(pod["metadata"]?["annotations"]);
        var ns = podNamespace ?? (string?)pod["metadata"]?["namespace"] ?? "default";

        if (Skip(pod, ns, labels, defaults, namespaceInfo.Injection, warnings) is { } skip)
        {
            return new InjectionResult(pod, InjectionOutcome.Skipped, skip.Code, skip.Text, warnings);
        }

        var settings = PodOverrides.Apply(defaults, annotations, warnings);
        var capture = CapturePlanner.Decide(pod, settings, namespaceInfo with { Name = ns }, capturePorts, warnings);
        var rendered = SidecarTemplate.Render(settings, capture);
        var previous = InjectionStatus.TryParse(annotations.GetValueOrDefault(InjectionLabels.Status));
        if (previous is null && FindContainer(pod, InjectorSettings.ContainerName) is not null)
        {
            warnings.Add($"injection skipped: the pod already has a container named {InjectorSettings.ContainerName} that the injector did not add; rename it or remove it");
            return new InjectionResult(pod, InjectionOutcome.Skipped, "foreign_container", "the pod has its own backendtls-proxy container", warnings);
        }

        if (previous?.TemplateHash == rendered.Hash && FindContainer(pod, previous.Container) is not null)
        {
            return new InjectionResult(pod, InjectionOutcome.Unchanged, "already_injected", "already injected with this template", warnings);
        }

        var mutated = pod.DeepClone().AsObject();
        var spec = mutated["spec"]!.AsObject();
        if (previous is not null)
        {
            Strip(spec, previous);
        }

        if (ArrayOf(spec, "volumes").Any(v => (string?)v?["name"] == InjectorSettings.VolumeName))
        {
            warnings.Add($"injection skipped: the pod already has a volume named {InjectorSettings.VolumeName}; rename it");
            return new InjectionResult(pod, InjectionOutcome.Skipped, "volume_conflict", "the pod has its own backendtls-policy volume", warnings);
        }

        // Native: capture-init, then the sidecar, then the pod's own init containers (they run captured).
        // Legacy: the sidecar first among containers, capture-init last among init containers (the pod's own
        // init containers then run uncaptured: they start before any proxy could serve them).
        if (settings.NativeSidecar)
        {
            var init = EnsureArray(spec, "initContainers");
            init.Insert(0, rendered.Container);
            if (rendered.CaptureInit is { } captureInit)
            {
                init.Insert(0, captureInit);
            }
        }
        else
        {
            EnsureArray(spec, "containers").Insert(0, rendered.Container);
            if (rendered.CaptureInit is { } captureInit)
            {
                EnsureArray(spec, "initContainers").Add(captureInit);
            }
        }

        EnsureArray(spec, "volumes").Add(rendered.Volume);
        foreach (var volume in rendered.ExtraVolumes)
        {
            EnsureArray(spec, "volumes").Add(volume);
        }

        var metadata = EnsureObject(mutated, "metadata");
        var podAnnotations = EnsureObject(metadata, "annotations");
        var added = new List<string>();
        if (!PrometheusAnnotations.Any(podAnnotations.ContainsKey))
        {
            podAnnotations["prometheus.io/scrape"] = "true";
            podAnnotations["prometheus.io/port"] = InjectorSettings.AdminPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
            podAnnotations["prometheus.io/path"] = "/metrics";
            added.AddRange(PrometheusAnnotations);
        }
        else if (previous?.AddedAnnotations is { } earlier)
        {
            added.AddRange(earlier.Intersect(PrometheusAnnotations));
        }

        // kubectl logs/exec should default to the gateway, not the proxy listed before it.
        var firstApp = ArrayOf(spec, "containers").Select(c => (string?)c?["name"]).FirstOrDefault(n => n != InjectorSettings.ContainerName);
        if (firstApp is not null && !podAnnotations.ContainsKey(DefaultContainerAnnotation))
        {
            podAnnotations[DefaultContainerAnnotation] = firstApp;
            added.Add(DefaultContainerAnnotation);
        }
        else if (previous?.AddedAnnotations?.Contains(DefaultContainerAnnotation) == true)
        {
            added.Add(DefaultContainerAnnotation);
        }

        podAnnotations[InjectionLabels.CaptureConfig] = capture.Serialize();
        podAnnotations[InjectionLabels.Status] = new InjectionStatus
        {
            Mode = settings.NativeSidecar ? "native" : "container",
            Image = settings.SidecarImage,
            TemplateHash = rendered.Hash,
            AddedAnnotations = added,
            InitContainer = rendered.CaptureInit is null ? null : InjectorSettings.CaptureInitName,
            ExtraVolumes = rendered.ExtraVolumes.Count == 0 ? null : rendered.ExtraVolumes.Select(v => (string)v["name"]!).ToList(),
        }.Serialize();

        var outcome = previous is null ? InjectionOutcome.Injected : InjectionOutcome.Updated;
        var reason = previous is null ? "injected" : $"template changed ({previous.TemplateHash} -> {rendered.Hash})";
        return new InjectionResult(mutated, outcome, previous is null ? "injected" : "template_changed", reason, warnings);
    }

    private static (string Code, string Text)? Skip(JsonObject pod, string ns, IReadOnlyDictionary<string, string> labels, InjectorSettings settings,
        NamespaceInjection namespaceState, List<string> warnings)
    {
        if (InjectorSettings.SystemNamespaces.Contains(ns) || ns == settings.WebhookNamespace)
        {
            return ("system_namespace", $"namespace {ns} is never injected");
        }

        var podLabel = labels.GetValueOrDefault(InjectionLabels.Inject);
        if (podLabel == InjectionLabels.Disabled)
        {
            return ("opted_out", $"pod label {InjectionLabels.Inject}={InjectionLabels.Disabled}");
        }

        if (podLabel is not null and not InjectionLabels.Enabled)
        {
            warnings.Add($"label {InjectionLabels.Inject}=\"{podLabel}\" is neither enabled nor disabled; ignored");
            podLabel = null;
        }

        if (pod["spec"] is not JsonObject spec)
        {
            return ("no_spec", "the object has no spec");
        }

        if (spec["hostNetwork"] is JsonValue hostNetwork && hostNetwork.TryGetValue<bool>(out var isHost) && isHost)
        {
            warnings.Add("backendtls sidecar not injected: hostNetwork pods would expose the proxy's listener on the node; run the gateway without hostNetwork");
            return ("host_network", "hostNetwork pod");
        }

        if (podLabel != InjectionLabels.Enabled && namespaceState == NamespaceInjection.NotEnabled)
        {
            return ("namespace_not_enabled", $"namespace {ns} is not labelled {InjectionLabels.Inject}={InjectionLabels.Enabled} and the pod is not labelled either");
        }

        return null;
    }

    private static void Strip(JsonObject spec, InjectionStatus previous)
    {
        foreach (var list in ContainerLists)
        {
            if (spec[list] is JsonArray array)
            {
                RemoveWhere(array, c => (string?)c?["name"] == previous.Container || (previous.InitContainer is not null && (string?)c?["name"] == previous.InitContainer));
                if (array.Count == 0)
                {
                    spec.Remove(list);
                }
            }
        }

        if (spec["volumes"] is JsonArray volumes)
        {
            RemoveWhere(volumes, v => (string?)v?["name"] == previous.Volume || previous.ExtraVolumes?.Contains((string?)v?["name"] ?? string.Empty) == true);
            if (volumes.Count == 0)
            {
                spec.Remove("volumes");
            }
        }
    }

    private static readonly string[] ContainerLists = ["initContainers", "containers"];

    private static JsonNode? FindContainer(JsonObject pod, string name) =>
        ContainerLists
            .SelectMany(list => pod["spec"]?[list] as JsonArray ?? [])
            .FirstOrDefault(c => (string?)c?["name"] == name);

    private static Dictionary<string, string> StringMap(JsonNode? node) =>
        node is JsonObject obj
            ? obj.Where(p => p.Value is JsonValue v && v.TryGetValue<string>(out _)).ToDictionary(p => p.Key, p => (string)p.Value!)
            : new Dictionary<string, string>();

    private static IEnumerable<JsonNode?> ArrayOf(JsonObject spec, string name) => spec[name] as JsonArray ?? [];

    private static JsonArray EnsureArray(JsonObject parent, string name) => Ensure(parent, name, static () => new JsonArray());

    private static JsonObject EnsureObject(JsonObject parent, string name) => Ensure(parent, name, static () => new JsonObject());

    /// <summary>The child of that name, created if absent.</summary>
    private static T Ensure<T>(JsonObject parent, string name, Func<T> create)
        where T : JsonNode
    {
        if (parent[name] is T existing)
        {
            return existing;
        }

        var created = create();
        parent[name] = created;
        return created;
    }

    private static void RemoveWhere(JsonArray array, Func<JsonNode?, bool> predicate)
    {
        for (var i = array.Count - 1; i >= 0; i--)
        {
            if (predicate(array[i]))
            {
                array.RemoveAt(i);
            }
        }
    }
}
