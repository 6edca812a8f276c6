using System.Buffers;
using System.Net;
using System.Net.Sockets;

namespace BackendTls.Sidecar.Capture;

/// <summary>
/// Passes a captured connection through at L4, untouched: the gateway's own TLS, and Services no policy
/// names. Connects to the original destination (as the sidecar's uid, so the capture rules let it out)
/// and copies bytes both ways until both sides have closed, each half-close passed on.
/// </summary>
internal static class Tunnel
{
    /// <summary>Outcome of the connect: null when connected and copied to the end, else why it could not connect.</summary>
    public static async Task<SocketError?> RunAsync(Socket client, ReadOnlyMemory<byte> alreadyRead, IPEndPoint destination, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        using var upstream = new Socket(destination.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            timeout.CancelAfter(connectTimeout);
            try
            {
                await upstream.ConnectAsync(destination, timeout.Token);
            }
            catch (SocketException e)
            {
                return e.SocketErrorCode;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return SocketError.TimedOut;
            }
        }

        if (!alreadyRead.IsEmpty)
        {
            await upstream.SendAsync(alreadyRead, SocketFlags.None, cancellationToken);
        }

        await Task.WhenAll(CopyAsync(client, upstream, cancellationToken), CopyAsync(upstream, client, cancellationToken));
        return null;
    }

    private static async Task CopyAsync(Socket from, Socket to, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            int read;
            while ((read = await from.ReceiveAsync(buffer, SocketFlags.None, cancellationToken)) > 0)
            {
                await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, cancellationToken);
            }

            to.Shutdown(SocketShutdown.Send); // pass the half-close on
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // One side reset or the sidecar is shutting down: reset the other side too.
            Reset(to);
            Reset(from);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Closes with RST (SO_LINGER 0): the peer sees a failed connection, not an orderly end.</summary>
    public static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
            socket.Close();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed.
        }
    }
}
