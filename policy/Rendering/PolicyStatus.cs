using BackendTls.Policy.Model;

namespace BackendTls.Policy.Rendering;

/// <summary>Condition types and reasons of Gateway API's PolicyAncestorStatus for BackendTLSPolicy.</summary>
public static class PolicyReasons
{
    public const string Accepted = "Accepted";
    public const string Conflicted = "Conflicted";
    public const string Invalid = "Invalid";
    public const string TargetNotFound = "TargetNotFound";
    public const string NoValidCACertificate = "NoValidCACertificate";
    public const string ResolvedRefs = "ResolvedRefs";
    public const string InvalidCACertificateRef = "InvalidCACertificateRef";
    public const string InvalidKind = "InvalidKind";
}

/// <summary>One condition, as it goes into status.ancestors[].conditions.</summary>
public sealed record PolicyCondition(string Type, bool Status, string Reason, string Message);

/// <summary>What render decided about one BackendTLSPolicy: its two conditions and what it applies to.</summary>
public sealed record PolicyResult(
    ObjectRef Policy,
    long Generation,
    PolicyCondition Accepted,
    PolicyCondition ResolvedRefs,
    IReadOnlyList<string> AppliedTargets,
    IReadOnlyList<string> Warnings)
{
    public bool IsAccepted => Accepted.Status;
}

/// <summary>The output of render: the sidecar's files plus the decision for every policy.</summary>
public sealed record RenderResult(
    SidecarConfig Config,
    IReadOnlyDictionary<string, string> Files,
    IReadOnlyList<PolicyResult> Policies,
    IReadOnlyList<string> Notes)
{
    /// <summary>The destination index written as destinations.json (null with <see cref="DestinationScope.None"/>).</summary>
    public Destinations.DestinationIndex? Destinations { get; init; }
}

/// <summary>Which Services render puts into the destination index (destinations.json).</summary>
public enum DestinationScope
{
    /// <summary>Every Service in the input (the render command: the offline flow's whole index).</summary>
    AllServices,

    /// <summary>Only the Services policies target (the controller's ConfigMaps: a bootstrap the live index completes).</summary>
    PolicyTargets,

    /// <summary>No index file.</summary>
    None,
}
