using System.Diagnostics;
using System.Text.Json;
using BackendTls.Webhook.Admin;

namespace BackendTls.Webhook.Admission;

/// <summary>
/// <c>POST /mutate</c>: the HTTP side of the webhook. Checks what arrives before parsing it: JSON content
/// type (415), a size cap (413), a readable request uid (400, with a message); then always answers with an
/// AdmissionReview that echoes the uid (<see cref="ReviewAsync"/>).
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
            await WriteAsync(context, Problem(StatusCodes.Status405MethodNotAllowed, "use POST with an admission.k8s.io/v1 AdmissionReview"));
            return;
        }

        if (context.Request.ContentType is not { } contentType || !contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
        {
            await WriteAsync(context, Problem(StatusCodes.Status415UnsupportedMediaType, $"Content-Type must be application/json, not \"{context.Request.ContentType}\""));
            return;
        }

        if (context.Request.ContentLength > MaxRequestBytes)
        {
            await WriteAsync(context, Problem(StatusCodes.Status413PayloadTooLarge, $"the AdmissionReview is larger than {MaxRequestBytes} bytes"));
            return;
        }

        byte[] body;
        try
        {
            using var limited = new LimitedStream(context.Request.Body, MaxRequestBytes);
            using var buffer = new MemoryStream();
            await limited.CopyToAsync(buffer, context.RequestAborted);
            body = buffer.ToArray();
        }
        catch (LimitedStream.TooLargeException)
        {
            await WriteAsync(context, Problem(StatusCodes.Status413PayloadTooLarge, $"the AdmissionReview is larger than {MaxRequestBytes} bytes"));
            return;
        }

        await WriteAsync(context, await ReviewAsync(body, context.RequestAborted));
    }

    /// <summary>An answer: the status, its content type and body.</summary>
    internal readonly record struct Answer(int Status, string ContentType, byte[] Body);

    /// <summary>
    /// Answers one review body. A body whose request.uid can be read gets 200 and an AdmissionReview for that
    /// uid (allowed: false with a message naming the field when something cannot be read); any other body
    /// gets 400 with a message. Nothing in a body can make this throw.
    /// </summary>
    internal async Task<Answer> ReviewAsync(byte[] body, CancellationToken cancellationToken)
    {
        var read = AdmissionReader.Read(body);
        if (read.Uid is not { } uid)
        {
            return Problem(StatusCodes.Status400BadRequest, read.Problem!);
        }

        AdmissionResponse response;
        if (read.Request is not { } request)
        {
            metrics.Admissions.WithLabels("error", "malformed_review").Inc();
            response = AdmissionHandler.Refuse(uid, $"the backendtls injector cannot read this AdmissionReview: {read.Problem}");
        }
        else
        {
            try
            {
                response = await handler.HandleAsync(request, cancellationToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // A defect, not the body's fault: the pod is refused rather than admitted half-configured.
                metrics.Admissions.WithLabels("error", "internal").Inc();
                handler.LogDefect(e);
                response = AdmissionHandler.Refuse(uid, "the backendtls injector failed on this pod (a defect, logged by the webhook); the pod was not admitted");
            }
        }

        var review = new AdmissionReview { ApiVersion = AdmissionReview.ApiVersionV1, Kind = "AdmissionReview", Response = response };
        try
        {
            return new Answer(StatusCodes.Status200OK, "application/json", JsonSerializer.SerializeToUtf8Bytes(review, AdmissionJsonContext.Default.AdmissionReview));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // A message quoting text that cannot be encoded: answer with the uid alone.
            review = review with { Response = AdmissionHandler.Refuse(uid, "the pod holds text that cannot be encoded (a lone surrogate); the backendtls injector refused it") };
            return new Answer(StatusCodes.Status200OK, "application/json", JsonSerializer.SerializeToUtf8Bytes(review, AdmissionJsonContext.Default.AdmissionReview));
        }
    }

    private Answer Problem(int status, string message)
    {
        metrics.Admissions.WithLabels("error", "bad_request").Inc();
        return new Answer(status, "text/plain; charset=utf-8", System.Text.Encoding.UTF8.GetBytes(message + "\n"));
    }

    private static async Task WriteAsync(HttpContext context, Answer answer)
    {
        context.Response.StatusCode = answer.Status;
        context.Response.ContentType = answer.ContentType;
        context.Response.ContentLength = answer.Body.Length;
        await context.Response.Body.WriteAsync(answer.Body, context.RequestAborted);
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
