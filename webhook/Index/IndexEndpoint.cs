using System.Globalization;
using System.Text.Json;
using BackendTls.Policy.Destinations;
using BackendTls.Webhook.Cluster;

namespace BackendTls.Webhook.Index;

/// <summary>
/// <c>GET /index/v1?epoch=E&amp;since=N</c> on the webhook's HTTPS port: the destination index for the
/// sidecars' capture listeners. Authenticated by the pod's projected service-account token (audience
/// <c>backendtls-index</c>, checked by <see cref="IIndexAccess"/>); long-polled: it answers when the index passes
/// revision N (with what changed since), or after <see cref="PollTimeout"/> with nothing new.
/// </summary>
internal sealed partial class IndexEndpoint(DestinationFeed feed, IIndexAccess access, ILogger<IndexEndpoint> logger)
{
    public static readonly TimeSpan PollTimeout = TimeSpan.FromSeconds(30);

    public async Task HandleAsync(HttpContext context)
    {
        if (!HttpMethods.IsGet(context.Request.Method))
        {
            await TextAsync(context, StatusCodes.Status405MethodNotAllowed, "use GET");
            return;
        }

        var header = context.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.Ordinal))
        {
            await TextAsync(context, StatusCodes.Status401Unauthorized, "send the pod's projected service-account token (audience backendtls-index) as Authorization: Bearer");
            return;
        }

        IndexAccessDecision decision;
        try
        {
            decision = await access.DecideAsync(header[7..].Trim(), context.RequestAborted);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogReviewFailed(logger, e.Message);
            await TextAsync(context, StatusCodes.Status503ServiceUnavailable, "the token could not be reviewed (TokenReview failed); retry");
            return;
        }

        if (decision.Problem is { } problem)
        {
            await TextAsync(context, decision.Status, problem);
            return;
        }

        if (!feed.Ready)
        {
            // An empty answer now would replace the sidecar's bootstrap index with nothing.
            await TextAsync(context, StatusCodes.Status503ServiceUnavailable, "the destination index is still loading (listing Services and EndpointSlices); retry");
            return;
        }

        var epoch = context.Request.Query["epoch"].ToString();
        _ = long.TryParse(context.Request.Query["since"], NumberStyles.None, CultureInfo.InvariantCulture, out var since);
        if (context.Request.Query["wait"] == "true")
        {
            await feed.WaitBeyondAsync(epoch, since, PollTimeout, context.RequestAborted);
        }

        var update = feed.Since(epoch, since);
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body, update, DestinationUpdateJsonContext.Default.DestinationUpdate, context.RequestAborted);
    }

    private static Task TextAsync(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(text + "\n", context.RequestAborted);
    }

    [LoggerMessage(90, LogLevel.Warning, "Index request refused: TokenReview failed ({Problem})", EventName = "IndexTokenReviewFailed")]
    private static partial void LogReviewFailed(ILogger logger, string problem);
}
