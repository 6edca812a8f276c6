using System.Net;
using BackendTls.Sidecar.Capture;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Http1;
using BackendTls.Sidecar.Routing;
using BackendTls.Sidecar.Telemetry;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>
/// The start of a captured connection, before any HTTP: (1) its original destination; (2) what the
/// destination index says it is, holding briefly when it says nothing yet; (3) pass Services without a
/// policy through at L4; (4) look at the first bytes: the gateway's own TLS passes through untouched, the
/// HTTP/2 preface (h2c, gRPC) goes to the h2c lane, anything else is served as HTTP/1.1; both become verified TLS.
/// </summary>
internal static class CaptureEntry
{
    /// <summary>True when the connection carries HTTP/1.1 for the forwarder; false when it was tunnelled, refused or reset.</summary>
    public static async Task<bool> AcceptAsync(ProxyConnection client)
    {
        var context = client.Context;
        var remote = client.Socket.RemoteEndPoint?.ToString() ?? "?";
        // (1)
        if (OriginalDestination.Of(client.Socket) is not { } destination)
        {
            Log.CaptureNotRedirected(context.Logger, remote);
            return false;
        }

        client.OriginalDestination = destination;

        // (2)
        var route = await ClassifyAsync(context, destination, client.Token);
        var unknown = route.Kind == DestinationKind.Unknown;

        // (3)
        if (route.Kind == DestinationKind.Passthrough || (unknown && context.Capture.UnknownPassthrough))
        {
            await PassThroughAsync(client, destination, unknown ? "unknown" : "passthrough", route, ReadOnlyMemory<byte>.Empty);
            return false;
        }

        // (4) The gateway speaks first in HTTP and in TLS.
        client.SetDeadline(TimeoutKind.RequestHeaders, context.Settings.RequestHeadersTimeout);
        await client.Input.WaitForDataAsync(client.Token);
        if (!await client.Input.FillAsync(Http1Parser.MaxRequestHeadBytes, client.Token))
        {
            return false;
        }

        client.ClearDeadline();
        var first = client.Input.Span;
        if (first[0] == 0x16)
        {
            // A TLS record (ClientHello): the gateway already speaks TLS to this backend. Never wrap TLS in TLS.
            if (unknown)
            {
                Deny(client, destination, "the index names no Service at this address (TLS from the gateway)");
                client.Reset();
                return false;
            }

            await PassThroughAsync(client, destination, "passthrough_tls", route, client.Input.Memory);
            return false;
        }

        if (await client.StartsWithH2cPrefaceAsync())
        {
            // h2c (gRPC with prior knowledge): each stream becomes verified TLS with ALPN h2 (H2cLane).
            if (unknown)
            {
                Deny(client, destination, "the index names no Service at this address (h2c from the gateway)");
                client.Reset();
                return false;
            }

            Count(context, route.Kind == DestinationKind.Ambiguous ? "ambiguous" : "tls", route);
            Log.CapturedConnection(context.Logger, destination.ToString(), route.Service.Id, "h2c");
            await client.HandOffH2cAsync();
            return false;
        }

        var outcome = route.Kind switch
        {
            DestinationKind.Target => "tls",
            DestinationKind.Ambiguous => "ambiguous",
            _ => "denied",
        };
        if (unknown)
        {
            Deny(client, destination, "the index names no Service at this address; requests on it are answered 502 unknown_destination");
        }
        else
        {
            Count(context, outcome, route);
            Log.CapturedConnection(context.Logger, destination.ToString(), route.Service.Id, outcome);
        }

        return true;
    }

    /// <summary>The route now, or after waiting (bounded) for an index update that names the destination.</summary>
    private static async Task<DestinationRoute> ClassifyAsync(ProxyContext context, IPEndPoint destination, CancellationToken cancellationToken)
    {
        var route = Route(context, destination);
        if (route.Kind != DestinationKind.Unknown)
        {
            return route;
        }

        // The gateway and the index learn of a new endpoint at about the same time: give the index a moment.
        using var hold = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        hold.CancelAfter(context.Capture.UnknownHold);
        while (true)
        {
            try
            {
                await context.Destinations.WaitForChangeAsync(hold.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return Route(context, destination);
            }

            route = Route(context, destination);
            if (route.Kind != DestinationKind.Unknown)
            {
                return route;
            }
        }
    }

    /// <summary>The route of a destination under the current config and index (also per request, since either can change).</summary>
    public static DestinationRoute Route(ProxyContext context, IPEndPoint destination) =>
        context.Snapshots.Current is { } snapshot
            ? snapshot.Router.ResolveDestination(destination, context.Destinations.Current)
            : DestinationRoute.Unknown;

    private static async Task PassThroughAsync(ProxyConnection client, IPEndPoint destination, string outcome, DestinationRoute route, ReadOnlyMemory<byte> alreadyRead)
    {
        var context = client.Context;
        Count(context, outcome, route);
        Log.CapturedConnection(context.Logger, destination.ToString(), route.Kind == DestinationKind.Unknown ? "unknown" : route.Service.Id, outcome);
        var failure = await Tunnel.RunAsync(client.Socket, alreadyRead, destination, context.Capture.ConnectTimeout, client.Token);
        if (failure is { } error)
        {
            Log.PassthroughFailed(context.Logger, destination.ToString(), SocketErrorText.Describe(error));
            client.Reset();
        }
    }

    private static void Deny(ProxyConnection client, IPEndPoint destination, string detail)
    {
        Count(client.Context, "denied", DestinationRoute.Unknown);
        Log.CaptureDenied(client.Context.Logger, destination.ToString(), detail);
    }

    private static void Count(ProxyContext context, string outcome, DestinationRoute route) =>
        context.Metrics.CapturedConnections.WithLabels(outcome, route.Target?.Id ?? "none").Inc();
}
