using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace BackendTls.Sidecar.Capture;

/// <summary>
/// Where a redirected connection was going: netfilter keeps the destination it rewrote, and
/// getsockopt(SO_ORIGINAL_DST) returns it (IP6T_SO_ORIGINAL_DST for IPv6; both are option 80).
/// </summary>
internal static class OriginalDestination
{
    private const int SoOriginalDst = 80;
    private const int SolIp = 0;
    private const int SolIpv6 = 41;

    /// <summary>The original destination, or null when the connection was not redirected (someone dialled the capture port itself).</summary>
    public static IPEndPoint? Of(Socket socket)
    {
        var v6 = socket.AddressFamily == AddressFamily.InterNetworkV6 && socket.LocalEndPoint is IPEndPoint { Address.IsIPv4MappedToIPv6: false };
        Span<byte> buffer = stackalloc byte[28];
        int length;
        try
        {
            length = socket.GetRawSocketOption(v6 ? SolIpv6 : SolIp, SoOriginalDst, buffer);
        }
        catch (SocketException)
        {
            return null; // ENOENT: no conntrack entry, the connection came straight to the listener
        }

        // sockaddr_in: family (2), port (2, network order), address (4); sockaddr_in6: ..., flowinfo (4), address (16).
        var port = BinaryPrimitives.ReadUInt16BigEndian(buffer[2..]);
        var address = v6 && length >= 24 ? new IPAddress(buffer.Slice(8, 16)) : new IPAddress(buffer.Slice(4, 4));
        var destination = new IPEndPoint(address, port);
        // A connection to the listener's own address was not redirected; following it would loop.
        return destination.Equals(socket.LocalEndPoint) ? null : destination;
    }
}
