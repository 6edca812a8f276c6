using System.Diagnostics;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Http1;
using BackendTls.Sidecar.Routing;
using BackendTls.Sidecar.Telemetry;
using BackendTls.Sidecar.Upstreams;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>The end of one exchange: the status the gateway got and whether its connection stays open.</summary>
/// <param name="Status">The status the gateway got.</param>
/// <param name="KeepAlive">Whether the gateway's connection stays open for another request.</param>
/// <param name="Recorded">The lane counted the request itself (an upgrade, counted at its 101, not when it ends).</param>
internal readonly record struct ExchangeOutcome(int Status, bool KeepAlive, bool Recorded = false)
{
    /// <summary>First contact: the backend chose h2 in ALPN on a connection opened for HTTP/1.1.</summary>
    public static readonly ExchangeOutcome SwitchToHttp2 = new(0, false);

    public bool IsSwitch => Status == 0;
}

/// <summary>
/// One request, top to bottom: (1) refuse what is never forwarded (CONNECT, upgrades); (2) pick the target
/// from the current config, or answer 404/503 without forwarding; (3) send it over the target's HTTP/1.1
/// lane (<see cref="Http1Lane"/>) or, for h2 backends, the HTTP/2 lane (<see cref="Http2Lane"/>);
/// (4) report a failure once: one log line, one count, one answer with the reason.
/// </summary>
internal sealed class Forwarder(ProxyContext context)
{
    /// <summary>Forwards the request whose head <paramref name="client"/> just read. False when the connection must close.</summary>
    public async ValueTask<bool> ForwardAsync(ProxyConnection client, long started)
    {
        var request = client.Request;
        client.RequestBody.Start(client.Input, request.Framing, request.ContentLength, "the request");

        // (1) Never forwarded.
        if (request.Form == TargetForm.Authority)
        {
            return await RefuseAsync(client, started, context.UnknownTarget, SidecarMetrics.UnknownTarget, new ProxyFailure(405, FailureReason.MethodNotAllowed,
                "CONNECT asks for a tunnel; this sidecar forwards HTTP requests to the backends its policies name, nothing else"));
        }

        if (request.WantsUpgrade && UpgradeRefusal(request) is { } upgradeRefusal)
        {
            return await RefuseAsync(client, started, context.UnknownTarget, SidecarMetrics.UnknownTarget, upgradeRefusal);
        }

        // (2) Target.
        if (context.Snapshots.Current is not { } snapshot)
        {
            return await RefuseAsync(client, started, context.UnknownTarget, SidecarMetrics.UnknownTarget, new ProxyFailure(503, FailureReason.NotReady,
                "the sidecar has no valid config yet; see /healthz/ready on the admin port"));
        }

        UpstreamTarget? target = null;
        for (var attempt = 0; target is null && attempt < 3; attempt++)
        {
            var (chosen, refusal) = Resolve(client, context.Snapshots.Current ?? snapshot);
            if (chosen is null)
            {
                return await RefuseAsync(client, started, context.UnknownTarget, SidecarMetrics.UnknownTarget, refusal!);
            }

            // A reload may retire the target between lookup and acquire; then look again.
            target = chosen.TryAcquire() ? chosen : null;
        }

        if (target is null)
        {
            return await RefuseAsync(client, started, context.UnknownTarget, SidecarMetrics.UnknownTarget,
                new ProxyFailure(503, FailureReason.NotReady, "config is being reloaded; retry"));
        }

        try
        {
            if (request.WantsUpgrade && target.Config.Tls.Alpn == BackendTls.Policy.Validation.AlpnMode.Http2Only)
            {
                return await RefuseAsync(client, started, target.Requests, target.Id, new ProxyFailure(501, FailureReason.UpgradeNotSupported,
                    $"{target.Id} allows only h2 (backendtls.io/alpn: h2), and an HTTP/1.1 upgrade (WebSocket) needs http/1.1; allow both in the policy's options"));
            }

            if (target.IsFailClosed)
            {
                Log.FailClosedRequest(context.Logger, target.Id, target.Config.FailClosedMessage);
                return await RefuseAsync(client, started, target.Requests, target.Id,
                    new ProxyFailure(503, FailureReason.InvalidPolicy, "fail-closed: " + target.Config.FailClosedMessage));
            }

            return await ExchangeAsync(client, target, started);
        }
        finally
        {
            target.Release();
        }
    }

