using System.Diagnostics;
using System.Text.Json;
using BackendTls.Webhook.Admin;

namespace BackendTls.Webhook.Admission;

/// <summary>
/// <c>POST /mutate</c>: the HTTP side of the webhook. Checks what arrives before parsing it: JSON content
/// type (415), a size cap (413), a well-formed AdmissionReview v1 with a request uid (400, with a message);
/// then answers with an AdmissionReview that echoes the uid.
/// </summary>
internal sealed class AdmissionEndpoint(AdmissionHandler handler, WebhookMetrics metrics)
{
    /// <summary>
    /// etcd stores objects up to 1.5 MiB by default (3 MiB at most, as controller-runtime reasons); a
    /// review carries the object twice at most, plus overhead.
    /// </summary>
    public const long MaxRequestBytes = 7 * 1024 * 1024;

    public async Task HandleAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await HandleCoreAsync(context);
        }
        finally
        {
            metrics.Duration.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    private async Task HandleCoreAsync(HttpContext context)
    {
        if (!HttpMethods.IsPost(context.Request.Method))
        {
            await Problem(context, StatusCodes.Status405MethodNotAllowed, "use POST with an admission.k8s.io/v1 AdmissionReview");
            return;
        }

        if (context.Request.ContentType is not { } contentType || !contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
        {
            await Problem(context, StatusCodes.Status415UnsupportedMediaType, $"Content-Type must be application/json, not \"{context.Request.ContentType}\"");
            return;
        }

        if (context.Request.ContentLength > MaxRequestBytes)
        {
            await Problem(context, StatusCodes.Status413PayloadTooLarge, $"the AdmissionReview is larger than {MaxRequestBytes} bytes");
            return;
        }

        AdmissionReview? review;
        try
        {
            using var limited = new LimitedStream(context.Request.Body, MaxRequestBytes);
            review = await JsonSerializer.DeserializeAsync(limited, AdmissionJsonContext.Default.AdmissionReview, context.RequestAborted);
        }
        catch (LimitedStream.TooLargeException)
        {
            await Problem(context, StatusCodes.Status413PayloadTooLarge, $"the AdmissionReview is larger than {MaxRequestBytes} bytes");
            return;
        }
        catch (JsonException e)
        {
            await Problem(context, StatusCodes.Status400BadRequest, $"the body is not a JSON AdmissionReview: {e.Message}");
            return;
        }

        if (review is null || review.Kind != "AdmissionReview" || review.ApiVersion != AdmissionReview.ApiVersionV1)
        {
            await Problem(context, StatusCodes.Status400BadRequest,
                $"expected kind AdmissionReview, apiVersion {AdmissionReview.ApiVersionV1}; got kind \"{review?.Kind}\", apiVersion \"{review?.ApiVersion}\"");
            return;
        }

        if (review.Request is not { Uid: { Length: > 0 } } request)
        {
            await Problem(context, StatusCodes.Status400BadRequest, "the AdmissionReview has no request or no request.uid");
            return;
        }

        var response = await handler.HandleAsync(request, context.RequestAborted);
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body,
            new AdmissionReview { ApiVersion = AdmissionReview.ApiVersionV1, Kind = "AdmissionReview", Response = response },
            AdmissionJsonContext.Default.AdmissionReview, context.RequestAborted);
    }

    private Task Problem(HttpContext context, int status, string message)
    {
        metrics.Admissions.WithLabels("error", "bad_request").Inc();
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(message + "\n", context.RequestAborted);
    }

    /// <summary>Reads at most a given number of bytes, whatever Content-Length said (or didn't).</summary>
    private sealed class LimitedStream(Stream inner, long limit) : Stream
    {
        private long _read;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => _read; set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var read = await inner.ReadAsync(buffer, cancellationToken);
            _read += read;
            return _read > limit ? throw new TooLargeException() : read;
        }

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public sealed class TooLargeException : Exception;
    }
}
