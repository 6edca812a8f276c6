using System.Net;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace BackendTls.Tests.Shared.Grpc;

/// <summary>
/// The methods of a small gRPC service, described by hand (no .proto, no codegen): messages are raw bytes,
/// so the tests see exactly what crossed the sidecar. Every kind of call gRPC has.
/// </summary>
internal static class EchoGrpc
{
    private static readonly Marshaller<byte[]> Bytes = Marshallers.Create(b => b, b => b);

    /// <summary>Echoes the request; trailer x-echo-trailer: yes.</summary>
    public static readonly Method<byte[], byte[]> Unary = new(MethodType.Unary, "test.Echo", nameof(Unary), Bytes, Bytes);

    /// <summary>The request is "N,delayMs": N messages "0".."N-1", delayMs apart.</summary>
    public static readonly Method<byte[], byte[]> Split = new(MethodType.ServerStreaming, "test.Echo", nameof(Split), Bytes, Bytes);

    /// <summary>All request messages, concatenated.</summary>
    public static readonly Method<byte[], byte[]> Concat = new(MethodType.ClientStreaming, "test.Echo", nameof(Concat), Bytes, Bytes);

    /// <summary>Each message back as it arrives.</summary>
    public static readonly Method<byte[], byte[]> Bidi = new(MethodType.DuplexStreaming, "test.Echo", nameof(Bidi), Bytes, Bytes);

    /// <summary>Answers after 10 s, or when the call's deadline cancels it.</summary>
    public static readonly Method<byte[], byte[]> Sleep = new(MethodType.Unary, "test.Echo", nameof(Sleep), Bytes, Bytes);
}

/// <summary>What codegen would write for <see cref="EchoGrpc"/>: Grpc.AspNetCore binds the overrides of these.</summary>
[BindServiceMethod(typeof(EchoServiceBase), nameof(BindService))]
internal abstract class EchoServiceBase
{
    public abstract Task<byte[]> Unary(byte[] request, ServerCallContext context);

    public abstract Task Split(byte[] request, IServerStreamWriter<byte[]> responses, ServerCallContext context);

    public abstract Task<byte[]> Concat(IAsyncStreamReader<byte[]> requests, ServerCallContext context);

    public abstract Task Bidi(IAsyncStreamReader<byte[]> requests, IServerStreamWriter<byte[]> responses, ServerCallContext context);

    public abstract Task<byte[]> Sleep(byte[] request, ServerCallContext context);

    public static void BindService(ServiceBinderBase binder, EchoServiceBase? service)
    {
        binder.AddMethod(EchoGrpc.Unary, service is null ? null : service.Unary);
        binder.AddMethod(EchoGrpc.Split, service is null ? null : service.Split);
        binder.AddMethod(EchoGrpc.Concat, service is null ? null : service.Concat);
        binder.AddMethod(EchoGrpc.Bidi, service is null ? null : service.Bidi);
        binder.AddMethod(EchoGrpc.Sleep, service is null ? null : service.Sleep);
    }
}

/// <summary>The service behind <see cref="EchoGrpc"/>; records the SNI and :authority each call arrived with.</summary>
internal sealed class EchoService : EchoServiceBase
{
    public static System.Collections.Concurrent.ConcurrentQueue<(string? Sni, string Authority)> Seen { get; } = new();

    public override Task<byte[]> Unary(byte[] request, ServerCallContext context)
    {
        Record(context);
        context.ResponseTrailers.Add("x-echo-trailer", "yes");
        return Task.FromResult(request);
    }

    public override async Task Split(byte[] request, IServerStreamWriter<byte[]> responses, ServerCallContext context)
    {
        Record(context);
        var parts = System.Text.Encoding.ASCII.GetString(request).Split(',');
        for (var i = 0; i < int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture); i++)
        {
            await Task.Delay(int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture), context.CancellationToken);
            await responses.WriteAsync(System.Text.Encoding.ASCII.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
    }

    public override async Task<byte[]> Concat(IAsyncStreamReader<byte[]> requests, ServerCallContext context)
    {
        Record(context);
        using var all = new MemoryStream();
        await foreach (var message in requests.ReadAllAsync(context.CancellationToken))
        {
            all.Write(message);
        }

        return all.ToArray();
    }

    public override async Task Bidi(IAsyncStreamReader<byte[]> requests, IServerStreamWriter<byte[]> responses, ServerCallContext context)
    {
        Record(context);
        await foreach (var message in requests.ReadAllAsync(context.CancellationToken))
        {
            await responses.WriteAsync(message);
        }
    }

    public override async Task<byte[]> Sleep(byte[] request, ServerCallContext context)
    {
        await Task.Delay(TimeSpan.FromSeconds(10), context.CancellationToken);
        return request;
    }

    private static void Record(ServerCallContext context)
    {
        var http = context.GetHttpContext();
        Seen.Enqueue((http.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.ISslStreamFeature>()?.SslStream.TargetHostName, http.Request.Host.Value ?? string.Empty));
    }
}

/// <summary>A real gRPC server (Grpc.AspNetCore on Kestrel) over TLS with ALPN h2, on loopback or a given socket.</summary>
internal sealed class GrpcBackend : IAsyncDisposable
{
    private readonly WebApplication _app;

    private GrpcBackend(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    /// <param name="certificate">The server certificate.</param>
    /// <param name="listening">A listening socket to serve on (e.g. one made in a network namespace); else a loopback port.</param>
    public static async Task<GrpcBackend> StartAsync(X509Certificate2 certificate, System.Net.Sockets.Socket? listening = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddGrpc(o => o.MaxReceiveMessageSize = o.MaxSendMessageSize = 64 * 1024 * 1024);
        builder.WebHost.ConfigureKestrel(kestrel => TlsListener.Listen(kestrel, certificate, HttpProtocols.Http2, listening));
        var app = builder.Build();
        app.MapGrpcService<EchoService>();
        await app.StartAsync();
        return new GrpcBackend(app, TlsListener.PortOf(app, listening));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>gRPC clients whose TCP connection goes where the test says, whatever the address names (its :authority).</summary>
internal static class GrpcClients
{
    public static GrpcChannel Channel(string authority, Func<System.Net.Sockets.Socket> newSocket, EndPoint to) => GrpcChannel.ForAddress($"http://{authority}", new GrpcChannelOptions
    {
        MaxReceiveMessageSize = 64 * 1024 * 1024,
        MaxSendMessageSize = 64 * 1024 * 1024,
        HttpHandler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, token) =>
            {
                var socket = newSocket();
                socket.NoDelay = true;
                await socket.ConnectAsync(to, token);
                return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
            },
        },
    });

    public static GrpcChannel Loopback(string authority, int port) =>
        Channel(authority, () => new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp), new IPEndPoint(IPAddress.Loopback, port));
}