    /// <summary>
    /// The request's target: by Host (or arrival port) for the explicit listener; by the original destination
    /// for a captured connection, where the Host only chooses between Services that share an endpoint.
    /// </summary>
    private (UpstreamTarget? Target, ProxyFailure? Refusal) Resolve(ProxyConnection client, Configuration.ProxySnapshot snapshot)
    {
        var request = client.Request;
        if (client.Role != ListenerRole.Capture)
        {
            var route = snapshot.Router.Resolve(request.Host ?? string.Empty, client.LocalPort);
            if (route.Target is null)
            {
                Log.NoTarget(context.Logger, request.Host ?? "(no host)", System.Text.Encoding.ASCII.GetString(request.Target));
                return (null, new ProxyFailure(404, FailureReason.NoPolicy, route.Problem!));
            }

            return (route.Target, null);
        }

        var destination = client.OriginalDestination!;
        var captured = CaptureEntry.Route(context, destination);
        switch (captured.Kind)
        {
            case DestinationKind.Target:
                return (captured.Target, null);
            case DestinationKind.Ambiguous:
                return snapshot.Router.ChooseByHost(request.Host ?? string.Empty, captured.Candidates) is { } chosen
                    ? (chosen, null)
                    : (null, new ProxyFailure(502, FailureReason.AmbiguousDestination,
                        $"{destination} is an endpoint of {string.Join(" and ", captured.Candidates.Select(c => c.Id))}, which have different policies, " +
                        $"and the Host \"{request.Host}\" names none of them; send a Host that names one (its Service name or policy hostname)"));
            case DestinationKind.Passthrough:
                // The destination's policy went away while this connection was open: it is plain now, so reconnect.
                return (null, new ProxyFailure(503, FailureReason.NotReady,
                    $"{destination} ({captured.Service.Id}) has no BackendTLSPolicy any more; reconnect and it is passed through as it is"));
            default:
                return (null, new ProxyFailure(502, FailureReason.UnknownDestination,
                    $"{destination} is no ClusterIP or endpoint of any Service the sidecar knows (the destination index); " +
                    "if it is new, the index had not learned of it within --unknown-hold; with --unknown-destination passthrough such connections are passed through unverified"));
        }
    }

    private async ValueTask<bool> ExchangeAsync(ProxyConnection client, UpstreamTarget target, long started)
    {
        // Captured: TLS to exactly where the gateway was connecting (its load balancing stays in charge).
        System.Net.EndPoint endpoint = client.OriginalDestination ?? (System.Net.EndPoint)target.AddressEndPoint;
        try
        {
            // (3) Lane.
            var outcome = UseHttp2(target, client.Request)
                ? await Http2Lane.ForwardAsync(client, target, client.OriginalDestination)
                : await Http1Lane.ForwardAsync(client, target, endpoint);
            if (outcome.IsSwitch)
            {
                outcome = UseHttp2(target, client.Request)
                    ? await Http2Lane.ForwardAsync(client, target, client.OriginalDestination)
                    : await Http1Lane.ForwardAsync(client, target, endpoint);
            }

            if (!outcome.Recorded)
            {
                target.Requests.Record(outcome.Status, Stopwatch.GetElapsedTime(started));
            }

            return outcome.KeepAlive && !client.IsCancelled;
        }
        catch (ProxyFailureException e) when (client.Role == ListenerRole.Capture && e.Failure.Reason is FailureReason.ConnectionRefused
                                                  or FailureReason.ConnectTimeout or FailureReason.ConnectionFailed)
        {
            // With REDIRECT every connect "succeeds"; a 502 would hide a dead endpoint from the gateway's own
            // next-upstream retries. A reset before any response byte looks like the failed connect it was.
            Log.CaptureReset(context.Logger, endpoint.ToString() ?? "?", target.Id, e.Failure.Reason, e.Failure.Detail);
            context.Metrics.CapturedConnections.WithLabels("reset", target.Id).Inc();
            target.Requests.Record(502, Stopwatch.GetElapsedTime(started));
            client.Reset();
            return false;
        }
        catch (ProxyFailureException e)
        {
            // (4) Nothing was sent to the gateway yet: answer with the reason.
            if (!e.Logged)
            {
                if (e.Failure.ClientFault)
                {
                    Log.BadRequest(context.Logger, System.Text.Encoding.ASCII.GetString(client.RemoteAddress), e.Failure.Reason, e.Failure.Detail);
                }
                else
                {
                    Log.UpstreamRequestFailed(context.Logger, target.Id, e.Failure.Reason, e.Failure.Detail);
                }
            }

            if (client.IsCancelled)
            {
                await client.AnswerAfterTimeoutAsync(e.Failure, target.Id, target.Requests, started);
                return false;
            }

            return await RefuseAsync(client, started, target.Requests, target.Id, e.Failure);
        }
        catch (ClientGoneException)
        {
            target.Requests.Record(499, Stopwatch.GetElapsedTime(started));
            return false;
        }
    }

