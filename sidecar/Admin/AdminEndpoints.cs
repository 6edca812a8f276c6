using System.Buffers;
using System.Text.Json;
using BackendTls.Policy.Loading;
using BackendTls.Sidecar.Configuration;
using BackendTls.Sidecar.Destinations;
using BackendTls.Sidecar.Listeners;
using BackendTls.Sidecar.Telemetry;

namespace BackendTls.Sidecar.Admin;

/// <summary>
/// The admin listener: <c>/metrics</c> (Prometheus text), <c>/healthz/live</c>, <c>/healthz/ready</c>
/// (ready only with a valid config; the body says why not), and <c>/config</c>, the loaded policy per
/// target (certificate subjects and expiry, never key material). A switch on the path keeps this off
/// the routing middleware the data path doesn't need.
/// </summary>
internal sealed class AdminEndpoints(IProxySnapshotSource snapshots, SidecarMetrics metrics, IListenerStatus listeners, IIndexStatus index,
    BackendTls.Sidecar.Tls.ClientCertificates clientCertificates)
{
    public Task HandleAsync(HttpContext context)
    {
        if (!HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method))
        {
            context.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            return Task.CompletedTask;
        }

        return context.Request.Path.Value switch
        {
            "/metrics" => WriteMetricsAsync(context),
            "/healthz/live" => WriteTextAsync(context, StatusCodes.Status200OK, "ok\n"),
            "/healthz/ready" => WriteReadyAsync(context),
            "/config" => WriteJsonAsync(context, StatusCodes.Status200OK, WriteConfig),
            "/" => WriteTextAsync(context, StatusCodes.Status200OK, "backendtls sidecar admin: /metrics /healthz/live /healthz/ready /config\n"),
            _ => WriteTextAsync(context, StatusCodes.Status404NotFound, "not found; try /metrics /healthz/live /healthz/ready /config\n"),
        };
    }

    private async Task WriteMetricsAsync(HttpContext context)
    {
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await metrics.Registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted);
    }

    private Task WriteReadyAsync(HttpContext context)
    {
        var bound = listeners.Bound;
        var ready = snapshots.Current is not null && BackendTls.Sidecar.Tls.TrustStoreWarmup.Started.IsCompleted && bound.Count > 0 && index.SettledForReadiness;
        return WriteJsonAsync(context, ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable, json =>
        {
            json.WriteBoolean("ready", ready);
            json.WriteBoolean("trustStoreLoaded", BackendTls.Sidecar.Tls.TrustStoreWarmup.Started.IsCompleted);
            json.WriteStartArray("listening");
            foreach (var address in bound)
            {
                json.WriteStringValue(address);
            }

            json.WriteEndArray();
            if (index is not NoIndex)
            {
                json.WriteStartObject("destinationIndex");
                json.WriteBoolean("watched", index.Watched);
                json.WriteString("problem", index.Problem);
                json.WriteEndObject();
            }

            if (clientCertificates.Directory is not null)
            {
                // Shown, not a readiness condition: without it requests fail closed with the reason, and the
                // gateway's other traffic (and the pod) stay up.
                json.WriteStartObject("clientCertificate");
                json.WriteString("directory", clientCertificates.Directory);
                json.WriteString("subject", clientCertificates.Current?.Subject);
                json.WriteString("notAfter", clientCertificates.Current?.NotAfter.ToString("u", System.Globalization.CultureInfo.InvariantCulture));
                json.WriteString("problem", clientCertificates.Problem ?? clientCertificates.FailClosedReason);
                json.WriteEndObject();
            }

            if (listeners.Problems.Count > 0)
            {
                // A reload asked for a listenPort that cannot be bound: still ready for every other target.
                json.WriteStartObject("listenPortProblems");
                foreach (var (port, problem) in listeners.Problems)
                {
                    json.WriteString(port.ToString(System.Globalization.CultureInfo.InvariantCulture), problem);
                }

                json.WriteEndObject();
            }
            if (snapshots.Current is { } current)
            {
                json.WriteStartObject("config");
                json.WriteString("fingerprint", current.Config.Fingerprint);
                json.WriteString("loadedAt", current.LoadedAt);
                json.WriteNumber("targets", current.Targets.Count);
                json.WriteEndObject();
            }

            WriteLastAttempt(json);
        });
    }

    private void WriteLastAttempt(Utf8JsonWriter json)
    {
        if (snapshots.LastAttempt is not { } attempt)
        {
            return;
        }

        json.WriteStartObject("lastLoad");
        json.WriteString("at", attempt.At);
        json.WriteBoolean("succeeded", attempt.Succeeded);
        json.WriteStartArray("errors");
        foreach (var error in attempt.Errors)
        {
            json.WriteStringValue(error);
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }

    private void WriteConfig(Utf8JsonWriter json)
    {
        var current = snapshots.Current;
        json.WriteString("fingerprint", current?.Config.Fingerprint);
        json.WriteString("source", current?.Config.SourcePath);
        WriteLastAttempt(json);
        json.WriteStartArray("targets");
        foreach (var target in current?.Targets ?? [])
        {
            var config = target.Config;
            json.WriteStartObject();
            json.WriteString("target", target.Id);
            json.WriteString("policy", config.Policy?.ToString());
            json.WriteString("state", target.IsFailClosed ? "fail_closed" : "verifying");
            json.WriteString("sni", config.Hostname);
            json.WriteString("address", config.Address);
            json.WriteString("verify", config.SubjectAltNames.Count > 0 ? "subjectAltNames" : "hostname");
            json.WriteStartArray("subjectAltNames");
            foreach (var san in config.SubjectAltNames)
            {
                json.WriteStringValue(san.ToString());
            }

            json.WriteEndArray();
            json.WriteString("trust", config.Trust switch
            {
                TrustMode.System => "system",
                TrustMode.FailClosed => "none",
                _ => "policy-ca",
            });
            json.WriteStartArray("caBundles");
            foreach (var bundle in config.CaBundles)
            {
                json.WriteStartObject();
                json.WriteString("file", bundle.File);
                json.WriteString("source", bundle.Source);
                json.WriteStartArray("certificates");
                foreach (var certificate in bundle.Certificates)
                {
                    json.WriteStartObject();
                    json.WriteString("subject", certificate.Subject);
                    json.WriteString("issuer", certificate.Issuer);
                    json.WriteString("notBefore", certificate.NotBefore);
                    json.WriteString("notAfter", certificate.NotAfter);
                    json.WriteString("sha256", certificate.Sha256);
                    json.WriteEndObject();
                }

                json.WriteEndArray();
                json.WriteEndObject();
            }

            json.WriteEndArray();
            if (target.IsFailClosed)
            {
                json.WriteString("failClosedReason", config.FailClosedMessage);
            }

            json.WriteString("minTlsVersion", config.Tls.MinVersionText);
            json.WriteString("maxTlsVersion", config.Tls.MaxVersionText);
            json.WriteString("alpn", config.Tls.AlpnText);
            json.WriteString("tls12CipherSuites", config.Tls.CipherSuitesText);
            if (config.ListenPort is { } port)
            {
                json.WriteNumber("listenPort", port);
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
    }

    private static async Task WriteJsonAsync(HttpContext context, int status, Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            body(json);
            json.WriteEndObject();
        }

        buffer.Write("\n"u8);
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.ContentLength = buffer.WrittenCount;
        await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
    }

    private static Task WriteTextAsync(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(text, context.RequestAborted);
    }
}
