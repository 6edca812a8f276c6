using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using BackendTls.Sidecar.Http1;

namespace BackendTls.Sidecar.Upstreams;

/// <summary>One verified TLS connection to a backend endpoint, with its read buffer.</summary>
internal sealed class UpstreamConnection : IDisposable
{
    private readonly Prometheus.Gauge.Child _openConnections;
    private int _disposed;

    public UpstreamConnection(Socket socket, SslStream stream, EndPoint endpoint, Prometheus.Gauge.Child openConnections)
    {
        Socket = socket;
        Stream = stream;
        Endpoint = endpoint;
        Input = new InputBuffer(stream);
        _openConnections = openConnections;
        openConnections.Inc();
    }

    public Socket Socket { get; }

    public SslStream Stream { get; }

    /// <summary>The pool key: the address the connection was opened to.</summary>
    public EndPoint Endpoint { get; }

    public InputBuffer Input { get; }

    public bool NegotiatedHttp2 => Stream.NegotiatedApplicationProtocol == SslApplicationProtocol.Http2;

    /// <summary>Requests sent on it so far; above 0 it is a reused connection that the backend may have closed meanwhile.</summary>
    public int Uses { get; set; }

    public long IdleSince { get; set; } = Stopwatch.GetTimestamp();

    public bool IsDisposed => Volatile.Read(ref _disposed) == 1;

    /// <summary>
    /// False when the backend closed (or wrote to) the connection while it sat in the pool: a keep-alive
    /// timeout, or a graceful reload, which closes every idle connection at once. One poll(2) per reuse; the
    /// alternative is a request sent into a closed connection, which only an idempotent request survives.
    /// </summary>
    public bool LooksUsable()
    {
        if (Input.Available > 0)
        {
            return false; // bytes nobody asked for: the stream is out of step
        }

        try
        {
            return !Socket.Poll(0, SelectMode.SelectRead);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _openConnections.Dec();
        Input.Dispose();
        try
        {
            Stream.Dispose(); // closes the NetworkStream and its socket
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // Closing a broken connection: nothing to report.
        }
    }
}
