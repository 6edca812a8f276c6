using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BackendTls.Policy.Model;
using BackendTls.Policy.Validation;
using BackendTls.Policy.Yaml;

namespace BackendTls.Policy.Rendering;

/// <summary>
/// Turns BackendTLSPolicies (v1 and v1alpha3), the Services they target and the ConfigMaps/Secrets their CA
/// refs name into the sidecar's config directory. A pure function: the <c>render</c> command and the
/// controller both call it, so what a user renders by hand is what the cluster gets.
/// </summary>
/// <remarks>
/// Semantics follow the Gateway API spec where implementations differ (docs/policy-semantics.md):
/// every CA ref is judged on its own; a policy whose refs are all invalid is rendered fail-closed (503),
/// never dropped; conflicts go to the oldest policy, then namespace/name; a sectionName policy and a
/// whole-Service policy each keep their own ports.
/// </remarks>
public static class PolicyRenderer
{
    public const string PolicyGroup = "gateway.networking.k8s.io";
    public const string CaKey = "ca.crt";
    private static readonly string[] SupportedVersions = ["v1", "v1alpha3"];

    /// <param name="objects">Policies, Services, EndpointSlices and the CA holders they reference.</param>
    /// <param name="destinations">Which Services go into destinations.json (transparent capture's index).</param>
    public static RenderResult Render(IEnumerable<KubeObject> objects, DestinationScope destinations = DestinationScope.AllServices)
    {
        var all = objects.ToList();
        var policies = new List<KubeObject>();
        var services = new Dictionary<(string, string), KubeObject>();
        var configMaps = new Dictionary<(string, string), KubeObject>();
        var secrets = new Dictionary<(string, string), KubeObject>();
        var notes = new List<string>();
        foreach (var obj in all)
        {
            switch (obj.Kind)
            {
                case "EndpointSlice" when obj.Group == "discovery.k8s.io":
                    break; // read by the destination index
                case "BackendTLSPolicy" when obj.Group == PolicyGroup:
                    policies.Add(obj);
                    break;
                case "Service" when obj.Group.Length == 0:
                    services[(obj.Namespace, obj.Name!)] = obj;
                    break;
                case "ConfigMap" when obj.Group.Length == 0:
                    configMaps[(obj.Namespace, obj.Name!)] = obj;
                    break;
                case "Secret" when obj.Group.Length == 0:
                    secrets[(obj.Namespace, obj.Name!)] = obj;
                    break;
                default:
                    notes.Add($"{obj.Origin}: {obj.Kind} {obj.Namespace}/{obj.Name} is not used by render (only BackendTLSPolicy, Service, ConfigMap, Secret)");
                    break;
            }
        }

        var context = new Inputs(services, configMaps, secrets);
        var candidates = policies.Select(p => Evaluate(p, context)).ToList();
        var result = Assemble(candidates, notes);
        if (destinations == DestinationScope.None)
        {
            return result;
        }

        var targeted = result.Config.Targets!.Select(t => (t.Service!.Namespace, t.Service.Name)).ToHashSet();
        var index = Destinations.DestinationIndex.Build(all.Where(o => destinations == DestinationScope.AllServices
            || targeted.Contains((o.Namespace, o.Kind == "EndpointSlice" ? KubeObject.AsString(o["metadata.labels"]?["kubernetes.io/service-name"]) : o.Name))));
        var files = new SortedDictionary<string, string>(result.Files.ToDictionary(), StringComparer.Ordinal)
        {
            [Destinations.DestinationIndex.FileName] = JsonSerializer.Serialize(index, Destinations.DestinationIndexJsonContext.Default.DestinationIndex),
        };
        return result with { Files = files, Destinations = index };
    }

    /// <summary>Convenience for callers holding YAML texts: (name, content) pairs.</summary>
    public static RenderResult RenderYaml(IEnumerable<(string Name, string Content)> inputs, DestinationScope destinations = DestinationScope.AllServices)
    {
        var objects = new List<KubeObject>();
        foreach (var (name, content) in inputs)
        {
            IReadOnlyList<JsonNode> documents;
            try
            {
                documents = YamlDocuments.Parse(content, name);
            }
            catch (YamlFormatException e)
            {
                throw new RenderInputException(e.Message);
            }

            objects.AddRange(KubeObject.FromDocuments(documents, name));
        }

        return Render(objects, destinations);
    }

