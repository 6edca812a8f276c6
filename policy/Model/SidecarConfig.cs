using System.Text.Json.Serialization;

namespace BackendTls.Policy.Model;

/// <summary>
/// The sidecar's configuration file (<c>backendtls.yaml</c>), version <c>backendtls.io/v1</c>.
/// One entry per (Service, port) that must be reached over verified TLS. Documented in docs/config-format.md
/// and docs/config.schema.json.
/// </summary>
public sealed record SidecarConfig
{
    public const string CurrentApiVersion = "backendtls.io/v1";
    public const string ConfigKind = "SidecarConfig";
    public const string FileName = "backendtls.yaml";

    [JsonPropertyName("apiVersion")]
    public string? ApiVersion { get; init; } = CurrentApiVersion;

    [JsonPropertyName("kind")]
    public string? Kind { get; init; } = ConfigKind;

    [JsonPropertyName("targets")]
    public IReadOnlyList<TargetConfig>? Targets { get; init; }
}

/// <summary>One backend Service port and how to verify it (BackendTLSPolicy semantics).</summary>
public sealed record TargetConfig
{
    [JsonPropertyName("service")]
    public ServiceRef? Service { get; init; }

    /// <summary>The BackendTLSPolicy this target came from; for logs and the status page only.</summary>
    [JsonPropertyName("policy")]
    public ObjectRef? Policy { get; init; }

    /// <summary>validation.hostname: the SNI, and the name checked unless <see cref="SubjectAltNames"/> is set.</summary>
    [JsonPropertyName("hostname")]
    public string? Hostname { get; init; }

    [JsonPropertyName("subjectAltNames")]
    public IReadOnlyList<SubjectAltName>? SubjectAltNames { get; init; }

    /// <summary>PEM bundles (file names in the config directory) that are the only trust anchors.</summary>
    [JsonPropertyName("caCertificates")]
    public IReadOnlyList<CaCertificateFile>? CaCertificates { get; init; }

    /// <summary>Only <c>System</c>: trust the system store instead of <see cref="CaCertificates"/>.</summary>
    [JsonPropertyName("wellKnownCACertificates")]
    public string? WellKnownCACertificates { get; init; }

    /// <summary>
    /// CA references of the policy that could not be used. With no usable CA at all the target is
    /// fail-closed: requests get 503 and these messages.
    /// </summary>
    [JsonPropertyName("invalidCaCertificateRefs")]
    public IReadOnlyList<InvalidCaRef>? InvalidCaCertificateRefs { get; init; }

    /// <summary>spec.options of the policy, only keys of the <c>backendtls.io/</c> domain.</summary>
    [JsonPropertyName("options")]
    public IReadOnlyDictionary<string, string>? Options { get; init; }

    /// <summary>Where to connect, <c>host:port</c>; default <c>{service}.{namespace}.svc.{clusterDomain}:{port}</c>.</summary>
    [JsonPropertyName("address")]
    public string? Address { get; init; }

    /// <summary>Optional dedicated loopback port: anything sent to it goes to this target.</summary>
    [JsonPropertyName("listenPort")]
    public int? ListenPort { get; init; }
}

public sealed record ServiceRef
{
    [JsonPropertyName("namespace")]
    public string? Namespace { get; init; }

    [JsonPropertyName("name")]
    public string? Name { get; init; }

    /// <summary>The Service port number (not the targetPort): the sidecar connects through the Service.</summary>
    [JsonPropertyName("port")]
    public int Port { get; init; }

    /// <summary>The port's name, when it has one (a policy's sectionName refers to it).</summary>
    [JsonPropertyName("portName")]
    public string? PortName { get; init; }
}

public sealed record ObjectRef
{
    [JsonPropertyName("namespace")]
    public string? Namespace { get; init; }

    [JsonPropertyName("name")]
    public string? Name { get; init; }

    public override string ToString() => $"{Namespace}/{Name}";
}

public sealed record SubjectAltName
{
    public const string HostnameType = "Hostname";
    public const string UriType = "URI";

    [JsonPropertyName("type")]
    public string? Type { get; init; }

    [JsonPropertyName("hostname")]
    public string? Hostname { get; init; }

    [JsonPropertyName("uri")]
    public string? Uri { get; init; }

    public override string ToString() => Type == UriType ? $"URI:{Uri}" : $"DNS:{Hostname}";
}

public sealed record CaCertificateFile
{
    /// <summary>File name inside the config directory (no directories: ConfigMap keys are flat).</summary>
    [JsonPropertyName("file")]
    public string? File { get; init; }

    /// <summary>Where it came from, e.g. <c>ConfigMap httpbin/httpbin-root-ca</c>; for messages.</summary>
    [JsonPropertyName("source")]
    public string? Source { get; init; }
}

public sealed record InvalidCaRef
{
    [JsonPropertyName("source")]
    public string? Source { get; init; }

    [JsonPropertyName("reason")]
    public string? Reason { get; init; }

    [JsonPropertyName("message")]
    public string? Message { get; init; }
}

/// <summary>Source-generated (AOT-safe) serialization of the config model.</summary>
[JsonSourceGenerationOptions(
    WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.AllowReadingFromString,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow)]
[JsonSerializable(typeof(SidecarConfig))]
public sealed partial class SidecarConfigJsonContext : JsonSerializerContext;
