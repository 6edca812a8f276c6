using BackendTls.Webhook.Admin;
using BackendTls.Webhook.Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace BackendTls.Webhook.Tests.Certificates;

public sealed class FileCertificateSourceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("certs-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private FileCertificateSource Source(TimeProvider time) => new(Path.Combine(_dir, "tls.crt"), Path.Combine(_dir, "tls.key"),
        new WebhookMetrics(), time, NullLogger<FileCertificateSource>.Instance);

    [Fact]
    public void MissingFiles_NotReady_SaysWhich()
    {
        var source = Source(TimeProvider.System);

        source.Reload();

        Assert.Null(source.Current);
        Assert.Contains("tls.crt", source.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void BadUpdate_KeepsLastGood()
    {
        var bundle = ServingCertificates.CreateCaAndServing(["localhost"], DateTimeOffset.UtcNow);
        File.WriteAllText(Path.Combine(_dir, "tls.crt"), bundle.CertificatePem);
        File.WriteAllText(Path.Combine(_dir, "tls.key"), bundle.KeyPem);
        var source = Source(TimeProvider.System);
        Assert.True(source.Reload());
        var good = source.Current!.Thumbprint;

        File.WriteAllText(Path.Combine(_dir, "tls.key"), "garbage");
        source.Reload();

        Assert.Equal(good, source.Current!.Thumbprint);
        Assert.Null(source.Problem);
    }

    [Fact]
    public void Expired_NotReady()
    {
        var bundle = ServingCertificates.CreateCaAndServing(["localhost"], DateTimeOffset.UtcNow);
        File.WriteAllText(Path.Combine(_dir, "tls.crt"), bundle.CertificatePem);
        File.WriteAllText(Path.Combine(_dir, "tls.key"), bundle.KeyPem);
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var source = Source(time);
        source.Reload();

        time.Advance(ServingCertificates.ServingLifetime + TimeSpan.FromDays(1));

        Assert.Null(source.Current);
        Assert.Contains("expired", source.Problem, StringComparison.Ordinal);
    }
}
