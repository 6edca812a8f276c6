using System.Collections.Frozen;
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

    public TargetRouter(IReadOnlyList<UpstreamTarget> targets, string clusterDomain)
    {
        var byHost = new Dictionary<string, List<UpstreamTarget>>(StringComparer.OrdinalIgnoreCase);
        var byPort = new Dictionary<int, UpstreamTarget>();
        foreach (var target in targets)
        {
            var service = target.Config.Service;
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
