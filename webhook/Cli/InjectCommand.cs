using System.Text.Json.Nodes;
using BackendTls.Policy.Cli;
using BackendTls.Policy.Destinations;
using BackendTls.Policy.Loading;
using BackendTls.Policy.Rendering;
using BackendTls.Policy.Yaml;
using BackendTls.Webhook.Hosting;
using BackendTls.Webhook.Injection;

namespace BackendTls.Webhook.Cli;

/// <summary>
/// <c>backendtls-webhook inject -f FILE...</c>: injects the sidecar into manifests offline, like
/// <c>istioctl kube-inject</c> and <c>linkerd inject</c>, with the webhook's own code. Reads Pods and
/// workloads with a pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ...),
/// Lists and multi-document files; writes everything back, other objects unchanged. The namespace
/// label is not consulted (asking is opting in); opt-outs, system namespaces and hostNetwork still apply.
/// </summary>
internal static class InjectCommand
{
    private static (FlagSet Set, Flag<string> Files, InjectorFlags Injector) Flags()
    {
        var set = new FlagSet("inject", "backendtls-webhook inject -f FILE [-f FILE...] [flags]   inject the sidecar into manifests offline; writes them to stdout");
        var files = set.Add("filename", string.Empty, FlagValues.Text, "manifests (Pods, workloads, Lists; '-' for stdin)", "FILE", "f", repeatable: true);
        return (set, files, new InjectorFlags(set));
    }

    public static int Run(IReadOnlyList<string> args, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        var (set, filesFlag, injector) = Flags();
        var errors = set.Parse(args, _ => null).ToList();
        if (set.HelpRequested)
        {
            stdout.WriteLine(set.Usage);
            return 0;
        }

        if (filesFlag.Values.Count == 0)
        {
            errors.Add("give at least one -f FILE ('-' for stdin)");
        }

        if (errors.Count > 0)
        {
            stderr.WriteLine(string.Join("\n", errors.Select(e => "inject: " + e)) + "\n\n" + set.Usage);
            return 2;
        }

        var files = filesFlag.Values;
        var settings = injector.Settings();
        var parsed = new List<(string File, IReadOnlyList<JsonNode> Documents)>();
        foreach (var file in files)
        {
            try
            {
                parsed.Add((file, YamlDocuments.Parse(file == "-"
                    ? BoundedFile.ReadText(stdin, BoundedFile.MaxManifestBytes)
                    : BoundedFile.ReadText(file, BoundedFile.MaxManifestBytes), file, typedScalars: true)));
            }
            catch (Exception e) when (e is YamlFormatException or IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"inject: {e.Message}");
                return 2;
            }
        }

        // Policies, Services and EndpointSlices among the inputs say which ports transparent capture covers.
        var capturePorts = CapturePortsOf(parsed.SelectMany(p => p.Documents));
        var output = new List<string>();
        foreach (var (file, documents) in parsed)
        {
            foreach (var document in documents)
            {
                var result = InjectDocument(document, settings, capturePorts);
                foreach (var line in result.Messages)
                {
                    stderr.WriteLine($"{file}: {line}");
                }

                output.Add(YamlDocuments.ToYaml(result.Document));
            }
        }

        stdout.Write(string.Join("---\n", output));
        return 0;
    }

    public sealed record DocumentResult(JsonNode Document, IReadOnlyList<string> Messages);

    /// <summary>Injects every pod template in one document (recursing into Lists); the input is not modified.</summary>
    public static DocumentResult InjectDocument(JsonNode document, InjectorSettings settings, ICapturePortSource? capturePorts = null)
    {
        var copy = document.DeepClone();
        var messages = new List<string>();
        Visit(copy, settings, capturePorts ?? new StaticCapturePorts([]), messages);
        return new DocumentResult(copy, messages);
    }

    /// <summary>The capture ports the policies among these documents call for (their Services' ports and endpoint ports).</summary>
    public static ICapturePortSource CapturePortsOf(IEnumerable<JsonNode> documents)
    {
        var objects = new List<KubeObject>();
        foreach (var document in documents)
        {
            try
            {
                objects.AddRange(KubeObject.FromDocuments([document], "inject input"));
            }
            catch (RenderInputException)
            {
                // not a Kubernetes object; the injector reports it
            }
        }

        var rendered = PolicyRenderer.Render(objects, DestinationScope.None);
        var index = DestinationIndex.Build(objects);
        return new StaticCapturePorts(index.CapturePorts(rendered.Config.Targets!));
    }

    private static void Visit(JsonNode node, InjectorSettings settings, ICapturePortSource capturePorts, List<string> messages)
    {
        if (node is not JsonObject obj)
        {
            return;
        }

        var kind = (string?)obj["kind"];
        var name = $"{kind} {(string?)obj["metadata"]?["namespace"] ?? "default"}/{(string?)obj["metadata"]?["name"]}";
        if (kind is not null && kind.EndsWith("List", StringComparison.Ordinal) && obj["items"] is JsonArray items)
        {
            foreach (var item in items)
            {
                Visit(item!, settings, capturePorts, messages);
            }

            return;
        }

        var (parent, key) = kind switch
        {
            "Pod" => (null, null),
            "CronJob" => (obj["spec"]?["jobTemplate"]?["spec"] as JsonObject, "template"),
            "Deployment" or "StatefulSet" or "DaemonSet" or "ReplicaSet" or "ReplicationController" or "Job" or "DeploymentConfig"
                => (obj["spec"] as JsonObject, "template"),
            _ => ((JsonObject?)null, (string?)"-"),
        };

        if (key == "-")
        {
            return; // not a workload: written back unchanged
        }

        var pod = key is null ? obj : parent?[key] as JsonObject;
        if (pod is null)
        {
            messages.Add($"{name}: no pod template found; left unchanged");
            return;
        }

        var ns = (string?)obj["metadata"]?["namespace"];
        var result = PodInjector.Inject(pod, ns, settings, new NamespaceInfo(ns ?? "default", NamespaceInjection.Enabled), capturePorts);
        messages.AddRange(result.Warnings.Select(w => $"{name}: warning: {w}"));
        if (result.Outcome == InjectionOutcome.Skipped)
        {
            messages.Add($"{name}: not injected: {result.Reason}");
        }

        if (!result.Changed)
        {
            return;
        }

        if (key is null)
        {
            obj["metadata"] = result.Pod["metadata"]!.DeepClone();
            obj["spec"] = result.Pod["spec"]!.DeepClone();
        }
        else
        {
            parent![key] = result.Pod.DeepClone();
        }
    }
}
