using System.Net;
using System.Text.Json.Serialization;
using BackendTls.Policy.Rendering;

namespace BackendTls.Policy.Destinations;

/// <summary>
/// Where the Services of a cluster are: their ClusterIPs and ports, and their endpoints (EndpointSlice
/// addresses, ready or not, and the ports those slices name). A captured connection's original destination
/// (IP, port) is looked up here to learn which Service, and so which policy, it is for. Written by
/// <c>render</c> (from manifests) and served by the webhook's index (from the cluster); file
/// <c>destinations.json</c>, format <c>backendtls.io/v1</c> kind <c>DestinationIndex</c>.
/// </summary>
public sealed record DestinationIndex
{
    public const string FileName = "destinations.json";
    public const string IndexKind = "DestinationIndex";

    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; init; } = Model.SidecarConfig.CurrentApiVersion;

    [JsonPropertyName("kind")]
    public string Kind { get; init; } = IndexKind;

    /// <summary>Opaque, for logs: which state of the cluster this is.</summary>
    [JsonPropertyName("revision")]
    public string? Revision { get; init; }

    [JsonPropertyName("services")]
    public IReadOnlyList<ServiceDestinations> Services { get; init; } = [];

    /// <summary>
    /// The capture ports of rendered targets, once each, in order: every target's Service port (for gateways
    /// that dial the ClusterIP) and the endpoint ports behind it (a named targetPort can differ per slice).
    /// </summary>
    public IReadOnlyList<int> CapturePorts(IEnumerable<Model.TargetConfig> targets)
    {
        var byName = Services.ToDictionary(s => (s.Namespace, s.Name));
        return targets
            .Where(t => t.Service is { Namespace: not null, Name: not null })
            .SelectMany(t => PortsOf(byName.GetValueOrDefault((t.Service!.Namespace!, t.Service.Name!)), t.Service.Port))
            .Distinct().Order().ToList();
    }

    private static IEnumerable<int> PortsOf(ServiceDestinations? service, int servicePort)
    {
        yield return servicePort;
        var portName = service?.Ports.FirstOrDefault(p => p.Port == servicePort)?.Name;
        if (service is null || portName is null)
        {
            yield break;
        }

        foreach (var set in service.Endpoints)
        {
            foreach (var port in set.Ports.Where(p => p.Name == portName || (service.Ports.Count == 1 && set.Ports.Count == 1)))
            {
                yield return port.Port;
            }
        }
    }

    /// <summary>Builds the index of every Service among the objects, with the EndpointSlices that name them.</summary>
    public static DestinationIndex Build(IEnumerable<KubeObject> objects, string? revision = null)
    {
        var services = new Dictionary<(string, string), ServiceDestinations>();
        var slices = new Dictionary<(string, string), List<EndpointSet>>();
        foreach (var obj in objects)
        {
            if (obj.Kind == "Service" && obj.Group.Length == 0 && obj.Name is { } name && FromService(obj) is { } service)
            {
                services[(obj.Namespace, name)] = service;
            }
            else if (obj.Kind == "EndpointSlice" && obj.Group == "discovery.k8s.io"
                     && KubeObject.AsString(obj["metadata.labels"]?["kubernetes.io/service-name"]) is { } owner
                     && FromSlice(obj) is { } set)
            {
                if (!slices.TryGetValue((obj.Namespace, owner), out var list))
                {
                    slices[(obj.Namespace, owner)] = list = [];
                }

                list.Add(set);
            }
        }

        return new DestinationIndex
        {
            Revision = revision,
            Services = services
                .OrderBy(s => s.Key.Item1, StringComparer.Ordinal).ThenBy(s => s.Key.Item2, StringComparer.Ordinal)
                .Select(s => slices.TryGetValue(s.Key, out var sets) ? s.Value with { Endpoints = sets } : s.Value)
                .ToList(),
        };
    }

    /// <summary>A Service's own addresses; ExternalName Services have none and are left out.</summary>
    public static ServiceDestinations? FromService(KubeObject service)
    {
        if (KubeObject.AsString(service["spec.type"]) == "ExternalName")
        {
            return null;
        }

        var clusterIPs = (service["spec.clusterIPs"] as System.Text.Json.Nodes.JsonArray)?.Select(KubeObject.AsString).OfType<string>().ToList()
                         ?? (KubeObject.AsString(service["spec.clusterIP"]) is { } one ? [one] : []);
        var ports = (service["spec.ports"] as System.Text.Json.Nodes.JsonArray ?? [])
            .Select(p => (Name: KubeObject.AsString(p?["name"]) ?? string.Empty, Port: KubeObject.AsInt(p?["port"]), Protocol: KubeObject.AsString(p?["protocol"]) ?? "TCP"))
            .Where(p => p.Port is > 0 and <= 65535 && p.Protocol == "TCP")
            .Select(p => new NamedPort(p.Name, p.Port!.Value))
            .ToList();
        return new ServiceDestinations
        {
            Namespace = service.Namespace,
            Name = service.Name!,
            ClusterIPs = clusterIPs.Where(ip => IPAddress.TryParse(ip, out _)).ToList(), // "None" (headless) has none
            Ports = ports,
        };
    }

    /// <summary>One EndpointSlice's addresses and ports; FQDN slices carry no IPs and are left out.</summary>
    public static EndpointSet? FromSlice(KubeObject slice)
    {
        if (KubeObject.AsString(slice["addressType"]) is not ("IPv4" or "IPv6"))
        {
            return null;
        }

        var addresses = (slice["endpoints"] as System.Text.Json.Nodes.JsonArray ?? [])
            .SelectMany(e => e?["addresses"] as System.Text.Json.Nodes.JsonArray ?? [])
            .Select(KubeObject.AsString).OfType<string>()
            .Where(a => IPAddress.TryParse(a, out _))
            .ToList();
        var ports = (slice["ports"] as System.Text.Json.Nodes.JsonArray ?? [])
            .Select(p => (Name: KubeObject.AsString(p?["name"]) ?? string.Empty, Port: KubeObject.AsInt(p?["port"]), Protocol: KubeObject.AsString(p?["protocol"]) ?? "TCP"))
            .Where(p => p.Port is > 0 and <= 65535 && p.Protocol == "TCP")
            .Select(p => new NamedPort(p.Name, p.Port!.Value))
            .ToList();
        return addresses.Count == 0 || ports.Count == 0 ? null : new EndpointSet { Addresses = addresses, Ports = ports };
    }
}