    private sealed record Inputs(
        Dictionary<(string, string), KubeObject> Services,
        Dictionary<(string, string), KubeObject> ConfigMaps,
        Dictionary<(string, string), KubeObject> Secrets);

    /// <summary>A port a policy claims, before conflicts are settled.</summary>
    private sealed record Claim(string ServiceNamespace, string ServiceName, int Port, string? PortName, bool BySectionName);

    private sealed record ResolvedCa(string FileName, string Source, string Pem);

    /// <summary>A policy after validation and ref resolution, before conflicts.</summary>
    private sealed class Candidate(KubeObject policy)
    {
        public KubeObject Policy { get; } = policy;
        public List<string> SpecErrors { get; } = [];
        public List<string> Warnings { get; } = [];
        public List<Claim> Claims { get; } = [];
        public List<string> TargetErrors { get; } = [];
        public List<ResolvedCa> Cas { get; } = [];
        public List<InvalidCaRef> InvalidRefs { get; } = [];
        public bool AnyInvalidKind { get; set; }
        public string? WellKnown { get; set; }
        public string? Hostname { get; set; }
        public List<SubjectAltName> Sans { get; } = [];
        public Dictionary<string, string> Options { get; } = new(StringComparer.Ordinal);
        public List<string> ConflictsWith { get; } = [];
        public List<string> Applied { get; } = [];

        public bool NoValidCa => WellKnown is null && Cas.Count == 0;
    }

    private static Candidate Evaluate(KubeObject policy, Inputs inputs)
    {
        var candidate = new Candidate(policy);
        var version = policy.ApiVersion![(PolicyGroup.Length + 1)..];
        if (!SupportedVersions.Contains(version))
        {
            candidate.SpecErrors.Add($"apiVersion {policy.ApiVersion} is not supported; use {PolicyGroup}/v1 (or v1alpha3). " +
                                     "v1alpha2 (spec.targetRef, spec.tls) was removed in Gateway API v1.1");
            return candidate;
        }

        if (policy["spec"] is not JsonObject spec)
        {
            candidate.SpecErrors.Add("spec: missing");
            return candidate;
        }

        ReadTargetRefs(spec, policy, inputs, candidate);
        ReadValidation(spec["validation"] as JsonObject, policy, inputs, candidate);
        ReadOptions(spec["options"] as JsonObject, candidate);
        return candidate;
    }

    private static void ReadTargetRefs(JsonObject spec, KubeObject policy, Inputs inputs, Candidate candidate)
    {
        if (spec["targetRefs"] is not JsonArray refs || refs.Count == 0)
        {
            candidate.SpecErrors.Add("spec.targetRefs: missing or empty; name the Service to use TLS for, e.g. {group: \"\", kind: Service, name: my-svc}");
            return;
        }

        if (refs.Count > 16)
        {
            candidate.SpecErrors.Add($"spec.targetRefs: {refs.Count} entries; at most 16 are allowed");
        }

        var seen = new HashSet<(string, string?)>();
        var namesWithoutSection = new HashSet<string>(StringComparer.Ordinal);
        var nameCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < refs.Count; i++)
        {
            var field = $"spec.targetRefs[{i}]";
            var group = KubeObject.AsString(refs[i]?["group"]) ?? string.Empty;
            var kind = KubeObject.AsString(refs[i]?["kind"]);
            var name = KubeObject.AsString(refs[i]?["name"]);
            var section = KubeObject.AsString(refs[i]?["sectionName"]);
            if (name is null)
            {
                candidate.SpecErrors.Add($"{field}.name: missing");
                continue;
            }

            nameCounts[name] = nameCounts.GetValueOrDefault(name) + 1;
            if (section is null)
            {
                namesWithoutSection.Add(name);
            }

            if (!seen.Add((name, section)))
            {
                candidate.SpecErrors.Add($"{field}: duplicates another targetRef; sectionName must be unique when targetRefs includes 2 or more references to the same target");
                continue;
            }

            if (group is not ("" or "core") || kind != "Service")
            {
                candidate.TargetErrors.Add($"{field}: {(group.Length == 0 ? "" : group + "/")}{kind} {name} is not supported; this implementation attaches to core Services only (group \"\", kind Service)");
                continue;
            }

            if (!inputs.Services.TryGetValue((policy.Namespace, name), out var service))
            {
                candidate.TargetErrors.Add($"{field}: Service {policy.Namespace}/{name} not found; create it, or pass its manifest to render (kubectl get service -n {policy.Namespace} {name} -o yaml)");
                continue;
            }

            AddClaims(service, section, field, candidate);
        }

