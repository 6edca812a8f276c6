using System.Buffers;
using System.Diagnostics;
using System.Net;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Http1;
using BackendTls.Sidecar.Routing;
using BackendTls.Sidecar.Telemetry;
using BackendTls.Sidecar.Upstreams;
using Microsoft.AspNetCore.Http.Features;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>
/// One HTTP/2 stream from the gateway's h2c connection (gRPC, or any h2c client), top to bottom: (1) the
/// target, by :authority on the explicit listener or by the original destination of a captured connection;
/// (2) the request to the backend over verified TLS with ALPN h2 (the target's HTTP/2 client), headers as
/// received but hop-by-hop, the body streamed as it arrives; (3) the response: status, headers, the body
/// flushed per read (server streaming), then its trailers (grpc-status, grpc-message). --response-timeout
/// covers only the wait for response headers, so a long stream is not cut once it has begun; gRPC deadlines
/// (grpc-timeout) travel as headers and are the backend's to enforce. (4) A failure before the response
/// is answered once: to a gRPC client as grpc-status UNAVAILABLE with the reason in grpc-message (and the
/// x-backendtls-error header), to others as the usual status and JSON body.
/// </summary>
internal sealed class H2cLane(ProxyContext context)
{
    public async Task HandleAsync(HttpContext http)
    {
        var connection = http.Features.Get<H2cConnectionFeature>()!;
        var started = Stopwatch.GetTimestamp();
        var grpc = http.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

        // (1)
        var (target, refusal) = Resolve(http, connection);
        if (target is null)
        {
            context.UnknownTarget.Record(refusal!.Status, Stopwatch.GetElapsedTime(started));
            await RefuseAsync(http, grpc, SidecarMetrics.UnknownTarget, refusal);
            return;
        }

        try
        {
            var status = await ForwardAsync(http, connection, target, grpc);
            target.Requests.Record(status, Stopwatch.GetElapsedTime(started));
        }
        finally
        {
            target.Release();
        }
    }

    private (UpstreamTarget? Target, ProxyFailure? Refusal) Resolve(HttpContext http, H2cConnectionFeature connection)
    {
        if (context.Snapshots.Current is not { } snapshot)
        {
            return (null, new ProxyFailure(503, FailureReason.NotReady, "the sidecar has no valid config yet; see /healthz/ready on the admin port"));
        }

        var authority = http.Request.Host.Value ?? string.Empty;
        UpstreamTarget? chosen;
        if (connection.OriginalDestination is { } destination)
        {
            var route = CaptureEntry.Route(context, destination);
            chosen = route.Kind switch
            {
                DestinationKind.Target => route.Target,
                DestinationKind.Ambiguous => snapshot.Router.ChooseByHost(authority, route.Candidates),
                _ => null,
            };
            if (chosen is null)
            {
                return (null, new ProxyFailure(502, route.Kind == DestinationKind.Ambiguous ? FailureReason.AmbiguousDestination : FailureReason.UnknownDestination,
                    $"{destination} is not (or no longer) the endpoint of exactly one policy target, and the :authority \"{authority}\" names none"));
            }
        }
        else
        {
            var route = snapshot.Router.Resolve(authority, connection.LocalPort);
            if (route.Target is null)
            {
                Log.NoTarget(context.Logger, authority, http.Request.Path.Value ?? "/");
                return (null, new ProxyFailure(404, FailureReason.NoPolicy, route.Problem!));
            }

            chosen = route.Target;
        }

        return chosen.TryAcquire() ? (chosen, null) : (null, new ProxyFailure(503, FailureReason.NotReady, "config is being reloaded; retry"));
    }

    private async Task<int> ForwardAsync(HttpContext http, H2cConnectionFeature connection, UpstreamTarget target, bool grpc)
    {
        if (target.IsFailClosed)
        {
            Log.FailClosedRequest(context.Logger, target.Id, target.Config.FailClosedMessage);
            return await RefuseAsync(http, grpc, target.Id, new ProxyFailure(503, FailureReason.InvalidPolicy, "fail-closed: " + target.Config.FailClosedMessage));
        }

        if (target.Config.Tls.Alpn == BackendTls.Policy.Validation.AlpnMode.Http11Only)
        {
            return await RefuseAsync(http, grpc, target.Id, new ProxyFailure(502, FailureReason.UpstreamProtocolError,
                $"the gateway speaks HTTP/2 (h2c) to {target.Id}, whose policy allows only http/1.1 (backendtls.io/alpn); gRPC needs h2: allow it in the policy's options"));
        }

        // (2) The backend sees the policy hostname as :authority: .NET's HTTP/2 client takes the SNI from it.
        using var message = CreateRequest(http, connection, target);
        using var headersDeadline = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        HttpResponseMessage response;
        try
        {
            headersDeadline.CancelAfter(target.ResponseTimeout);
            response = await target.Http2Invoker!.SendAsync(message, headersDeadline.Token);
            headersDeadline.CancelAfter(Timeout.InfiniteTimeSpan); // the stream itself may last
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            if (http.RequestAborted.IsCancellationRequested)
            {
                return 499;
            }

            var classified = e is OperationCanceledException && headersDeadline.IsCancellationRequested && e.InnerException is not UpstreamFailureException
                ? new ProxyFailureException(new ProxyFailure(504, FailureReason.UpstreamTimeout,
                    $"the backend sent no response headers within {target.ResponseTimeout.TotalSeconds:0.###}s (--response-timeout)"))
                : Http2Lane.UpstreamFailure(target, e);
            if (!classified.Logged)
            {
                Log.UpstreamRequestFailed(context.Logger, target.Id, classified.Failure.Reason, classified.Failure.Detail);
            }

            return await RefuseAsync(http, grpc, target.Id, classified.Failure);
        }

        using (response)
        {
            return await ForwardResponseAsync(http, target, response);
        }
    }