/// <summary>One Service: its ClusterIPs and ports, and the endpoint sets of its EndpointSlices.</summary>
public sealed record ServiceDestinations
{
    [JsonPropertyName("namespace")]
    public required string Namespace { get; init; }

    [JsonPropertyName("name")]
    public required string Name { get; init; }

    [JsonPropertyName("clusterIPs")]
    public IReadOnlyList<string> ClusterIPs { get; init; } = [];

    /// <summary>The Service ports (port, name); an endpoint port is matched to a Service port by name.</summary>
    [JsonPropertyName("ports")]
    public IReadOnlyList<NamedPort> Ports { get; init; } = [];

    [JsonPropertyName("endpoints")]
    public IReadOnlyList<EndpointSet> Endpoints { get; init; } = [];
}

/// <summary>Addresses that serve the same ports (one EndpointSlice): a named targetPort can differ per slice.</summary>
public sealed record EndpointSet
{
    [JsonPropertyName("ports")]
    public IReadOnlyList<NamedPort> Ports { get; init; } = [];

    [JsonPropertyName("addresses")]
    public IReadOnlyList<string> Addresses { get; init; } = [];
}

public sealed record NamedPort(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("port")] int Port);

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingDefault, UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip)]
[JsonSerializable(typeof(DestinationIndex))]
[JsonSerializable(typeof(ServiceDestinations))]
public sealed partial class DestinationIndexJsonContext : JsonSerializerContext;

/// <summary>
/// What the webhook's index sends a sidecar (<c>GET /index/v1?since=N</c>): everything (<see cref="Full"/>),
/// or only the Services that changed since revision N and those removed. Long-polled: the answer comes
/// when something changes, or empty after the poll timeout.
/// </summary>
public sealed record DestinationUpdate
{
    public const string UpdateKind = "DestinationUpdate";

    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; init; } = Model.SidecarConfig.CurrentApiVersion;

    [JsonPropertyName("kind")]
    public string Kind { get; init; } = UpdateKind;

    /// <summary>Which webhook replica's numbering <see cref="Revision"/> is in; a revision of another epoch means nothing.</summary>
    [JsonPropertyName("epoch")]
    public string? Epoch { get; init; }

    [JsonPropertyName("revision")]
    public long Revision { get; init; }

    /// <summary>True: <see cref="Services"/> is the whole index; false: only what changed.</summary>
    [JsonPropertyName("full")]
    public bool Full { get; init; }

    [JsonPropertyName("services")]
    public IReadOnlyList<ServiceDestinations> Services { get; init; } = [];

    /// <summary>Services (<c>namespace/name</c>) gone since the revision asked about.</summary>
    [JsonPropertyName("removed")]
    public IReadOnlyList<string> Removed { get; init; } = [];
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingDefault, UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip)]
[JsonSerializable(typeof(DestinationUpdate))]
public sealed partial class DestinationUpdateJsonContext : JsonSerializerContext;
