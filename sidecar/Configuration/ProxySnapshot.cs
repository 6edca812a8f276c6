using BackendTls.Policy.Loading;
using BackendTls.Sidecar.Upstreams;
using BackendTls.Sidecar.Routing;

namespace BackendTls.Sidecar.Configuration;

/// <summary>One consistent view of the config: targets and the router over them. Swapped atomically on reload.</summary>
internal sealed record ProxySnapshot(LoadedConfig Config, IReadOnlyList<UpstreamTarget> Targets, TargetRouter Router, DateTimeOffset LoadedAt);

/// <summary>What the last load attempt found; shown by readiness and the status page.</summary>
internal sealed record LoadAttempt(DateTimeOffset At, bool Succeeded, IReadOnlyList<string> Errors);
