using System.Net;
using BackendTls.Tests.Shared;
using BackendTls.Tests.Support;

namespace BackendTls.Tests.Functional;

/// <summary>A backend that only speaks TLS 1.0/1.1 (openssl s_server): the sidecar refuses with protocol_version.</summary>
public class LegacyTlsBackendTests
{
    [SkippableTheory]
    [InlineData("-tls1")]
    [InlineData("-tls1_1")]
    public async Task OldTlsOnlyBackend_ProtocolVersion(string version)
    {
        Skip.IfNot(ExternalProcess.OnPath("openssl"), "openssl is not installed");
        var certificates = await OpenSsl.TutorialCertificatesAsync(subjectAltName: "DNS:www.example.com");
        var (server, port) = await StartServerAsync(certificates, version);
        await using var _ = server;
        await using var sidecar = new SidecarFixture();
        await sidecar.StartForBackendAsync(port, File.ReadAllText(Path.Combine(certificates, "root.crt")), "www.example.com");

        using var response = await sidecar.GetAsync("www.example.com");

        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadGateway, body);
        Assert.True(response.Headers.GetValues("x-backendtls-error").Single() == "protocol_version", body);
        Assert.Contains("upgrade the backend to TLS 1.2", body, StringComparison.Ordinal);
    }

    /// <summary>s_server on a free port; another test may grab the port first, so a failed bind is retried.</summary>
    private static async Task<(ExternalProcess Server, int Port)> StartServerAsync(string certificates, string version)
    {
        for (var attempt = 1; ; attempt++)
        {
            var port = ExternalProcess.FreePort();
            // SECLEVEL=0: Debian's OpenSSL refuses TLS 1.0/1.1 even on the server side otherwise.
            var server = ExternalProcess.Start("openssl",
            [
                "s_server", "-accept", $"127.0.0.1:{port}", version, "-cipher", "DEFAULT@SECLEVEL=0", "-www", "-quiet",
                "-cert", Path.Combine(certificates, "httpbin.crt"), "-key", Path.Combine(certificates, "httpbin.key"),
            ]);
            try
            {
                await server.WaitForPortAsync(port);
                return (server, port);
            }
            catch (InvalidOperationException) when (attempt < 3)
            {
                await server.DisposeAsync();
            }
        }
    }
}
