using System.Text.Json.Nodes;
using BackendTls.Policy.Loading;
using BackendTls.Policy.Model;
using BackendTls.Policy.Rendering;
using BackendTls.Policy.Yaml;

namespace BackendTls.Sidecar.Rendering;

/// <summary>
/// <c>backendtls-sidecar render -f FILE... (-o DIR | --configmap NAME [-n NAMESPACE])</c>: turns
/// BackendTLSPolicy, Service, ConfigMap and Secret manifests into the sidecar's config directory, or
/// into a ConfigMap to <c>kubectl apply</c>. Prints each policy's decision (as status would show it)
/// on stderr. Exit code 0: every policy accepted; 1: written, but some policy was rejected or has
/// unresolved refs; 2: unusable input, nothing written.
/// </summary>
internal static class RenderCommand
{
    public const string Usage = """
        backendtls-sidecar render -f FILE [-f FILE ...] (-o DIR | --configmap NAME [-n NAMESPACE])
          -f, --filename FILE   manifests (YAML/JSON, multi-document or List; '-' for stdin): BackendTLSPolicy
                                (v1 or v1alpha3), the Services they target, the ConfigMaps/Secrets with ca.crt
          -o, --output DIR      write the config directory (backendtls.yaml and CA bundles) to DIR
          --configmap NAME      print a ConfigMap holding the files instead (kubectl apply -f -)
          -n, --namespace NS    namespace of that ConfigMap                                   [default]
        """;

    public static int Run(IReadOnlyList<string> args, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        var inputs = new List<string>();
        string? output = null;
        string? configMap = null;
        var ns = "default";
        for (var i = 0; i < args.Count; i++)
        {
            var flag = args[i];
            if (flag is "-h" or "--help")
            {
                stdout.WriteLine(Usage);
                return 0;
            }

            if (i + 1 >= args.Count)
            {
                stderr.WriteLine($"render: {flag} needs a value\n\n{Usage}");
                return 2;
            }

            var value = args[++i];
            switch (flag)
            {
                case "-f" or "--filename":
                    inputs.Add(value);
                    break;
                case "-o" or "--output":
                    output = value;
                    break;
                case "--configmap":
                    configMap = value;
                    break;
                case "-n" or "--namespace":
                    ns = value;
                    break;
                default:
                    stderr.WriteLine($"render: unknown flag {flag}\n\n{Usage}");
                    return 2;
            }
        }

        if (inputs.Count == 0 || (output is null) == (configMap is null))
        {
            stderr.WriteLine($"render: give at least one -f and exactly one of -o or --configmap\n\n{Usage}");
            return 2;
        }

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
