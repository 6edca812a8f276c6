using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace BackendTls.Tests.Shared;

/// <summary>Where a test's own TLS server listens: a loopback port, or a listening socket made elsewhere (a network namespace).</summary>
internal static class TlsListener
{
    public static void Listen(KestrelServerOptions kestrel, X509Certificate2 certificate, HttpProtocols protocols, Socket? listening)
    {
        void Tls(ListenOptions listen)
        {
            listen.Protocols = protocols;
            listen.UseHttps(new HttpsConnectionAdapterOptions { ServerCertificate = certificate });
        }

        if (listening is null)
        {
            kestrel.Listen(IPAddress.Loopback, 0, Tls);
        }
        else
        {
            kestrel.ListenHandle((ulong)listening.Handle, Tls);
        }
    }

    /// <summary>The port the started server listens on.</summary>
    public static int PortOf(WebApplication app, Socket? listening) =>
        listening is null ? new Uri(app.Urls.First()).Port : ((IPEndPoint)listening.LocalEndPoint!).Port;
}