    /// <summary>
    /// Over HTTP/2, .NET's handler derives the SNI from the request authority, so h2 is used only when the
    /// gateway's Host is the policy hostname (or the policy allows nothing else) and the target is a plain
    /// path; otherwise HTTP/1.1 keeps both the SNI and the gateway's Host exact.
    /// </summary>
    private static bool UseHttp2(UpstreamTarget target, RequestHead request) =>
        target.UseHttp2 && request.Form != TargetForm.Asterisk && !request.WantsUpgrade
        && (SameHost(request.Host, target.Sni) || target.Config.Tls.Alpn == BackendTls.Policy.Validation.AlpnMode.Http2Only);

    /// <summary>Upgrades the HTTP/1.1 lane cannot carry; null when it can (WebSocket and other byte-stream upgrades).</summary>
    private static ProxyFailure? UpgradeRefusal(RequestHead request)
    {
        if (request.TryGetField("upgrade"u8, out var upgrade) && ContainsToken(request.Value(upgrade), "h2c"u8))
        {
            return new ProxyFailure(501, FailureReason.UpgradeNotSupported,
                "Upgrade: h2c is not supported; send plain HTTP/1.1 (the sidecar speaks HTTP/2 to backends that offer it by itself)");
        }

        return request.Framing == BodyFraming.None ? null : new ProxyFailure(501, FailureReason.UpgradeNotSupported,
            "an upgrade request with a body is not supported; WebSocket handshakes have none");
    }

    private static bool ContainsToken(ReadOnlySpan<byte> list, ReadOnlySpan<byte> lowerToken)
    {
        foreach (var range in list.Split((byte)','))
        {
            var token = list[range].Trim(" \t"u8);
            var slash = token.IndexOf((byte)'/');
            if (HttpSyntax.EqualsLower(slash < 0 ? token : token[..slash], lowerToken))
            {
                return true;
            }
        }

        return false;
    }

    public static bool SameHost(string? host, string hostname)
    {
        if (host is null)
        {
            return false;
        }

        var colon = host.LastIndexOf(':');
        var name = colon > 0 && host.IndexOf(']', StringComparison.Ordinal) < colon ? host.AsSpan(0, colon) : host.AsSpan();
        return name.TrimEnd('.').Equals(hostname, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Answers without forwarding. The connection stays open only if no request body is left unread.</summary>
    private static async ValueTask<bool> RefuseAsync(ProxyConnection client, long started, RequestSeries series, string target, ProxyFailure failure)
    {
        // Counted before the answer leaves: whoever reads the answer and then the metrics sees it counted.
        var keepAlive = client.RequestBody.IsComplete && !failure.ClientFault;
        series.Record(failure.Status, Stopwatch.GetElapsedTime(started));
        await client.WriteErrorAsync(failure, target, close: !keepAlive, client.Token);
        return keepAlive;
    }
}

/// <summary>The gateway closed its connection (or stopped reading) before the exchange ended.</summary>
internal sealed class ClientGoneException(Exception? inner = null) : Exception("the gateway closed the connection", inner);
