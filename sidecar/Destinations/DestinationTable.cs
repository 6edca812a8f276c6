using System.Net;
using System.Net.Sockets;
using BackendTls.Policy.Destinations;

namespace BackendTls.Sidecar.Destinations;

/// <summary>A Service port: what a captured destination turns out to be.</summary>
internal readonly record struct ServicePort(string Namespace, string Name, int Port)
{
    /// <summary>The target id format of the config (<c>namespace/name:port</c>).</summary>
    public string Id => $"{Namespace}/{Name}:{Port}";
}

/// <summary>
/// The destination index as a lookup: (IP, port) of a captured connection's original destination to the
/// Service ports it belongs to, by ClusterIP or by EndpointSlice address. Immutable; swapped whole.
/// Keys hold addresses as 128-bit numbers (IPv4 mapped), so 50,000 endpoints cost no IPAddress objects.
/// </summary>
internal sealed class DestinationTable
{
    private readonly Dictionary<(UInt128 Address, int Port), ServicePort[]> _byDestination;

    private DestinationTable(Dictionary<(UInt128, int), ServicePort[]> byDestination, string? revision, int services, int addresses)
    {
        _byDestination = byDestination;
        Revision = revision;
        Services = services;
        Addresses = addresses;
    }

    public static DestinationTable Empty { get; } = new([], null, 0, 0);

    public string? Revision { get; }

    public int Services { get; }

    /// <summary>Distinct (address, port) entries.</summary>
    public int Addresses { get; }

    public static DestinationTable Build(DestinationIndex index)
    {
        var table = new Dictionary<(UInt128, int), List<ServicePort>>();
        void Add(string address, int port, ServicePort servicePort)
        {
            if (!IPAddress.TryParse(address, out var ip))
            {
                return;
            }

            var key = (Key(ip), port);
            if (!table.TryGetValue(key, out var list))
            {
                table[key] = list = [];
            }

            if (!list.Contains(servicePort))
            {
                list.Add(servicePort);
            }
        }

        foreach (var service in index.Services)
        {
            foreach (var port in service.Ports)
            {
                foreach (var clusterIp in service.ClusterIPs)
                {
                    Add(clusterIp, port.Port, new ServicePort(service.Namespace, service.Name, port.Port));
                }
            }

            foreach (var set in service.Endpoints)
            {
                foreach (var endpointPort in set.Ports)
                {
                    // An endpoint port belongs to the Service port of the same name (both unnamed for one-port Services).
                    var servicePort = service.Ports.FirstOrDefault(p => p.Name == endpointPort.Name)
                                      ?? (service.Ports.Count == 1 && set.Ports.Count == 1 ? service.Ports[0] : null);
                    if (servicePort is null)
                    {
                        continue;
                    }

                    foreach (var address in set.Addresses)
                    {
                        Add(address, endpointPort.Port, new ServicePort(service.Namespace, service.Name, servicePort.Port));
                    }
                }
            }
        }

        return new DestinationTable(table.ToDictionary(p => p.Key, p => p.Value.ToArray()), index.Revision, index.Services.Count, table.Count);
    }

    /// <summary>The Service ports this destination belongs to; empty when the index does not know it.</summary>
    public ReadOnlySpan<ServicePort> Lookup(IPEndPoint destination) =>
        _byDestination.TryGetValue((Key(destination.Address), destination.Port), out var ports) ? ports : [];

    private static UInt128 Key(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        var mapped = address.AddressFamily == AddressFamily.InterNetwork ? address.MapToIPv6() : address;
        mapped.TryWriteBytes(bytes, out _);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(bytes);
    }
}
