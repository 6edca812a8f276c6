using System.Text.Json.Nodes;
using BackendTls.Policy.Cli;
using BackendTls.Policy.Loading;
using BackendTls.Policy.Model;
using BackendTls.Policy.Rendering;
using BackendTls.Policy.Yaml;

namespace BackendTls.Sidecar.Cli;

/// <summary>
/// <c>backendtls-sidecar render -f FILE... (-o DIR | --configmap NAME [-n NAMESPACE])</c>: turns
/// BackendTLSPolicy, Service, ConfigMap and Secret manifests into the sidecar's config directory, or
/// into a ConfigMap to <c>kubectl apply</c>. Prints each policy's decision (as status would show it)
/// on stderr. Exit code 0: every policy accepted; 1: written, but some policy was rejected or has
/// unresolved refs; 2: unusable input, nothing written.
/// </summary>
internal static class RenderCommand
{
    private sealed class RenderFlags
    {
        public RenderFlags()
        {
            Set = new FlagSet("render", """
                backendtls-sidecar render -f FILE [-f FILE ...] (-o DIR | --configmap NAME [-n NAMESPACE])
                  turns BackendTLSPolicy (v1 or v1alpha3) manifests, the Services they target and the ConfigMaps/Secrets
                  with ca.crt into the sidecar's config directory, or into a ConfigMap to kubectl apply
                """);
            Files = Set.Add("filename", string.Empty, FlagValues.Text, "manifests (YAML/JSON, multi-document or List; '-' for stdin)", "FILE", "f", repeatable: true);
            Output = Set.Add("output", string.Empty, FlagValues.Text, "write the config directory (backendtls.yaml and CA bundles) to DIR", "DIR", "o");
            ConfigMap = Set.Add("configmap", string.Empty, FlagValues.Text, "print a ConfigMap holding the files instead (kubectl apply -f -)", "NAME");
            Namespace = Set.Add("namespace", "default", FlagValues.Text, "namespace of that ConfigMap", "NS", "n");
        }

        public FlagSet Set { get; }

        public Flag<string> Files { get; }

        public Flag<string> Output { get; }

        public Flag<string> ConfigMap { get; }

        public Flag<string> Namespace { get; }
    }

    public static string Usage => new RenderFlags().Set.Usage;

    public static int Run(IReadOnlyList<string> args, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        var flags = new RenderFlags();
        var errors = flags.Set.Parse(args, _ => null).ToList();
        if (flags.Set.HelpRequested)
        {
            stdout.WriteLine(flags.Set.Usage);
            return 0;
        }

        if (flags.Files.Values.Count == 0)
        {
            errors.Add("give at least one -f FILE ('-' for stdin)");
        }

        if (flags.Output.IsSet == flags.ConfigMap.IsSet)
        {
            errors.Add("give exactly one of -o DIR or --configmap NAME");
        }

        if (errors.Count > 0)
        {
            stderr.WriteLine(string.Join("\n", errors.Select(e => "render: " + e)) + "\n\n" + flags.Set.Usage);
            return 2;
        }

        var inputs = flags.Files.Values;
        var output = flags.Output.IsSet ? flags.Output.Value : null;
        var configMap = flags.ConfigMap.IsSet ? flags.ConfigMap.Value : null;
        var ns = flags.Namespace.Value;
        RenderResult result;
        try
        {
            var texts = inputs.Select(path => (path, path == "-"
                ? BoundedFile.ReadText(stdin, BoundedFile.MaxManifestBytes)
                : BoundedFile.ReadText(path, BoundedFile.MaxManifestBytes))).ToList();
            result = PolicyRenderer.RenderYaml(texts);
        }
        catch (Exception e) when (e is RenderInputException or IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"render: {e.Message}");
            return 2;
        }

        if (output is not null)
        {
            WriteDirectory(output, result.Files);
            stderr.WriteLine($"render: wrote {result.Files.Count} file(s) to {output}: {result.Config.Targets!.Count} target(s)");
        }
        else
        {
            stdout.Write(ToConfigMap(configMap!, ns, result.Files));
        }

        return Report(result, stderr);
    }

    /// <summary>
    /// Writes a rendered config directory as a live sidecar should see it change: each file replaced
    /// atomically, CA bundles before the config that names them, stale bundles of an earlier render removed.
    /// </summary>
    public static void WriteDirectory(string directory, IReadOnlyDictionary<string, string> files)
    {
        Directory.CreateDirectory(directory);
        // CA bundles first, the config last: a live sidecar never sees a config naming a missing bundle.
        foreach (var (name, content) in files.OrderBy(f => f.Key == SidecarConfig.FileName))
        {
            var path = Path.Combine(directory, name);
            var temporary = path + ".tmp";
            File.WriteAllText(temporary, content);
            File.Move(temporary, path, overwrite: true);
        }

        foreach (var stale in Directory.GetFiles(directory, "ca.*.crt"))
        {
            if (!files.ContainsKey(Path.GetFileName(stale)))
            {
                File.Delete(stale);
            }
        }
    }

    public static string ToConfigMap(string name, string ns, IReadOnlyDictionary<string, string> files)
    {
        var data = new JsonObject();
        foreach (var (key, value) in files)
        {
            data[key] = value;
        }

        var configMap = new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "ConfigMap",
            ["metadata"] = new JsonObject
            {
                ["name"] = name,
                ["namespace"] = ns,
                ["labels"] = new JsonObject { ["app.kubernetes.io/managed-by"] = "backendtls-render" },
            },
            ["data"] = data,
        };
        return YamlDocuments.ToYaml(configMap);
    }

    private static int Report(RenderResult result, TextWriter stderr)
    {
        var clean = true;
        foreach (var policy in result.Policies)
        {
            stderr.WriteLine($"BackendTLSPolicy {policy.Policy}:");
            foreach (var condition in new[] { policy.Accepted, policy.ResolvedRefs })
            {
                stderr.WriteLine($"  {condition.Type}={(condition.Status ? "True" : "False")} ({condition.Reason}): {condition.Message}");
                clean &= condition.Status;
            }

            if (policy.AppliedTargets.Count > 0)
            {
                stderr.WriteLine($"  applies to: {string.Join(", ", policy.AppliedTargets)}");
            }

            foreach (var warning in policy.Warnings)
            {
                stderr.WriteLine($"  warning: {warning}");
            }
        }

        foreach (var note in result.Notes)
        {
            stderr.WriteLine($"note: {note}");
        }

        if (result.Policies.Count == 0)
        {
            stderr.WriteLine("render: no BackendTLSPolicy in the input; the config has no targets");
        }

        return clean ? 0 : 1;
    }
}
