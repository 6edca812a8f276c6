namespace BackendTls.Tests.Shared;

/// <summary>Builds the Kubernetes manifests tests render: Services, CA holders and BackendTLSPolicies.</summary>
internal static class Manifests
{
    public static string Service(string name, string ns = "default", int port = 8443, string portName = "https") => $"""
        apiVersion: v1
        kind: Service
        metadata: {"{"}name: {name}, namespace: {ns}{"}"}
        spec:
          ports: [{"{"}name: {portName}, port: {port}, targetPort: 8443{"}"}]
        ---

        """;

    public static string CaConfigMap(string name, string pem, string ns = "default") => $"""
        apiVersion: v1
        kind: ConfigMap
        metadata: {"{"}name: {name}, namespace: {ns}{"}"}
        data:
          ca.crt: |
        {Indent(pem, 4)}
        ---

        """;

    public static string Policy(string name, string service, string hostname, string caRefs = "[{group: \"\", kind: ConfigMap, name: root-ca}]",
        string ns = "default", string? extraValidation = null, string? options = null, string apiVersion = "v1") => $"""
        apiVersion: gateway.networking.k8s.io/{apiVersion}
        kind: BackendTLSPolicy
        metadata: {"{"}name: {name}, namespace: {ns}{"}"}
        spec:
          targetRefs: [{"{"}group: "", kind: Service, name: {service}{"}"}]
          validation:
            caCertificateRefs: {caRefs}
            hostname: {hostname}
        {(extraValidation is null ? "" : Indent(extraValidation, 4))}
        {(options is null ? "" : "  options:\n" + Indent(options, 4))}
        ---

        """;

    public static string Indent(string text, int spaces) =>
        string.Join("\n", text.TrimEnd().Split('\n').Select(l => new string(' ', spaces) + l));
}
