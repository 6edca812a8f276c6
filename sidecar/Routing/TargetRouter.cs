using System.Collections.Frozen;
using System.Net;
using BackendTls.Sidecar.Destinations;
using BackendTls.Sidecar.Upstreams;

namespace BackendTls.Sidecar.Routing;

/// <summary>
/// Picks the target of a request. A request names its backend by the policy's <c>validation.hostname</c>,
/// or by any of the Service's DNS names (<c>svc</c>, <c>svc.ns</c>, <c>svc.ns.svc</c>,
/// <c>svc.ns.svc.cluster.local</c>), with or without a port, in the Host header or an absolute-form
/// request target; or by arriving on a target's dedicated port. Anything else is not forwarded.
/// </summary>
internal sealed class TargetRouter
{
    private readonly FrozenDictionary<string, UpstreamTarget[]> _byHost;
    private readonly FrozenDictionary<int, UpstreamTarget> _byLocalPort;
    private readonly FrozenDictionary<ServicePort, UpstreamTarget> _byServicePort;

    public TargetRouter(IReadOnlyList<UpstreamTarget> targets, string clusterDomain)
    {
        var byHost = new Dictionary<string, List<UpstreamTarget>>(StringComparer.OrdinalIgnoreCase);
        var byPort = new Dictionary<int, UpstreamTarget>();
        var byServicePort = new Dictionary<ServicePort, UpstreamTarget>();
        foreach (var target in targets)
        {
            var service = target.Config.Service;
            byServicePort[new ServicePort(service.Namespace!, service.Name!, service.Port)] = target;
            string[] names =
            [
                target.Config.Hostname,
                service.Name!,
                $"{service.Name}.{service.Namespace}",
                $"{service.Name}.{service.Namespace}.svc",
                $"{service.Name}.{service.Namespace}.svc.{clusterDomain}",
            ];
            foreach (var name in names.Distinct(StringComparer.OrdinalIgnoreCase))
            {
                if (!byHost.TryGetValue(name, out var list))
                {
                    byHost[name] = list = [];
                }

                list.Add(target);
            }

            if (target.Config.ListenPort is { } port)
            {
                byPort[port] = target;
            }
        }

        _byHost = byHost.ToFrozenDictionary(p => p.Key, p => p.Value.ToArray(), StringComparer.OrdinalIgnoreCase);
        _byLocalPort = byPort.ToFrozenDictionary();
        _byServicePort = byServicePort.ToFrozenDictionary();
    }

    /// <summary>
    /// Transparent capture: what a connection's original destination is, by the destination index. One
    /// policy target among the Services it belongs to wins (never plaintext to a port a policy covers).
    /// </summary>
    public DestinationRoute ResolveDestination(IPEndPoint destination, DestinationTable table)
    {
        var ports = table.Lookup(destination);
        if (ports.IsEmpty)
        {
            return DestinationRoute.Unknown;
        }

        UpstreamTarget? first = null;
        List<UpstreamTarget>? several = null;
        foreach (var port in ports)
        {
            if (_byServicePort.TryGetValue(port, out var target) && target != first && several?.Contains(target) != true)
            {
                if (first is null)
                {
                    first = target;
                }
                else
                {
                    (several ??= [first]).Add(target);
                }
            }
        }

        return first is null ? new DestinationRoute(DestinationKind.Passthrough, null, [], ports[0])
            : several is null ? new DestinationRoute(DestinationKind.Target, first, [first], ports[0])
            : new DestinationRoute(DestinationKind.Ambiguous, null, several, ports[0]);
    }

    /// <summary>An ambiguous destination: the target among <paramref name="candidates"/> the Host header names, if one.</summary>
    public UpstreamTarget? ChooseByHost(string host, IReadOnlyList<UpstreamTarget> candidates)
    {
        var (name, port) = SplitHostPort(host);
        if (!_byHost.TryGetValue(name, out var named))
        {
            return null;
        }

        var chosen = named.Where(candidates.Contains).ToList();
        return chosen.Count == 1 ? chosen[0] : chosen.FirstOrDefault(c => c.Config.Service.Port == port);
    }

    public IEnumerable<int> DedicatedPorts => _byLocalPort.Keys;

    public RouteResult Resolve(string host, int localPort)
    {
        if (_byLocalPort.TryGetValue(localPort, out var dedicated))
        {
            return new RouteResult(dedicated, null);
        }

        var (name, port) = SplitHostPort(host);
        if (!_byHost.TryGetValue(name, out var candidates))
        {
            return new RouteResult(null, $"no BackendTLSPolicy target for host \"{name}\"; this sidecar forwards only to Services its policies name");
        }

        if (candidates.Length == 1)
        {
            // A port that is not the Service port is the gateway's own (Host: www.example.com:8080): ignored.
            return new RouteResult(candidates[0], null);
        }

        foreach (var candidate in candidates)
        {
            if (candidate.Config.Service.Port == port)
            {
                return new RouteResult(candidate, null);
            }
        }

        return new RouteResult(null,
            $"host \"{name}\" matches {candidates.Length} targets ({string.Join(", ", candidates.Select(c => c.Id))}); " +
            "add the Service port to the Host header, e.g. " + $"{name}:{candidates[0].Config.Service.Port}");
    }

    private static (string Host, int Port) SplitHostPort(string host)
    {
        var colon = host.LastIndexOf(':');
        if (colon > 0 && host.IndexOf(']', StringComparison.Ordinal) < colon)
        {
            // "name:" (an empty port) is the name; the parser has checked the port's digits.
            return (host[..colon].TrimEnd('.'), int.TryParse(host.AsSpan(colon + 1), out var port) ? port : 0);
        }

        return (host.TrimEnd('.'), 0);
    }
}

/// <summary>The chosen target, or why there is none.</summary>
internal readonly record struct RouteResult(UpstreamTarget? Target, string? Problem);

internal enum DestinationKind
{
    /// <summary>A policy target: verified TLS to the original destination.</summary>
    Target,

    /// <summary>A Service no policy names: passed through at L4.</summary>
    Passthrough,

    /// <summary>An endpoint of Services with different policies: the Host header must choose.</summary>
    Ambiguous,

    /// <summary>Not in the index.</summary>
    Unknown,
}

/// <summary>What a captured destination is; <see cref="Service"/> is one Service it belongs to (for logs).</summary>
internal sealed record DestinationRoute(DestinationKind Kind, UpstreamTarget? Target, IReadOnlyList<UpstreamTarget> Candidates, ServicePort Service)
{
    public static DestinationRoute Unknown { get; } = new(DestinationKind.Unknown, null, [], default);
}
