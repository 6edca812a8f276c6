using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace BackendTls.Tests.Shared;

/// <summary>
/// A real TLS WebSocket server (Kestrel, h2 and http/1.1 offered in ALPN, so a proxy that offered h2 for an
/// upgrade would break): <c>/echo</c> sends every message back; <c>/server-closes</c> sends "bye" and closes;
/// anything else refuses the upgrade with 403. Records the SNI of each upgraded connection.
/// </summary>
internal sealed class WebSocketBackend : IAsyncDisposable
{
    private readonly WebApplication _app;

    private WebSocketBackend(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    public System.Collections.Concurrent.ConcurrentQueue<string?> Snis { get; } = new();

    /// <param name="certificate">The server certificate.</param>
    /// <param name="listening">A listening socket to serve on (e.g. one made in a network namespace); else a loopback port.</param>
    public static async Task<WebSocketBackend> StartAsync(X509Certificate2 certificate, System.Net.Sockets.Socket? listening = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => TlsListener.Listen(kestrel, certificate, HttpProtocols.Http1AndHttp2, listening));
        var app = builder.Build();
        WebSocketBackend? self = null;
        app.UseWebSockets();
        app.Run(async context =>
        {
            if (!context.WebSockets.IsWebSocketRequest || context.Request.Path == "/refuse")
            {
                context.Response.StatusCode = 403;
                await context.Response.WriteAsync("no websocket here");
                return;
            }

            self!.Snis.Enqueue(context.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.ISslStreamFeature>()?.SslStream.TargetHostName);
            using var socket = await context.WebSockets.AcceptWebSocketAsync();
            if (context.Request.Path == "/server-closes")
            {
                await socket.SendAsync("bye"u8.ToArray(), WebSocketMessageType.Text, true, context.RequestAborted);
                await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "server done", context.RequestAborted);
                return;
            }

            while (true)
            {
                var (type, message) = await ReceiveAsync(socket, context.RequestAborted);
                if (type == WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", context.RequestAborted);
                    return;
                }

                await socket.SendAsync(message, type, true, context.RequestAborted);
            }
        });
        await app.StartAsync();
        self = new WebSocketBackend(app, TlsListener.PortOf(app, listening));
        return self;
    }

    /// <summary>One whole message (any size), or Close.</summary>
    public static async Task<(WebSocketMessageType Type, byte[] Message)> ReceiveAsync(WebSocket socket, CancellationToken cancellationToken)
    {
        using var message = new MemoryStream();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var result = await socket.ReceiveAsync(buffer, cancellationToken);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return (WebSocketMessageType.Close, []);
            }

            message.Write(buffer, 0, result.Count);
            if (result.EndOfMessage)
            {
                return (result.MessageType, message.ToArray());
            }
        }
    }

    /// <summary>A client WebSocket whose TCP connection goes to <paramref name="proxyPort"/> on loopback, whatever the URI names.</summary>
    public static Task<ClientWebSocket> ConnectThroughAsync(int proxyPort, Uri uri, CancellationToken cancellationToken) =>
        ConnectThroughAsync(() => new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp),
            new IPEndPoint(IPAddress.Loopback, proxyPort), uri, cancellationToken);

    /// <summary>A client WebSocket on a socket from <paramref name="newSocket"/> (e.g. made in a network namespace) connected to <paramref name="to"/>.</summary>
    public static async Task<ClientWebSocket> ConnectThroughAsync(Func<System.Net.Sockets.Socket> newSocket, IPEndPoint to, Uri uri, CancellationToken cancellationToken)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, token) =>
            {
                var socket = newSocket();
                socket.NoDelay = true;
                await socket.ConnectAsync(to, token);
                return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
            },
        };
        var client = new ClientWebSocket();
        client.Options.KeepAliveInterval = TimeSpan.Zero;
        await client.ConnectAsync(uri, new HttpMessageInvoker(handler, disposeHandler: true), cancellationToken);
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
