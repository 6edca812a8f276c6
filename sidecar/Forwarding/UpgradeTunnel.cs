using System.Diagnostics;
using System.Net.Sockets;
using BackendTls.Sidecar.Http1;
using BackendTls.Sidecar.Telemetry;
using BackendTls.Sidecar.Upstreams;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>
/// After the backend's 101 Switching Protocols (WebSocket, or any byte-stream upgrade): (1) the 101 goes to
/// the gateway with the backend's Upgrade; (2) bytes flow both ways, untouched, between the gateway's
/// connection and the verified TLS connection, each end of stream passed on, until both sides have closed,
/// either side breaks, no byte moves for --upgrade-idle-timeout, or the drain timeout ends it. The TLS
/// connection is never pooled again. Idle directions hold no buffer (a zero-byte read waits for data).
/// </summary>
internal static class UpgradeTunnel
{
    public static async ValueTask<ExchangeOutcome> RunAsync(ProxyConnection client, UpstreamTarget target, UpstreamConnection upstream)
    {
        var response = client.Response;
        var output = client.Output;
        output.Write("HTTP/1.1 101 "u8).Write(response.Reason).Write("\r\n"u8);
        Http1Lane.WriteEndToEndFields(response, output);
        if (response.TryGetField("upgrade"u8, out var upgrade))
        {
            output.Write(response.Line(upgrade)).Write("\r\n"u8);
        }

        output.Write("Connection: upgrade\r\n\r\n"u8);
        // Counted when it switches (a dashboard sees the upgrade now, and its duration is the handshake's).
        target.Requests.Record(101, Stopwatch.GetElapsedTime(client.RequestStarted));
        var idle = client.Context.Settings.UpgradeIdleTimeout;
        var opened = Stopwatch.GetTimestamp();
        client.Context.Metrics.UpgradedConnections.Inc();
        try
        {
            await output.FlushToAsync(client.Stream, client.Token);
            client.SetDeadline(TimeoutKind.UpgradeIdle, idle);
            await Task.WhenAll(
                PumpAsync(client, client.Input, upstream.Stream, () => new ValueTask(upstream.Stream.ShutdownAsync())),
                PumpAsync(client, upstream.Input, client.Stream, () => { client.Socket.Shutdown(SocketShutdown.Send); return ValueTask.CompletedTask; }));
            if (client.TimedOut == TimeoutKind.UpgradeIdle)
            {
                Log.UpgradeIdle(client.Context.Logger, target.Id, idle.TotalSeconds);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The gateway went away before the 101 reached it.
        }
        finally
        {
            client.ClearDeadline();
            client.Context.Metrics.UpgradedConnections.Dec();
            upstream.Dispose();
            Log.UpgradeEnded(client.Context.Logger, target.Id, Stopwatch.GetElapsedTime(opened).TotalSeconds);
        }

        return new ExchangeOutcome(101, KeepAlive: false, Recorded: true);
    }

    /// <summary>One direction: what was already read, then everything until the end of stream, which is passed on.</summary>
    private static async Task PumpAsync(ProxyConnection client, InputBuffer from, Stream to, Func<ValueTask> passEndOn)
    {
        var idle = client.Context.Settings.UpgradeIdleTimeout;
        try
        {
            while (true)
            {
                if (from.Available > 0)
                {
                    await to.WriteAsync(from.Memory, client.Token);
                    from.Consume(from.Available);
                    client.SetDeadline(TimeoutKind.UpgradeIdle, idle);
                }

                await from.WaitForDataAsync(client.Token);
                if (!await from.FillAsync(InputBuffer.BlockSize, client.Token))
                {
                    break;
                }
            }

            await passEndOn();
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // One side broke, timed out or is being drained: end the other direction too.
            client.CancelExchange();
        }
    }
}
