using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using BackendTls.Policy.Validation;
using BackendTls.Sidecar.Admin;
using BackendTls.Sidecar.Configuration;
using BackendTls.Sidecar.Logging;
using BackendTls.Sidecar.Tls;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>
/// The data path. For each request from the gateway:
/// (1) pick the target from the current snapshot, or answer 404/503 without forwarding;
/// (2) build the outgoing request: same method, path and headers, minus hop-by-hop ones, plus X-Forwarded-*;
/// (3) send it over the target's pool of verified TLS connections (see <see cref="UpstreamConnector"/>);
/// (4) stream the response back, or answer 502 with the failure reason if no response came.
/// Bodies are streamed both ways, never buffered whole.
/// </summary>
internal sealed class ProxyHandler(IProxySnapshotSource snapshots, SidecarMetrics metrics, ILogger<ProxyHandler> logger)
{
    public const string ErrorHeader = "x-backendtls-error";

    // Error bodies are read by people (curl) as much as by tools: keep quotes and <> unescaped.
    private static readonly JsonWriterOptions ErrorJsonOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private const int CopyBufferSize = 64 * 1024;
    private static readonly string[] StatusText = Enumerable.Range(0, 600).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    public async Task HandleAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();

        // (1) Target
        if (snapshots.Current is null)
        {
            await WriteErrorAsync(context, started, StatusCodes.Status503ServiceUnavailable, SidecarMetrics.UnknownTarget, FailureReason.NotReady,
                "the sidecar has no valid config yet; see /healthz/ready on the admin port");
            return;
        }

        UpstreamTarget? target = null;
        for (var attempt = 0; target is null && attempt < 3; attempt++)
        {
            var route = snapshots.Current.Router.Resolve(context.Request.Host.Value ?? string.Empty, context.Connection.LocalPort);
            if (route.Target is null)
            {
                Log.NoTarget(logger, context.Request.Host.Value ?? "(no host)", context.Request.Path.Value ?? "/");
                await WriteErrorAsync(context, started, StatusCodes.Status404NotFound, SidecarMetrics.UnknownTarget, FailureReason.NoPolicy, route.Problem!);
                return;
            }

            // A reload may retire the target between lookup and acquire; then look again.
            target = route.Target.TryAcquire() ? route.Target : null;
        }

        if (target is null)
        {
            await WriteErrorAsync(context, started, StatusCodes.Status503ServiceUnavailable, SidecarMetrics.UnknownTarget, FailureReason.NotReady, "config is being reloaded; retry");
            return;
        }

        using var lease = target.LeaseAcquired();
        if (target.IsFailClosed)
        {
            Log.FailClosedRequest(logger, target.Id, target.Config.FailClosedMessage);
            await WriteErrorAsync(context, started, StatusCodes.Status503ServiceUnavailable, target.Id, FailureReason.InvalidPolicy,
                "fail-closed: " + target.Config.FailClosedMessage);
            return;
        }

        // (2) + (3) Request out, response headers back
        HttpResponseMessage response;
        try
        {
            response = await SendAsync(context, target);
        }
        catch (Exception e) when ((FindFailure(e) ?? HandshakeFailure(e, target, context)) is { } failure)
        {
            await WriteErrorAsync(context, started, StatusCodes.Status502BadGateway, target.Id, failure.Reason, failure.Detail);
            return;
        }
        catch (HttpRequestException e) when (!context.RequestAborted.IsCancellationRequested)
        {
            var reason = e.HttpRequestError == HttpRequestError.ResponseEnded ? FailureReason.UpstreamReset : FailureReason.UpstreamProtocolError;
            await WriteErrorAsync(context, started, StatusCodes.Status502BadGateway, target.Id, reason, $"the backend did not send a valid response: {e.Message}");
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            Count(target.Id, StatusCodes.Status499ClientClosedRequest, started, target);
            return;
        }
        catch (OperationCanceledException)
        {
            await WriteErrorAsync(context, started, StatusCodes.Status504GatewayTimeout, target.Id, FailureReason.UpstreamTimeout,
                $"the backend sent no response headers within {target.ResponseTimeout.TotalSeconds:0.###}s (--response-timeout)");
            return;
        }

        // (4) Response back
        using (response)
        {
            await CopyResponseAsync(context, response, target);
        }