        foreach (var (name, count) in nameCounts)
        {
            if (count > 1 && namesWithoutSection.Contains(name))
            {
                candidate.SpecErrors.Add($"spec.targetRefs: Service {name} is referenced {count} times; sectionName must be specified when targetRefs includes 2 or more references to the same target");
            }
        }
    }

    private static void AddClaims(KubeObject service, string? section, string field, Candidate candidate)
    {
        var ports = service["spec.ports"] as JsonArray ?? [];
        var matched = false;
        foreach (var port in ports)
        {
            var portName = KubeObject.AsString(port?["name"]);
            var protocol = KubeObject.AsString(port?["protocol"]) ?? "TCP";
            if (section is not null && portName != section)
            {
                continue;
            }

            matched = true;
            if (!int.TryParse(KubeObject.AsString(port?["port"]), out var number))
            {
                candidate.TargetErrors.Add($"{field}: {service.Display} has a port without a number");
                continue;
            }

            if (protocol != "TCP")
            {
                var message = $"{field}: {service.Display} port {number} uses {protocol}; TLS needs TCP";
                if (section is not null)
                {
                    candidate.SpecErrors.Add(message + "; target a TCP port");
                }
                else
                {
                    candidate.Warnings.Add(message + "; that port is left out");
                }

                continue;
            }

            candidate.Claims.Add(new Claim(service.Namespace, service.Name!, number, portName, section is not null));
        }

        if (!matched)
        {
            candidate.TargetErrors.Add(section is null
                ? $"{field}: {service.Display} has no ports"
                : $"{field}.sectionName: {service.Display} has no port named \"{section}\"; use one of: {string.Join(", ", ports.Select(p => KubeObject.AsString(p?["name"]) ?? "(unnamed)"))}");
        }
    }

    private static void ReadValidation(JsonObject? validation, KubeObject policy, Inputs inputs, Candidate candidate)
    {
        if (validation is null)
        {
            candidate.SpecErrors.Add("spec.validation: missing; set validation.hostname and validation.caCertificateRefs (or wellKnownCACertificates: System)");
            return;
        }

        var hostname = KubeObject.AsString(validation["hostname"]);
        if (!Names.IsPreciseHostname(hostname))
        {
            candidate.SpecErrors.Add(hostname is null
                ? "spec.validation.hostname: missing; set it to the DNS name in the backend certificate, e.g. www.example.com"
                : $"spec.validation.hostname: \"{hostname}\" is not a valid hostname; use a lower-case DNS name without wildcard or IP");
        }

        candidate.Hostname = hostname;
        ReadSubjectAltNames(validation["subjectAltNames"] as JsonArray, candidate);

        var refs = validation["caCertificateRefs"] as JsonArray ?? [];
        var wellKnown = KubeObject.AsString(validation["wellKnownCACertificates"]);
        if (refs.Count > 0 && wellKnown is not null)
        {
            candidate.SpecErrors.Add("spec.validation: must not contain both caCertificateRefs and wellKnownCACertificates; keep one");
        }
        else if (refs.Count == 0 && wellKnown is null)
        {
            candidate.SpecErrors.Add("spec.validation: must specify either caCertificateRefs or wellKnownCACertificates");
        }

        if (refs.Count > 8)
        {
            candidate.SpecErrors.Add($"spec.validation.caCertificateRefs: {refs.Count} entries; at most 8 are allowed");
        }

        if (wellKnown is not null)
        {
            if (wellKnown == "System")
            {
                candidate.WellKnown = wellKnown;
            }
            else
            {
                candidate.SpecErrors.Add($"spec.validation.wellKnownCACertificates: \"{wellKnown}\" is not supported; the only supported value is \"System\"");
            }
        }

        for (var i = 0; i < refs.Count; i++)
        {
            ResolveCaRef(refs[i] as JsonObject, $"spec.validation.caCertificateRefs[{i}]", policy, inputs, candidate);
        }
    }

    private static void ReadSubjectAltNames(JsonArray? sans, Candidate candidate)
    {
        if (sans is null)
        {
            return;
        }

        if (sans.Count > 5)
        {
            candidate.SpecErrors.Add($"spec.validation.subjectAltNames: {sans.Count} entries; at most 5 are allowed");
        }

        for (var i = 0; i < sans.Count; i++)
        {
            var field = $"spec.validation.subjectAltNames[{i}]";
            var type = KubeObject.AsString(sans[i]?["type"]);
            var hostname = KubeObject.AsString(sans[i]?["hostname"]);
            var uri = KubeObject.AsString(sans[i]?["uri"]);
            var before = candidate.SpecErrors.Count;
            switch (type)
            {
                case SubjectAltName.HostnameType:
                    if (!Names.IsHostname(hostname))
                    {
                        candidate.SpecErrors.Add($"{field}.hostname: \"{hostname}\" is not a hostname; type Hostname requires hostname, e.g. abc.example.com");
                    }

                    if (!string.IsNullOrEmpty(uri))
                    {
                        candidate.SpecErrors.Add($"{field}.uri: must be empty for type Hostname");
                    }

                    break;
                case SubjectAltName.UriType:
                    if (!Names.IsAbsoluteUri(uri))
                    {
                        candidate.SpecErrors.Add($"{field}.uri: \"{uri}\" is not an absolute URI; type URI requires uri, e.g. spiffe://abc.example.com/test-identity");
                    }

                    if (!string.IsNullOrEmpty(hostname))
                    {
                        candidate.SpecErrors.Add($"{field}.hostname: must be empty for type URI");
                    }

                    break;
                default:
                    candidate.SpecErrors.Add($"{field}.type: \"{type}\" is not supported; use Hostname or URI");
                    break;
            }

            if (candidate.SpecErrors.Count == before)
            {
                candidate.Sans.Add(type == SubjectAltName.UriType
                    ? new SubjectAltName { Type = type, Uri = uri }
                    : new SubjectAltName { Type = type, Hostname = hostname });
            }
        }
    }

    private static void ResolveCaRef(JsonObject? reference, string field, KubeObject policy, Inputs inputs, Candidate candidate)
    {
        var group = KubeObject.AsString(reference?["group"]) ?? string.Empty;
        var kind = KubeObject.AsString(reference?["kind"]);
        var name = KubeObject.AsString(reference?["name"]);
        var source = $"{kind} {policy.Namespace}/{name}";
        void Invalid(string reason, string message)
        {
            candidate.InvalidRefs.Add(new InvalidCaRef { Source = source, Reason = reason, Message = $"{field}: {message}" });
            candidate.AnyInvalidKind |= reason == PolicyReasons.InvalidKind;
        }

        if (group is not ("" or "core") || kind is not ("ConfigMap" or "Secret"))
        {
            Invalid(PolicyReasons.InvalidKind, $"kind {(group.Length == 0 ? "" : group + "/")}{kind} is not supported; reference a ConfigMap or a Secret (group \"\") holding {CaKey}");
            return;
        }

        var objects = kind == "ConfigMap" ? inputs.ConfigMaps : inputs.Secrets;
        if (name is null || !objects.TryGetValue((policy.Namespace, name), out var holder))
        {
            Invalid(PolicyReasons.InvalidCACertificateRef, $"{source} not found; create it in the policy's namespace with the CA in key {CaKey}" +
                                                            $" (kubectl create {kind!.ToLowerInvariant()} {(kind == "Secret" ? "generic " : "")}{name} -n {policy.Namespace} --from-file={CaKey}=ca.pem)");
            return;
        }

        var pem = ReadKey(holder, CaKey, out var readError);
        if (pem is null)
        {
            Invalid(PolicyReasons.InvalidCACertificateRef, readError!);
            return;
        }

        if (CaBundle.Parse(pem, out var problem) is not { } certificates)
        {
            Invalid(PolicyReasons.InvalidCACertificateRef, $"{source} key {CaKey} {problem}");
            return;
        }

        foreach (var expired in CaBundle.Expired(certificates, DateTimeOffset.UtcNow))
        {
            candidate.Warnings.Add($"{field}: CA \"{expired.Subject}\" in {source} expired on {expired.NotAfter.ToUniversalTime():u}; backends it signed will fail verification");
        }

        // Only the certificates go to the sidecar: whatever else the object held is not copied.
        var normalized = string.Concat(certificates.Select(c => c.ExportCertificatePem() + "\n"));
        // Named by content: policies across namespaces usually share a CA, and one file serves them all
        // (the ConfigMap's 1 MiB holds 5,000 targets only so); the target's source says where it came from.
        var fileName = $"ca.{Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(normalized)))[..16]}.crt";
        candidate.Cas.Add(new ResolvedCa(fileName, source, normalized));
    }

    private static string? ReadKey(KubeObject holder, string key, out string? error)
    {
        error = null;
        if (holder["data"] is JsonObject data && data[key] is { } value)
        {
            var text = KubeObject.AsString(value) ?? string.Empty;
            if (holder.Kind == "Secret")
            {
                try
                {
                    return Encoding.UTF8.GetString(Convert.FromBase64String(text));
                }
                catch (FormatException)
                {
                    error = $"{holder.Display} data.{key} is not base64 (Secret data is base64-encoded; use stringData for plain text)";
                    return null;
                }
            }

            return text;
        }

        if (holder["stringData"] is JsonObject stringData && stringData[key] is { } plain)
        {
            return KubeObject.AsString(plain);
        }

        if (holder["binaryData"] is JsonObject binary && binary[key] is { } encoded)
        {
            try
            {
                return Encoding.UTF8.GetString(Convert.FromBase64String(KubeObject.AsString(encoded) ?? string.Empty));
            }
            catch (FormatException)
            {
                error = $"{holder.Display} binaryData.{key} is not base64";
                return null;
            }
        }

        error = $"{holder.Display} has no key {key}; add the CA certificate under {key} (kubectl create {holder.Kind!.ToLowerInvariant()} ... --from-file={key}=ca.pem)";
        return null;
    }

    private static void ReadOptions(JsonObject? options, Candidate candidate)
    {
        if (options is null)
        {
            return;
        }

        if (options.Count > 16)
        {
            candidate.SpecErrors.Add($"spec.options: {options.Count} entries; at most 16 are allowed");
        }

        foreach (var (key, value) in options)
        {
            var text = KubeObject.AsString(value) ?? string.Empty;
            if (key.StartsWith(TlsSettings.Domain, StringComparison.Ordinal))
            {
                candidate.Options[key] = text;
            }
            else if (!Names.IsDomainPrefixedKey(key))
            {
                candidate.SpecErrors.Add($"spec.options: key \"{key}\" has no domain prefix; option keys must look like example.com/name (ours: {string.Join(", ", TlsSettings.KnownKeys)})");
            }
            else
            {
                candidate.Warnings.Add($"spec.options: \"{key}\" belongs to another implementation and is ignored here (ours: {string.Join(", ", TlsSettings.KnownKeys)})");
            }
        }

        var errors = new List<string>();
        TlsSettings.Parse(candidate.Options, errors);
        candidate.SpecErrors.AddRange(errors.Select(e => "spec.options: " + e));
    }

    private static RenderResult Assemble(List<Candidate> candidates, List<string> notes)
    {
        // Oldest first, then namespace/name: the order in which claims are honoured (Gateway API conflict rules).
        var ordered = candidates
            .OrderBy(c => c.Policy.CreationTimestamp ?? DateTimeOffset.MinValue)
            .ThenBy(c => c.Policy.Namespace, StringComparer.Ordinal)
            .ThenBy(c => c.Policy.Name, StringComparer.Ordinal)
            .ToList();

        var winners = new Dictionary<(string, string, int), (Candidate Owner, Claim Claim)>();
        var valid = ordered.Where(c => c.SpecErrors.Count == 0).ToList();
        foreach (var bySection in new[] { true, false })
        {
            foreach (var candidate in valid)
            {
                foreach (var claim in candidate.Claims.Where(c => c.BySectionName == bySection))
                {
                    var key = (claim.ServiceNamespace, claim.ServiceName, claim.Port);
                    if (winners.TryGetValue(key, out var existing))
                    {
                        // A sectionName policy beats a whole-Service policy on its port; that is not a conflict.
                        if (existing.Claim.BySectionName == claim.BySectionName)
                        {
                            candidate.ConflictsWith.Add($"{existing.Owner.Policy.Namespace}/{existing.Owner.Policy.Name}");
                        }

                        continue;
                    }

                    winners[key] = (candidate, claim);
                }
            }
        }

        // Invalid policies never win, but a port only they claim must not fall back to plaintext: fail closed.
        foreach (var candidate in ordered.Where(c => c.SpecErrors.Count > 0))
        {
            foreach (var claim in candidate.Claims)
            {
                winners.TryAdd((claim.ServiceNamespace, claim.ServiceName, claim.Port), (candidate, claim));
            }
        }

        var files = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var targets = new List<TargetConfig>();
        foreach (var ((ns, name, port), (owner, claim)) in winners.OrderBy(w => w.Key))
        {
            owner.Applied.Add($"{ns}/{name}:{port}");
            targets.Add(BuildTarget(owner, claim, files));
        }

        var config = new SidecarConfig { Targets = targets };
        var yaml = YamlDocuments.ToYaml(JsonSerializer.SerializeToNode(config, SidecarConfigJsonContext.Default.SidecarConfig)!);
        files[SidecarConfig.FileName] = "# Rendered by backendtls render; format: docs/config-format.md\n" + yaml;
        var results = ordered.Select(Decide).ToList();
        return new RenderResult(config, files, results, notes);
    }

    private static TargetConfig BuildTarget(Candidate owner, Claim claim, SortedDictionary<string, string> files)
    {
        var invalid = owner.InvalidRefs.ToList();
        var cas = new List<CaCertificateFile>();
        string? wellKnown = null;
        if (owner.SpecErrors.Count > 0)
        {
            invalid.Add(new InvalidCaRef
            {
                Source = $"BackendTLSPolicy {owner.Policy.Namespace}/{owner.Policy.Name}",
                Reason = PolicyReasons.Invalid,
                Message = "the policy is invalid: " + string.Join("; ", owner.SpecErrors),
            });
        }
        else
        {
            foreach (var ca in owner.Cas)
            {
                files[ca.FileName] = ca.Pem;
                cas.Add(new CaCertificateFile { File = ca.FileName, Source = ca.Source });
            }

            wellKnown = owner.WellKnown;
        }

        return new TargetConfig
        {
            Service = new ServiceRef { Namespace = claim.ServiceNamespace, Name = claim.ServiceName, Port = claim.Port, PortName = claim.PortName },
            Policy = new ObjectRef { Namespace = owner.Policy.Namespace, Name = owner.Policy.Name },
            // A fail-closed target still needs a syntactically valid hostname for the sidecar to load it.
            Hostname = Names.IsPreciseHostname(owner.Hostname) ? owner.Hostname : "invalid.invalid",
            SubjectAltNames = owner.Sans.Count > 0 && owner.SpecErrors.Count == 0 ? owner.Sans : null,
            CaCertificates = cas.Count > 0 ? cas : null,
            WellKnownCACertificates = wellKnown,
            InvalidCaCertificateRefs = invalid.Count > 0 ? invalid : null,
            Options = owner.Options.Count > 0 && owner.SpecErrors.Count == 0 ? owner.Options : null,
        };
    }

    private static PolicyResult Decide(Candidate c)
    {
        var policyRef = new ObjectRef { Namespace = c.Policy.Namespace, Name = c.Policy.Name };
        var resolved = c.InvalidRefs.Count == 0
            ? new PolicyCondition("ResolvedRefs", true, PolicyReasons.ResolvedRefs, "All CA certificate references are resolved")
            : new PolicyCondition("ResolvedRefs", false,
                c.AnyInvalidKind ? PolicyReasons.InvalidKind : PolicyReasons.InvalidCACertificateRef,
                string.Join("; ", c.InvalidRefs.Select(r => r.Message)));

        PolicyCondition accepted;
        if (c.SpecErrors.Count > 0)
        {
            accepted = new PolicyCondition("Accepted", false, PolicyReasons.Invalid, string.Join("; ", c.SpecErrors));
        }
        else if (c.Claims.Count == 0)
        {
            accepted = new PolicyCondition("Accepted", false, PolicyReasons.TargetNotFound, string.Join("; ", c.TargetErrors));
        }
        else if (c.ConflictsWith.Count > 0)
        {
            accepted = new PolicyCondition("Accepted", false, PolicyReasons.Conflicted,
                $"conflicts with older BackendTLSPolicy {string.Join(", ", c.ConflictsWith.Distinct())} on the same Service port; the older policy (then namespace/name order) applies");
        }
        else if (c.NoValidCa)
        {
            accepted = new PolicyCondition("Accepted", false, PolicyReasons.NoValidCACertificate,
                "no valid CA certificate: requests to the target are refused (503) until one is fixed: " + resolved.Message);
        }
        else
        {
            accepted = new PolicyCondition("Accepted", true, PolicyReasons.Accepted, "Policy is accepted");
        }

        var warnings = c.Warnings.Concat(c.Claims.Count > 0 ? c.TargetErrors : []).ToList();
        return new PolicyResult(policyRef, c.Policy.Generation, accepted, resolved, c.Applied, warnings);
    }
}
