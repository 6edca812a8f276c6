using System.Net.Sockets;

namespace BackendTls.Sidecar.Failures;

/// <summary>
/// Socket errors in our own words. The published (AOT) binary strips the runtime's messages to resource
/// keys, so a person would otherwise read "net_sockets_..." instead of a sentence.
/// </summary>
internal static class SocketErrorText
{
    public static string Describe(SocketError error) => error switch
    {
        SocketError.ConnectionRefused => "the connection was refused (nothing listens on that port)",
        SocketError.TimedOut => "the connection timed out",
        SocketError.HostUnreachable => "the host is unreachable",
        SocketError.NetworkUnreachable => "the network is unreachable",
        SocketError.HostNotFound => "the name does not resolve (no such host)",
        SocketError.TryAgain => "the name could not be resolved now (DNS server failure; try again)",
        SocketError.NoData => "the name has no address of the requested kind",
        SocketError.AddressAlreadyInUse => "the address is already in use (another process listens there)",
        SocketError.AddressNotAvailable => "the address is not one of this machine's",
        SocketError.AccessDenied => "permission denied (ports below 1024 need privileges)",
        SocketError.ConnectionReset => "the connection was reset by the peer",
        SocketError.ConnectionAborted => "the connection was aborted",
        SocketError.Shutdown => "the connection was already shut down",
        SocketError.NetworkDown => "the network is down",
        SocketError.AddressFamilyNotSupported => "the address family is not supported here (no IPv6?)",
        _ => $"socket error {error}",
    };

    /// <summary>The innermost socket error of an exception chain, in words; otherwise the innermost message.</summary>
    public static string Describe(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is SocketException socket)
            {
                return Describe(socket.SocketErrorCode);
            }
        }

        while (e.InnerException is not null)
        {
            e = e.InnerException;
        }

        return e.Message;
    }
}
