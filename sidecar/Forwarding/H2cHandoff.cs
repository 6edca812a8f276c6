using System.IO.Pipelines;
using System.Net;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>
/// Where the proxy's own listeners hand an h2c connection (it opened with the HTTP/2 preface) to Kestrel's
/// HTTP/2 server: Kestrel 10 does not detect the preface on a cleartext HTTP/1.1-and-2 endpoint, and the
/// proxy's listeners must look at the first bytes anyway (TLS vs HTTP on the capture port). So detection
/// happens once, at the connection, and the connection, with the bytes already read, becomes a Kestrel
/// connection through this in-process "transport". Kestrel binds it like any endpoint (one
/// <c>Listen(H2cHandoff.EndPoint)</c>), so its HTTP/2 limits, flow control and graceful shutdown apply.
/// </summary>
internal sealed class H2cHandoff : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    private readonly Channel<HandedOffConnection> _pending = Channel.CreateUnbounded<HandedOffConnection>();

    /// <summary>The endpoint Kestrel listens on for handed-off connections; nothing binds a socket for it.</summary>
    public static EndPoint EndPoint { get; } = new HandoffEndPoint();

    public bool CanBind(EndPoint endpoint) => endpoint is HandoffEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IConnectionListener>(new Listener(this));

    /// <summary>
    /// Gives the connection to Kestrel and completes when Kestrel is done with it (the caller then closes
    /// the socket). <paramref name="alreadyRead"/> is replayed first: the preface the detector read.
    /// </summary>
    public Task RunAsync(Stream stream, ReadOnlyMemory<byte> alreadyRead, EndPoint? local, EndPoint? remote, H2cConnectionFeature feature, Action abort)
    {
        var connection = new HandedOffConnection(stream, alreadyRead, local, remote, feature, abort);
        return _pending.Writer.TryWrite(connection) ? connection.Done : Task.CompletedTask;
    }

    private sealed class HandoffEndPoint : EndPoint
    {
        public override string ToString() => "h2c-handoff";
    }

    private sealed class Listener(H2cHandoff owner) : IConnectionListener
    {
        public EndPoint EndPoint => H2cHandoff.EndPoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            try
            {
                return await owner._pending.Reader.ReadAsync(cancellationToken);
            }
            catch (ChannelClosedException)
            {
                return null;
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            owner._pending.Writer.TryComplete();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            owner._pending.Writer.TryComplete();
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>A gateway connection as Kestrel sees it: pipes over the socket's stream, the preface replayed first.</summary>
    private sealed class HandedOffConnection : DefaultConnectionContext
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Action _abort;

        public HandedOffConnection(Stream stream, ReadOnlyMemory<byte> alreadyRead, EndPoint? local, EndPoint? remote, H2cConnectionFeature feature, Action abort)
            : base(Guid.NewGuid().ToString("N")[..12])
        {
            _abort = abort;
            Transport = new Pipe(PipeReader.Create(new ReplayStream(alreadyRead.ToArray(), stream), new StreamPipeReaderOptions(leaveOpen: true)),
                PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true)));
            LocalEndPoint = local;
            RemoteEndPoint = remote;
            Features.Set(feature);
        }

        public Task Done => _done.Task;

        public override void Abort(ConnectionAbortedException abortReason)
        {
            _abort();
            base.Abort(abortReason);
        }

        public override async ValueTask DisposeAsync()
        {
            await Transport.Input.CompleteAsync();
            await Transport.Output.CompleteAsync();
            await base.DisposeAsync();
            _done.TrySetResult();
        }

        private sealed record Pipe(PipeReader Input, PipeWriter Output) : IDuplexPipe;
    }

    /// <summary>Reads <c>prefix</c> first, then the stream; writes go to the stream.</summary>
    private sealed class ReplayStream(byte[] prefix, Stream inner) : Stream
    {
        private int _offset;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_offset < prefix.Length)
            {
                var count = Math.Min(buffer.Length, prefix.Length - _offset);
                prefix.AsMemory(_offset, count).CopyTo(buffer);
                _offset += count;
                return count;
            }

            return await inner.ReadAsync(buffer, cancellationToken);
        }

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override void Flush() => inner.Flush();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

/// <summary>What the h2c lane needs to know of the connection Kestrel got from the proxy's listener.</summary>
/// <param name="Role">Which listener accepted it (explicit/dedicated: route by :authority; capture: by original destination).</param>
/// <param name="LocalPort">The listener's port (a dedicated port names its target).</param>
/// <param name="OriginalDestination">A captured connection's original destination.</param>
/// <param name="RemoteAddress">The gateway's address, for X-Forwarded-For.</param>
internal sealed record H2cConnectionFeature(ListenerRole Role, int LocalPort, IPEndPoint? OriginalDestination, string RemoteAddress);