        Count(target.Id, context.Response.StatusCode, started, target);
    }

    private static async Task<HttpResponseMessage> SendAsync(HttpContext context, UpstreamTarget target)
    {
        try
        {
            return await SendOnceAsync(context, target);
        }
        catch (HttpRequestException e) when (e.InnerException is UpstreamProtocolSwitchException)
        {
            // First contact found h2: nothing was sent yet, so the same request goes again over h2.
            return await SendOnceAsync(context, target);
        }
    }

    private static async Task<HttpResponseMessage> SendOnceAsync(HttpContext context, UpstreamTarget target)
    {
        // Over HTTP/2 the handler derives the SNI from the authority, so h2 is used only when the gateway's
        // Host is the policy hostname (or the policy allows nothing else); otherwise HTTP/1.1 keeps both the
        // SNI and the gateway's Host exact.
        var http2 = target.UseHttp2 && (SameHost(context.Request.Host.Host, target.Sni) || target.Config.Tls.Alpn == AlpnMode.Http2Only);
        var invoker = http2 ? target.Http2Invoker! : target.Http11Invoker!;
        // Covers the wait for response headers only (the body is read with RequestAborted).
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        timeout.CancelAfter(target.ResponseTimeout);
        return await invoker.SendAsync(CreateRequest(context, target, http2), timeout.Token);
    }

    private static HttpRequestMessage CreateRequest(HttpContext context, UpstreamTarget target, bool http2)
    {
        var request = context.Request;
        var message = new HttpRequestMessage(
            HttpMethod.Parse(request.Method), // cached instances for the standard methods
            (http2 ? target.Http2BaseUri : target.BaseUri) + request.Path.Value + request.QueryString.Value)
        {
            Version = http2 ? HttpVersion.Version20 : HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };

        if (context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true)
        {
            message.Content = new StreamContent(request.Body, CopyBufferSize);
        }

        var connectionTokens = request.Headers.Connection;
        foreach (var (name, values) in request.Headers)
        {
            if (HeaderRules.IsHopByHop(name) || IsListedInConnection(connectionTokens, name)
                || string.Equals(name, HeaderNames.Host, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            if (HeaderRules.IsContentHeader(name))
            {
                message.Content?.Headers.TryAddWithoutValidation(name, (IEnumerable<string>)values);
                continue;
            }

            message.Headers.TryAddWithoutValidation(name, (IEnumerable<string>)values);
        }

        // The backend sees the Host the gateway sent; the SNI is the policy's hostname (set by the connector).
        // (h2 is chosen only when they agree, see SendOnceAsync; an h2-only policy keeps the hostname.)
        if (!http2 || SameHost(request.Host.Host, target.Sni))
        {
            message.Headers.Host = request.Host.Value;
        }
        var remote = context.Connection.RemoteIpAddress?.ToString();
        if (remote is not null)
        {
            message.Headers.Remove("X-Forwarded-For");
            message.Headers.TryAddWithoutValidation("X-Forwarded-For",
                request.Headers.TryGetValue("X-Forwarded-For", out var prior) ? $"{prior}, {remote}" : remote);
        }

        if (!request.Headers.ContainsKey("X-Forwarded-Proto"))
        {
            message.Headers.TryAddWithoutValidation("X-Forwarded-Proto", request.Scheme);
        }

        return message;
    }

    private static bool SameHost(string host, string hostname) =>
        string.Equals(host.TrimEnd('.'), hostname, StringComparison.OrdinalIgnoreCase);

    private static UpstreamTlsException? HandshakeFailure(Exception e, UpstreamTarget target, HttpContext context) =>
        e is HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError }
            ? target.Connector!.ClassifyHandshakeError(e, context.RequestAborted.IsCancellationRequested)
            : null;

    private static bool IsListedInConnection(StringValues connection, string name)
    {
        if (connection.Count == 0)
        {
            return false;
        }

        foreach (var value in connection)
        {
            foreach (var range in value.AsSpan().Split(','))
            {
                if (value.AsSpan()[range].Trim().Equals(name, StringComparison.OrdinalIgnoreCase))
                {
                    return true;
                }
            }
        }

        return false;
    }

    private async Task CopyResponseAsync(HttpContext context, HttpResponseMessage response, UpstreamTarget target)
    {
        context.Response.StatusCode = (int)response.StatusCode;
        var headers = context.Response.Headers;
        // NonValidated: copy the backend's header text as is, without parsing it into typed values.
        foreach (var (name, values) in response.Headers.NonValidated)
        {
            if (!HeaderRules.IsHopByHop(name))
            {
                headers[name] = ToStringValues(values);
            }
        }

        foreach (var (name, values) in response.Content.Headers.NonValidated)
        {
            headers[name] = ToStringValues(values);
        }

        var buffer = ArrayPool<byte>.Shared.Rent(CopyBufferSize);
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(context.RequestAborted);
            int read;
            while ((read = await body.ReadAsync(buffer, context.RequestAborted)) > 0)
            {
                await context.Response.Body.WriteAsync(buffer.AsMemory(0, read), context.RequestAborted);
            }
        }
        catch (Exception e) when (e is IOException or HttpRequestException or OperationCanceledException)
        {
            // Headers are gone already: the only honest signal left is to abort the client connection.
            Log.UpstreamResponseAborted(logger, target.Id, e.Message);
            context.Abort();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static StringValues ToStringValues(HeaderStringValues values) =>
        values.Count == 1 ? new StringValues(values.ToString()) : new StringValues(values.ToArray());

    private static UpstreamTlsException? FindFailure(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is UpstreamTlsException failure)
            {
                return failure;
            }
        }

        return null;
    }

    private void Count(string targetId, int status, long started, UpstreamTarget? target)
    {
        metrics.Requests.WithLabels(targetId, StatusText[status is >= 0 and < 600 ? status : 0]).Inc();
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        if (target is not null)
        {
            target.RequestDuration.Observe(seconds);
        }
        else
        {
            metrics.RequestDuration.WithLabels(targetId).Observe(seconds);
        }
    }

    /// <summary>An error the sidecar itself answers: reason in a header and a small JSON body.</summary>
    private async Task WriteErrorAsync(HttpContext context, long started, int status, string targetId, string reason, string detail)
    {
        context.Response.StatusCode = status;
        context.Response.Headers[ErrorHeader] = reason;
        context.Response.ContentType = "application/json; charset=utf-8";
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer, ErrorJsonOptions))
        {
            json.WriteStartObject();
            json.WriteString("error", reason);
            json.WriteString("target", targetId);
            json.WriteString("detail", detail);
            json.WriteEndObject();
        }

        buffer.Write("\n"u8);
        context.Response.ContentLength = buffer.WrittenCount;
        await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
        Count(targetId, status, started, null);
    }
}
