using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using System.Net.Security;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace BackendTls.Sidecar.Demo;

/// <summary>
/// A TLS backend on loopback that answers every request with what it saw: the SNI, the ALPN protocol,
/// the Host header and the path, like the Gateway API conformance echo server. Used by the demo and tests.
/// </summary>
internal sealed class EchoBackend : IAsyncDisposable
{
    private readonly WebApplication _app;

    private EchoBackend(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    public static async Task<EchoBackend> StartAsync(
        X509Certificate2 certificate,
        X509Certificate2Collection? chain = null,
        SslProtocols protocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        HttpProtocols httpProtocols = HttpProtocols.Http1AndHttp2,
        CipherSuitesPolicy? cipherSuites = null,
        Func<X509Certificate2?, bool>? acceptClientCertificate = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0, listen =>
            {
                listen.Protocols = httpProtocols;
                // The callback form serves any certificate as given (even a clientAuth-only one, which the
                // certificate form refuses), so tests can present broken certificates.
                var context = SslStreamCertificateContext.Create(certificate, chain ?? [], offline: true);
                List<SslApplicationProtocol> alpn = httpProtocols switch
                {
                    HttpProtocols.Http1 => [SslApplicationProtocol.Http11],
                    HttpProtocols.Http2 => [SslApplicationProtocol.Http2],
                    _ => [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
                };
                listen.UseHttps(new TlsHandshakeCallbackOptions
                {
                    OnConnection = _ => ValueTask.FromResult(new SslServerAuthenticationOptions
                    {
                        ServerCertificateContext = context,
                        EnabledSslProtocols = protocols,
                        ApplicationProtocols = alpn,
                        CipherSuitesPolicy = cipherSuites,
                        // Mutual TLS, as a backend that requires it: no certificate, or one refused, aborts the handshake.
                        ClientCertificateRequired = acceptClientCertificate is not null,
                        RemoteCertificateValidationCallback = acceptClientCertificate is null ? null
                            : (_, presented, _, _) => acceptClientCertificate(presented as X509Certificate2),
                    }),
                });
            });
        });
        var app = builder.Build();
        app.Run(EchoAsync);
        await app.StartAsync();
        var address = app.Urls.First();
        return new EchoBackend(app, new Uri(address).Port);
    }

    private static async Task EchoAsync(HttpContext context)
    {
        var tls = context.Features.Get<Microsoft.AspNetCore.Connections.Features.ITlsHandshakeFeature>();
        if (context.Request.Query.ContainsKey("close"))
        {
            context.Response.Headers.Connection = "close"; // the proxy must open a new connection next time
        }

        if (int.TryParse(context.Request.Query["delayMs"], out var delay))
        {
            await Task.Delay(delay, context.RequestAborted); // a slow backend, for drain tests
        }

        var body = context.Request.ContentLength is > 0 || context.Request.Headers.TransferEncoding.Count > 0
            ? await new StreamReader(context.Request.Body).ReadToEndAsync(context.RequestAborted)
            : string.Empty;
        context.Response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(context.Response.Body, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        // ITlsHandshakeFeature.HostName is only filled in with SNI-based certificate selection.
        json.WriteString("sni", context.Features.Get<ISslStreamFeature>()?.SslStream.TargetHostName);
        json.WriteString("tlsProtocol", tls?.Protocol.ToString());
        json.WriteString("clientCertificate", (context.Features.Get<ISslStreamFeature>()?.SslStream.RemoteCertificate as X509Certificate2)?.Subject);
        json.WriteString("cipherSuite", context.Features.Get<ISslStreamFeature>()?.SslStream.NegotiatedCipherSuite.ToString());
        json.WriteString("httpProtocol", context.Request.Protocol);
        json.WriteString("method", context.Request.Method);
        json.WriteString("host", context.Request.Host.Value);
        json.WriteString("path", context.Request.Path.Value + context.Request.QueryString.Value);
        json.WriteString("xForwardedFor", context.Request.Headers["X-Forwarded-For"].ToString());
        json.WriteString("xForwardedProto", context.Request.Headers["X-Forwarded-Proto"].ToString());
        json.WriteNumber("bodyLength", body.Length);
        json.WriteEndObject();
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
