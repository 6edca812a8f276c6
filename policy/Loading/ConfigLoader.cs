using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using BackendTls.Policy.Model;
using BackendTls.Policy.Validation;
using BackendTls.Policy.Yaml;

namespace BackendTls.Policy.Loading;

/// <summary>Outcome of reading a config directory: a usable config, or every problem found.</summary>
public sealed record LoadOutcome(LoadedConfig? Config, IReadOnlyList<string> Errors)
{
    public bool Succeeded => Config is not null;
}

/// <summary>
/// Reads, validates and compiles <c>backendtls.yaml</c> and the CA bundles it names. All problems are
/// collected (not only the first) and each names the target, the field and the fix.
/// </summary>
public sealed class ConfigLoader(string clusterDomain = ConfigLoader.DefaultClusterDomain, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public const string DefaultClusterDomain = "cluster.local";
    public const int MaxTargets = 10_000;

    public LoadOutcome Load(ConfigDirectory directory)
    {
        string folder;
        try
        {
            folder = directory.ResolveSnapshotFolder();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Fail($"{directory.Path}: cannot read the config directory ({e.GetType().Name}); check that it is mounted and readable");
        }

        var configPath = Path.Combine(folder, SidecarConfig.FileName);
        byte[] configBytes;
        try
        {
            // backendtls.yaml, or backendtls.yaml.gz where the controller had to compress it to fit a ConfigMap.
            configBytes = Encoding.UTF8.GetBytes(BoundedFile.ReadTextOrGzip(configPath, BoundedFile.MaxConfigFileBytes));
        }
        catch (FileReadException e) when (e.NotFound)
        {
            // The injected pod mounts the policy ConfigMap as optional: until a BackendTLSPolicy exists there is
            // no file. That is a valid, empty config (every request is answered 404), not an error.
            var warning = $"{Path.Combine(directory.Path, SidecarConfig.FileName)} does not exist: no policies yet, so no targets. " +
                          "Mount the policy ConfigMap there, or run `backendtls-sidecar render` to create one.";
            return new LoadOutcome(new LoadedConfig([], "empty", [warning], directory.Path), []);
        }
        catch (FileReadException e)
        {
            return Fail($"{Path.Combine(directory.Path, SidecarConfig.FileName)}: {e.Message}. " +
                        "Mount the policy ConfigMap there, or run `backendtls-sidecar render` to create one.");
        }

        SidecarConfig? config;
        try
        {
            config = Parse(Encoding.UTF8.GetString(configBytes), SidecarConfig.FileName);
        }
        catch (ConfigFormatException e)
        {
            return Fail(e.Message);
        }

        var errors = new List<string>();
        var warnings = new List<string>();
        var fingerprint = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        fingerprint.AppendData(configBytes);
        var targets = CompileTargets(config, folder, directory.Path, errors, warnings, fingerprint);
        if (errors.Count > 0)
        {
            return new LoadOutcome(null, errors);
        }

        var loaded = new LoadedConfig(
            targets,
            Convert.ToHexStringLower(fingerprint.GetHashAndReset())[..16],
            warnings,
            directory.Path);
        return new LoadOutcome(loaded, []);

        static LoadOutcome Fail(string error) => new(null, [error]);
    }

    /// <summary>Parses the config text (YAML or JSON) into the model, without semantic checks.</summary>
    /// <exception cref="ConfigFormatException">Not YAML, not one document, or fields of the wrong shape.</exception>
    public static SidecarConfig Parse(string text, string sourceName)
    {
        IReadOnlyList<System.Text.Json.Nodes.JsonNode> documents;
        try
        {
            documents = YamlDocuments.Parse(text, sourceName);
        }
        catch (YamlFormatException e)
        {
            throw new ConfigFormatException(e.Message);
        }

        if (documents.Count != 1)
        {
            throw new ConfigFormatException(
                $"{sourceName}: expected exactly one YAML document, found {documents.Count}");
        }

        try
        {
            return documents[0].Deserialize(SidecarConfigJsonContext.Default.SidecarConfig)
                   ?? throw new ConfigFormatException($"{sourceName}: the document is empty");
        }
        catch (JsonException e)
        {
            // The runtime's message is a resource key in the AOT build; its path (e.g. $.targets[0].service.port) is not.
            throw new ConfigFormatException($"{sourceName}: {(e.Path is { Length: > 1 } path ? path[2..] : "the document")}: " +
                                            "an unknown field, or a value of the wrong kind (a list where one value belongs, or text where a number belongs); " +
                                            "see docs/config-format.md for the format");
        }
    }

    private List<LoadedTarget> CompileTargets(
        SidecarConfig config,
        string folder,
        string root,
        List<string> errors,
        List<string> warnings,
        IncrementalHash fingerprint)
    {
        var targets = new List<LoadedTarget>();
        if (config.ApiVersion != SidecarConfig.CurrentApiVersion || config.Kind != SidecarConfig.ConfigKind)
        {
            errors.Add($"{SidecarConfig.FileName}: apiVersion/kind is \"{config.ApiVersion}\"/\"{config.Kind}\"; " +
                       $"this sidecar reads apiVersion \"{SidecarConfig.CurrentApiVersion}\", kind \"{SidecarConfig.ConfigKind}\"");
            return targets;
        }

        var list = config.Targets ?? [];
        if (list.Count > MaxTargets)
        {
            errors.Add($"{SidecarConfig.FileName}: {list.Count} targets; at most {MaxTargets} are supported");
            return targets;
        }

        var seenIds = new Dictionary<string, int>(StringComparer.Ordinal);
        var seenPorts = new Dictionary<int, int>();
        var bundles = new Dictionary<string, ParsedBundle>(StringComparer.Ordinal);
        for (var i = 0; i < list.Count; i++)
        {
            var target = CompileTarget(list[i], i, folder, root, errors, warnings, bundles);
            if (target is null)
            {
                continue;
            }

            if (seenIds.TryGetValue(target.Id, out var first))
            {
                errors.Add($"targets[{i}] ({target.Id}): the same Service port is already targets[{first}]; " +
                           "keep one entry per Service port");
                continue;
            }

            seenIds[target.Id] = i;
            if (target.ListenPort is { } port)
            {
                if (seenPorts.TryGetValue(port, out var other))
                {
                    errors.Add($"targets[{i}] ({target.Id}): listenPort {port} is already used by targets[{other}]; " +
                               "give each target its own port");
                    continue;
                }

                seenPorts[port] = i;
            }

            fingerprint.AppendData(Encoding.UTF8.GetBytes(target.Fingerprint));
            targets.Add(target);
        }

        return targets;
    }

    private LoadedTarget? CompileTarget(TargetConfig target, int index, string folder, string root, List<string> errors, List<string> warnings,
        Dictionary<string, ParsedBundle> parsed)
    {
        var errorCount = errors.Count;
        var service = target.Service;
        var id = service is null ? $"targets[{index}]" : $"{service.Namespace}/{service.Name}:{service.Port}";
        var where = $"targets[{index}] ({id})";
        void Error(string field, string message) => errors.Add($"{where}: {field}: {message}");

        if (service is null)
        {
            Error("service", "missing; set service.namespace, service.name and service.port of the backend Service");
            return null;
        }

        if (!Names.IsDns1123Label(service.Namespace))
        {
            Error("service.namespace", $"\"{service.Namespace}\" is not a namespace name (lower-case RFC 1123 label)");
        }

        if (!Names.IsDns1123Subdomain(service.Name))
        {
            Error("service.name", $"\"{service.Name}\" is not a Service name (lower-case RFC 1123 name)");
        }

        if (service.Port is < 1 or > 65535)
        {
            Error("service.port", $"{service.Port} is not a port; use the Service port number (1-65535)");
        }

        if (service.PortName is not null && !Names.IsDns1123Label(service.PortName))
        {
            Error("service.portName", $"\"{service.PortName}\" is not a port name (RFC 1123 label)");
        }

        if (!Names.IsPreciseHostname(target.Hostname))
        {
            Error("hostname", target.Hostname is null
                ? "missing; set it to the name the backend's certificate is issued for (validation.hostname)"
                : $"\"{target.Hostname}\" is not a valid hostname; use a lower-case DNS name without wildcard or IP, e.g. www.example.com");
        }

        var sans = target.SubjectAltNames ?? [];
        ValidateSubjectAltNames(sans, Error);

        var caFiles = target.CaCertificates ?? [];
        var invalidRefs = target.InvalidCaCertificateRefs ?? [];
        var trust = TrustMode.PolicyCertificates;
        if (target.WellKnownCACertificates is { } wellKnown)
        {
            if (wellKnown != "System")
            {
                Error("wellKnownCACertificates", $"\"{wellKnown}\" is not supported; the only value is \"System\"");
            }

            if (caFiles.Count > 0)
            {
                Error("wellKnownCACertificates", "set together with caCertificates; use one or the other");
            }

            trust = TrustMode.System;
        }
        else if (caFiles.Count == 0)
        {
            trust = TrustMode.FailClosed;
            warnings.Add($"{where}: no CA certificate; requests to it are refused with 503 until the policy has a valid CA");
        }

        var anchors = new X509Certificate2Collection();
        var bundles = new List<CaBundleInfo>();
        var caHash = new StringBuilder();
        for (var i = 0; i < caFiles.Count; i++)
        {
            var bundle = LoadBundle(folder, root, caFiles[i], $"caCertificates[{i}]", anchors, Error, warnings, where, _time.GetUtcNow(), parsed);
            if (bundle is not null)
            {
                bundles.Add(bundle);
                caHash.AppendJoin(',', bundle.Certificates.Select(c => c.Sha256)).Append(';');
            }
        }

        var tlsErrors = new List<string>();
        var tls = TlsSettings.Parse(target.Options, tlsErrors);
        foreach (var tlsError in tlsErrors)
        {
            Error("options", tlsError);
        }

        var address = target.Address ?? $"{service.Name}.{service.Namespace}.svc.{clusterDomain}:{service.Port}";
        if (!IsHostPort(address))
        {
            Error("address", $"\"{address}\" is not host:port");
        }

        if (target.ListenPort is < 1 or > 65535)
        {
            Error("listenPort", $"{target.ListenPort} is not a port (1-65535)");
        }

        if (errors.Count > errorCount)
        {
            return null;
        }

        var fingerprintText = string.Join('|',
            id, target.Hostname, string.Join(',', sans), trust, caHash, tls, address, target.ListenPort);
        return new LoadedTarget
        {
            Id = id,
            Service = service,
            Policy = target.Policy,
            Hostname = target.Hostname!,
            SubjectAltNames = sans,
            Trust = trust,
            TrustAnchors = anchors,
            CaBundles = bundles,
            InvalidCaRefs = invalidRefs,
            Tls = tls,
            Address = address,
            ListenPort = target.ListenPort,
            Fingerprint = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(fingerprintText))),
        };
    }

    private static void ValidateSubjectAltNames(IReadOnlyList<SubjectAltName> sans, Action<string, string> error)
    {
        if (sans.Count > 5)
        {
            error("subjectAltNames", $"{sans.Count} entries; BackendTLSPolicy allows at most 5");
        }

        for (var i = 0; i < sans.Count; i++)
        {
            var san = sans[i];
            var field = $"subjectAltNames[{i}]";
            switch (san.Type)
            {
                case SubjectAltName.HostnameType:
                    if (!Names.IsHostname(san.Hostname))
                    {
                        error(field + ".hostname", $"\"{san.Hostname}\" is not a hostname; type Hostname needs e.g. abc.example.com or *.example.com");
                    }

                    if (san.Uri is not null)
                    {
                        error(field + ".uri", "set for type Hostname; remove it or use type URI");
                    }

                    break;
                case SubjectAltName.UriType:
                    if (!Names.IsAbsoluteUri(san.Uri))
                    {
                        error(field + ".uri", $"\"{san.Uri}\" is not an absolute URI, e.g. spiffe://cluster.local/ns/default/sa/app");
                    }

                    if (san.Hostname is not null)
                    {
                        error(field + ".hostname", "set for type URI; remove it or use type Hostname");
                    }

                    break;
                default:
                    error(field + ".type", $"\"{san.Type}\" is not a SAN type; use \"Hostname\" or \"URI\"");
                    break;
            }
        }
    }

    /// <summary>A CA file as read once per load: targets usually share one (the renderer names files by content).</summary>
    private sealed record ParsedBundle(X509Certificate2Collection? Certificates, string? Problem, IReadOnlyList<CertificateSummary> Summaries, IReadOnlyList<string> Notes)
    {
        public string? ReadError { get; init; }
    }

    private static CaBundleInfo? LoadBundle(
        string folder,
        string root,
        CaCertificateFile file,
        string field,
        X509Certificate2Collection anchors,
        Action<string, string> error,
        List<string> warnings,
        string where,
        DateTimeOffset now,
        Dictionary<string, ParsedBundle> parsed)
    {
        var source = file.Source is null ? string.Empty : $" (from {file.Source})";
        if (file.File is null || ConfigDirectory.SafeFilePath(folder, file.File) is not { } path)
        {
            error(field + ".file", $"\"{file.File}\" is not a file name in the config directory{source}");
            return null;
        }

        if (!parsed.TryGetValue(path, out var bundle))
        {
            parsed[path] = bundle = ReadBundle(path, root, file.File, now);
        }

        if (bundle.ReadError is not null)
        {
            error(field + ".file", $"cannot read \"{file.File}\"{source}: {bundle.ReadError}");
            return null;
        }

        if (bundle.Certificates is null)
        {
            error(field + ".file", $"\"{file.File}\"{source} {bundle.Problem}");
            return null;
        }

        foreach (var note in bundle.Notes)
        {
            warnings.Add($"{where}: {field}: {note}{source}");
        }

        anchors.AddRange(bundle.Certificates);
        return new CaBundleInfo(file.File, file.Source, bundle.Summaries);
    }

    private static ParsedBundle ReadBundle(string path, string root, string name, DateTimeOffset now)
    {
        if (!BoundedFile.StaysInside(path, root, out var resolved))
        {
            // kubelet's own links (name -> ..data/name -> ..2026_.../name) stay inside; anything else is refused.
            return new ParsedBundle(null, $"is a link to {resolved}, outside the config directory {root}; " +
                                          "refusing to read it (CA bundles come from the policy's ConfigMap or Secret)", [], []);
        }

        string pem;
        try
        {
            pem = BoundedFile.ReadText(path, BoundedFile.MaxConfigFileBytes);
        }
        catch (FileReadException e)
        {
            return new ParsedBundle(null, null, [], []) { ReadError = e.Message };
        }

        if (CaBundle.Parse(pem, out var problem) is not { } certificates)
        {
            return new ParsedBundle(null, problem, [], []);
        }

        var notes = CaBundle.Expired(certificates, now)
            .Select(expired => $"CA \"{expired.Subject}\" in {name} expired on {expired.NotAfter.ToUniversalTime():u}")
            .Concat(certificates
                .Where(c => c.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is { CertificateAuthority: false })
                .Select(c => $"\"{c.Subject}\" in {name} is not a CA certificate (basicConstraints CA:FALSE); it can only anchor itself"))
            .ToList();
        return new ParsedBundle(certificates, null, certificates.Select(CertificateSummary.From).ToList(), notes);
    }

    private static bool IsHostPort(string address)
    {
        var colon = address.LastIndexOf(':');
        return colon > 0
               && int.TryParse(address.AsSpan(colon + 1), out var port) && port is > 0 and <= 65535
               && Uri.CheckHostName(address[..colon].Trim('[', ']')) != UriHostNameType.Unknown;
    }
}

/// <summary>The config text is not well-formed for the model.</summary>
public sealed class ConfigFormatException(string message) : Exception(message);
