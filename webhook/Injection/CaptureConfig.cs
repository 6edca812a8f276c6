using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using BackendTls.Webhook.Json;

namespace BackendTls.Webhook.Injection;

/// <summary>
/// The <c>backendtls.io/capture-config</c> annotation: how the injector set up capture for this pod. The
/// controller compares its ports with the policies' (a policy on a port the pod does not capture needs a
/// restart), and a CNI plugin could apply the same rules from it (as Consul's does).
/// </summary>
internal sealed record CaptureConfig
{
    [JsonPropertyName("mode")]
    public required string Mode { get; init; }

    /// <summary>Why the pod is in explicit mode although transparent was asked for; null otherwise.</summary>
    [JsonPropertyName("reason")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Reason { get; init; }

    [JsonPropertyName("ports")]
    public IReadOnlyList<int> Ports { get; init; } = [];

    [JsonPropertyName("allPorts")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool AllPorts { get; init; }

    [JsonPropertyName("proxyUid")]
    public long ProxyUid { get; init; }

    [JsonPropertyName("redirectPort")]
    public int RedirectPort { get; init; } = InjectorSettings.CapturePort;

    public bool Transparent => Mode == "transparent";

    /// <summary>Whether a Service port or endpoint port is captured by this pod's rules.</summary>
    public bool Captures(int port) => Transparent && (AllPorts || Ports.Contains(port));

    public string Serialize() => JsonSerializer.Serialize(this, CaptureConfigJson.Default.CaptureConfig);

    public static CaptureConfig? TryParse(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize(text, CaptureConfigJson.Default.CaptureConfig);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

[JsonSerializable(typeof(CaptureConfig))]
internal sealed partial class CaptureConfigJson : JsonSerializerContext;

/// <summary>The ports transparent capture covers: the policy targets' Service ports and the endpoint ports behind them.</summary>
internal interface ICapturePortSource
{
    IReadOnlyCollection<int> Ports { get; }
}

/// <summary>A fixed set (the inject CLI, from the manifests it was given; tests).</summary>
internal sealed class StaticCapturePorts(IEnumerable<int> ports) : ICapturePortSource
{
    public IReadOnlyCollection<int> Ports { get; } = ports.Distinct().Order().ToList();
}

/// <summary>Decides how a pod's traffic reaches the sidecar, and says why when it cannot be captured.</summary>
internal static class CapturePlanner
{
    public static CaptureConfig Decide(JsonObject pod, InjectorSettings settings, NamespaceInfo ns, ICapturePortSource ports, List<string> warnings)
    {
        CaptureConfig Explicit(string? reason) => new() { Mode = "explicit", Reason = reason, ProxyUid = settings.ProxyUid };
        if (settings.CaptureMode != "transparent")
        {
            return Explicit(null);
        }

        if (ns.PodSecurityEnforce is "baseline" or "restricted")
        {
            var reason = $"namespace {ns.Name} enforces Pod Security \"{ns.PodSecurityEnforce}\", which forbids the NET_ADMIN capability the capture rules need";
            warnings.Add($"backendtls: {reason}; the sidecar runs in explicit mode (send the gateway's traffic to http://127.0.0.1:{settings.ListenPort}). " +
                         $"For transparent capture label the namespace {InjectionLabels.PodSecurityEnforce}=privileged or exempt it (docs/transparent-capture.md)");
            return Explicit(reason);
        }

        if (SharesProxyUid(pod, settings.ProxyUid) is { } container)
        {
            var reason = $"container {container} runs as uid {settings.ProxyUid}, the sidecar's, so its traffic would escape capture";
            warnings.Add($"backendtls: {reason}; the sidecar runs in explicit mode. Set the annotation {InjectionLabels.ProxyUid} to a uid no container uses");
            return Explicit(reason);
        }

        var all = settings.ExtraCapturePorts == "all";
        var extra = all || settings.ExtraCapturePorts.Length == 0
            ? []
            : settings.ExtraCapturePorts.Split(',', StringSplitOptions.TrimEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture));
        var excluded = settings.ExcludeOutboundPorts.Length == 0
            ? new HashSet<int>()
            : settings.ExcludeOutboundPorts.Split(',', StringSplitOptions.TrimEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToHashSet();
        var captured = ports.Ports.Concat(extra).Where(p => !excluded.Contains(p)).Distinct().Order().ToList();
        if (!all && captured.Count == 0)
        {
            warnings.Add("backendtls: no BackendTLSPolicy targets a Service yet, so no port is captured; pods created after a policy exists capture its ports " +
                         $"(or set the annotation {InjectionLabels.CapturePorts})");
        }

        return new CaptureConfig { Mode = "transparent", Ports = all ? [] : captured, AllPorts = all, ProxyUid = settings.ProxyUid };
    }

    /// <summary>A container (or the pod's default) that declares the sidecar's uid. An image's own USER cannot be seen here.</summary>
    private static string? SharesProxyUid(JsonObject pod, long uid)
    {
        var problems = new List<string>();
        var spec = JsonFields.Child(pod, "spec");
        var podUid = RunAsUser(JsonFields.Child(spec, "securityContext"));
        foreach (var list in (string[])["initContainers", "containers"])
        {
            foreach (var container in JsonFields.Child(spec, list) as JsonArray ?? [])
            {
                var name = JsonFields.String(container, "name", "name", problems);
                if (name == InjectorSettings.ContainerName || name == InjectorSettings.CaptureInitName)
                {
                    continue;
                }

                if ((RunAsUser(JsonFields.Child(container, "securityContext")) ?? podUid) == uid)
                {
                    return name ?? list;
                }
            }
        }

        return null;
    }

    private static long? RunAsUser(JsonNode? securityContext) =>
        // By its text: a parsed review holds JSON elements, a pod built in code holds int or long values.
        JsonFields.Child(securityContext, "runAsUser") is JsonValue value && value.GetValueKind() == JsonValueKind.Number
        && long.TryParse(value.ToJsonString(), NumberStyles.None, CultureInfo.InvariantCulture, out var uid) ? uid : null;
}