    private static HttpRequestMessage CreateRequest(HttpContext http, H2cConnectionFeature connection, UpstreamTarget target)
    {
        var rawTarget = http.Features.Get<IHttpRequestFeature>()?.RawTarget ?? (http.Request.Path + http.Request.QueryString);
        var message = new HttpRequestMessage(HttpMethod.Parse(http.Request.Method), new Uri(Http2Lane.BaseUri(target, connection.OriginalDestination) + rawTarget, Http2Lane.RawTarget))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        if (http.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody != false)
        {
            message.Content = new StreamingBody(http.Request.Body);
        }

        var forwardedProto = false;
        string? forwardedFor = null;
        foreach (var (name, values) in http.Request.Headers)
        {
            if (name.Equals("X-Forwarded-For", StringComparison.OrdinalIgnoreCase))
            {
                forwardedFor = values.ToString();
                continue;
            }

            // Over HTTP/2 only "TE: trailers" may travel (RFC 9113 §8.2.2), and gRPC needs it; the Host is set below.
            var teTrailers = name.Equals("TE", StringComparison.OrdinalIgnoreCase) && values.ToString().Equals("trailers", StringComparison.OrdinalIgnoreCase);
            if (name.StartsWith(':') || name.Equals("Host", StringComparison.OrdinalIgnoreCase) || (Http2Lane.IsHopByHop(name) && !teTrailers))
            {
                continue;
            }

            forwardedProto |= name.Equals("X-Forwarded-Proto", StringComparison.OrdinalIgnoreCase);
            if (!message.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values))
            {
                message.Content?.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            }
        }

        message.Headers.Host = target.Sni;
        message.Headers.TryAddWithoutValidation("X-Forwarded-For", forwardedFor is null ? connection.RemoteAddress : forwardedFor + ", " + connection.RemoteAddress);
        if (!forwardedProto)
        {
            message.Headers.TryAddWithoutValidation("X-Forwarded-Proto", "http");
        }

        return message;
    }

    // (3)
    private async Task<int> ForwardResponseAsync(HttpContext http, UpstreamTarget target, HttpResponseMessage response)
    {
        var status = (int)response.StatusCode;
        http.Response.StatusCode = status;
        foreach (var (name, values) in response.Headers.NonValidated)
        {
            if (!Http2Lane.IsHopByHop(name))
            {
                http.Response.Headers.Append(name, values.ToArray());
            }
        }

        foreach (var (name, values) in response.Content.Headers.NonValidated)
        {
            http.Response.Headers.Append(name, values.ToArray());
        }

        var buffer = ArrayPool<byte>.Shared.Rent(InputBuffer.BlockSize);
        try
        {
            await http.Response.StartAsync(http.RequestAborted);
            await using var body = await response.Content.ReadAsStreamAsync(http.RequestAborted);
            int read;
            while ((read = await body.ReadAsync(buffer, http.RequestAborted)) > 0)
            {
                await http.Response.Body.WriteAsync(buffer.AsMemory(0, read), http.RequestAborted);
                await http.Response.Body.FlushAsync(http.RequestAborted); // a streamed message goes on now
            }

            if (http.Response.SupportsTrailers())
            {
                foreach (var (name, values) in response.TrailingHeaders.NonValidated)
                {
                    http.Response.AppendTrailer(name, values.ToArray());
                }
            }
        }
        catch (Exception e) when (e is IOException or HttpRequestException or OperationCanceledException)
        {
            // Headers are gone: the stream can only be reset, as the backend's was.
            Log.UpstreamResponseAborted(context.Logger, target.Id, SocketErrorText.Describe(e));
            http.Abort();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return status;
    }

    // (4)
    private static async Task<int> RefuseAsync(HttpContext http, bool grpc, string target, ProxyFailure failure)
    {
        http.Response.Headers[ErrorResponse.Header] = failure.Reason;
        if (grpc)
        {
            // A trailers-only gRPC response: the client reads UNAVAILABLE and the reason, not a bare reset.
            http.Response.StatusCode = 200;
            http.Response.ContentType = "application/grpc";
            http.Response.Headers["grpc-status"] = "14";
            http.Response.Headers["grpc-message"] = Uri.EscapeDataString($"{failure.Reason}: {failure.Detail}");
            return 200;
        }

        http.Response.StatusCode = failure.Status;
        http.Response.ContentType = "application/json; charset=utf-8";
        await http.Response.Body.WriteAsync(ErrorResponse.Json(failure, target));
        return failure.Status;
    }

    /// <summary>The gateway's request body as it arrives (client streaming): no buffering, each read sent on.</summary>
    private sealed class StreamingBody(Stream body) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            var buffer = ArrayPool<byte>.Shared.Rent(InputBuffer.BlockSize);
            try
            {
                int read;
                while ((read = await body.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    await stream.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                    await stream.FlushAsync(cancellationToken);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
