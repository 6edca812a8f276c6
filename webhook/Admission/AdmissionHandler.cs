using System.Text;
using System.Text.Json.Nodes;
using BackendTls.Webhook.Admin;
using BackendTls.Webhook.Injection;
using BackendTls.Webhook.Json;
using BackendTls.Webhook.Patching;

namespace BackendTls.Webhook.Admission;

/// <summary>Looks up a namespace's injection label (the API server's selector did it first) and Pod Security level.</summary>
internal interface INamespaceInjectionSource
{
    ValueTask<NamespaceInfo> GetAsync(string ns, CancellationToken cancellationToken);
}

/// <summary>When nothing is looked up, the namespaceSelector of the webhook configuration is trusted.</summary>
internal sealed class TrustSelectorNamespaceSource : INamespaceInjectionSource
{
    public ValueTask<NamespaceInfo> GetAsync(string ns, CancellationToken cancellationToken) => ValueTask.FromResult(new NamespaceInfo(ns, NamespaceInjection.Unknown));
}

/// <summary>
/// Turns one AdmissionRequest into an AdmissionResponse: inject into Pod CREATEs, allow everything else
/// unchanged. Always echoes the request uid; never throws for bad input (a pod it cannot read is refused
/// with a message, so no gateway pod starts half-configured).
/// </summary>
internal sealed partial class AdmissionHandler(
    InjectorSettings settings,
    INamespaceInjectionSource namespaces,
    ICapturePortSource capturePorts,
    WebhookMetrics metrics,
    ILogger<AdmissionHandler> logger)
{
    public async Task<AdmissionResponse> HandleAsync(AdmissionRequest request, CancellationToken cancellationToken)
    {
        var uid = request.Uid!;
        if (request.Kind?.Kind != "Pod" || request.Operation != "CREATE" || !string.IsNullOrEmpty(request.SubResource))
        {
            Count("skipped", "not_pod_create");
            return new AdmissionResponse { Uid = uid, Allowed = true };
        }

        if (request.Object is not JsonObject pod)
        {
            Count("error", "unreadable_object");
            return Refuse(uid, "request.object is not a Pod object; the backendtls injector cannot read it");
        }

        var ns = request.Namespace ?? StringAt(pod, "namespace") ?? "default";
        var name = StringAt(pod, "name") ?? (StringAt(pod, "generateName") is { } prefix ? prefix + "*" : "(unnamed)");
        if (PodShape.Problem(pod) is { } shape)
        {
            Count("error", "malformed_pod");
            LogMalformed(logger, ns, name, shape);
            return Refuse(uid, $"pod {ns}/{name} could not be read by the backendtls injector: {shape}");
        }

        InjectionResult result;
        try
        {
            var state = await namespaces.GetAsync(ns, cancellationToken);
            result = PodInjector.Inject(pod, ns, settings, state, capturePorts);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException or System.Text.Json.JsonException)
        {
            // A field of an unexpected type (e.g. spec.containers not a list): say which, don't crash.
            Count("error", "malformed_pod");
            LogMalformed(logger, ns, name, e.Message);
            return Refuse(uid, $"pod {ns}/{name} could not be read by the backendtls injector: {e.Message}");
        }

        Count(result.Outcome.ToString().ToLowerInvariant(), result.ReasonCode);
        LogDecision(logger, ns, name, result.Outcome.ToString(), result.Reason, request.DryRun == true ? " [dry run]" : string.Empty);
        var warnings = result.Warnings.ToList();
        if (!result.Changed)
        {
            return new AdmissionResponse { Uid = uid, Allowed = true, Warnings = warnings.Count > 0 ? warnings : null };
        }

        var patch = JsonPatchDiff.Create(pod, result.Pod);
        return new AdmissionResponse
        {
            Uid = uid,
            Allowed = true,
            PatchType = "JSONPatch",
            Patch = Convert.ToBase64String(Encoding.UTF8.GetBytes(patch.ToJsonString())),
            Warnings = warnings.Count > 0 ? warnings : null,
        };
    }

    public static AdmissionResponse Refuse(string uid, string message) =>
        new() { Uid = uid, Allowed = false, Status = new AdmissionStatus(400, message) };

    private static string? StringAt(JsonObject pod, string field) =>
        JsonFields.Child(JsonFields.Child(pod, "metadata"), field) is JsonValue value && value.GetValueKind() == System.Text.Json.JsonValueKind.String
            ? value.GetValue<string>()
            : null;

    public void LogDefect(Exception exception) => LogFailure(logger, exception);

    [LoggerMessage(3, LogLevel.Error, "The injector failed on an AdmissionReview (a defect); the pod was refused", EventName = "AdmissionDefect")]
    private static partial void LogFailure(ILogger logger, Exception exception);

    private void Count(string result, string reason) => metrics.Admissions.WithLabels(result, reason).Inc();

    [LoggerMessage(1, LogLevel.Information, "Pod {Namespace}/{Name}: {Decision} ({Reason}){DryRunNote}", EventName = "AdmissionDecision")]
    private static partial void LogDecision(ILogger logger, string @namespace, string name, string decision, string reason, string dryRunNote);

    [LoggerMessage(2, LogLevel.Warning, "Pod {Namespace}/{Name} refused: {Problem}", EventName = "AdmissionMalformed")]
    private static partial void LogMalformed(ILogger logger, string @namespace, string name, string problem);
}
