using BackendTls.Policy.Destinations;
using BackendTls.Policy.Rendering;
using BackendTls.Webhook.Injection;

namespace BackendTls.Webhook.Controller;

/// <summary>The object an Event is about (the API version of a policy is filled in by the writer).</summary>
internal sealed record EventSubject(string? ApiVersion, string Kind, string Namespace, string Name, string? Uid = null);

/// <summary>An injected pod as the controller sees it: what its capture rules cover, and who restarts it.</summary>
/// <param name="Namespace">The pod's namespace.</param>
/// <param name="Name">The pod's name.</param>
/// <param name="Capture">Its capture-config annotation.</param>
/// <param name="Owner">The pod's controlling owner (an Event there reaches the people who created it), if any.</param>
/// <param name="Workload">What <c>kubectl rollout restart</c> takes (deployment/x, statefulset/x, daemonset/x), if known.</param>
internal sealed record InjectedPod(string Namespace, string Name, CaptureConfig Capture, EventSubject? Owner, string? Workload)
{
    public string RestartCommand => Workload is null
        ? $"kubectl -n {Namespace} delete pod {Name}"
        : $"kubectl -n {Namespace} rollout restart {Workload}";
}

/// <summary>A pod, and the ports of a policy target its rules do not capture.</summary>
internal sealed record UncapturedPod(InjectedPod Pod, IReadOnlyList<int> Ports);

/// <summary>A policy target some transparent-mode pods do not capture (their rules were set at admission).</summary>
internal sealed record UncapturedTarget(string PolicyNamespace, string PolicyName, string Service, IReadOnlyList<UncapturedPod> Pods)
{
    public IReadOnlyList<int> Ports => Pods.SelectMany(p => p.Ports).Distinct().Order().ToList();
}

/// <summary>
/// Capture rules are written once, when a pod starts: a policy added later on a port the rules do not cover
/// reaches those pods' sidecars only after a restart. This finds such (policy, pod) pairs, for a condition
/// on the policy and an Event on each pod, both with the command that fixes it.
/// </summary>
internal static class CaptureCoverage
{
    public const string ConditionType = "backendtls.io/PortsCaptured";
    public const string CapturedReason = "PortsCaptured";
    public const string UncapturedReason = "UncapturedPort";
    public const string ExplicitModeReason = "ExplicitMode";

    public static IReadOnlyList<UncapturedTarget> Find(RenderResult render, IReadOnlyList<InjectedPod> pods)
    {
        var transparent = pods.Where(p => p.Capture.Transparent && !p.Capture.AllPorts).ToList();
        if (transparent.Count == 0)
        {
            return [];
        }

        var index = render.Destinations ?? new DestinationIndex();
        var found = new List<UncapturedTarget>();
        foreach (var group in render.Config.Targets!.Where(t => t.Policy is not null && t.Service is not null)
                     .GroupBy(t => (t.Policy!.Namespace!, t.Policy.Name!, Service: $"{t.Service!.Namespace}/{t.Service.Name}")))
        {
            var ports = index.CapturePorts(group);
            var missing = transparent
                .Select(p => new UncapturedPod(p, ports.Where(port => !p.Capture.Captures(port)).ToList()))
                .Where(p => p.Ports.Count > 0)
                .ToList();
            if (missing.Count > 0)
            {
                found.Add(new UncapturedTarget(group.Key.Item1, group.Key.Item2, group.Key.Service, missing));
            }
        }

        return found;
    }

    /// <summary>The condition on a policy's ancestor (its Service); none when no pod is in transparent mode.</summary>
    public static PolicyCondition? Condition(IReadOnlyList<UncapturedTarget> uncaptured, IReadOnlyList<InjectedPod> pods, string policyNamespace, string policyName, string service)
    {
        if (!pods.Any(p => p.Capture.Transparent))
        {
            return null;
        }

        var gap = uncaptured.FirstOrDefault(u => u.PolicyNamespace == policyNamespace && u.PolicyName == policyName && u.Service == service);
        if (gap is null)
        {
            return new PolicyCondition(ConditionType, true, CapturedReason, "Every transparent-mode sidecar captures this Service's ports");
        }

        var restarts = gap.Pods.Select(p => p.Pod.RestartCommand).Distinct().ToList();
        var names = gap.Pods.Take(5).Select(p => $"{p.Pod.Namespace}/{p.Pod.Name}");
        var more = gap.Pods.Count > 5 ? $" and {gap.Pods.Count - 5} more" : string.Empty;
        return new PolicyCondition(ConditionType, false, UncapturedReason,
            $"port {string.Join(",", gap.Ports)} of Service {service} is not captured by pods {string.Join(", ", names)}{more} " +
            $"(their capture rules were set when they started): their traffic there is not verified TLS until they restart: {string.Join("; ", restarts.Take(5))}");
    }

    /// <summary>The Event for one pod that does not capture a policy's port.</summary>
    public static KubeEvent PodEvent(UncapturedTarget gap, UncapturedPod uncaptured) =>
        new(new EventSubject("v1", "Pod", uncaptured.Pod.Namespace, uncaptured.Pod.Name), "Warning", UncapturedReason,
            $"BackendTLSPolicy {gap.PolicyNamespace}/{gap.PolicyName} targets port {string.Join(",", uncaptured.Ports)} of Service {gap.Service}, " +
            $"which this pod's capture rules (set at start) do not cover, so that traffic bypasses TLS verification; restart it: {uncaptured.Pod.RestartCommand}");

    /// <summary>The Event on a pod's owner when admission had to fall back to explicit mode.</summary>
    public static KubeEvent? FallbackEvent(InjectedPod pod) =>
        pod.Capture.Transparent || pod.Capture.Reason is null || pod.Owner is null
            ? null
            : new KubeEvent(pod.Owner, "Warning", ExplicitModeReason,
                $"pod {pod.Name}: transparent capture is off because {pod.Capture.Reason}; the sidecar runs in explicit mode and only traffic " +
                "the gateway sends to its loopback listener (http://127.0.0.1:15001 unless backendtls.io/listen-port says otherwise) is verified TLS (docs/transparent-capture.md)");
}
