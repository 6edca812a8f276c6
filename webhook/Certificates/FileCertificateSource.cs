using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using BackendTls.Webhook.Admin;

namespace BackendTls.Webhook.Certificates;

/// <summary>
/// Serves the certificate from PEM files (a mounted kubernetes.io/tls Secret, e.g. from cert-manager)
/// and picks up rotations without a restart: the files are re-read when their content changes. A bad
/// update keeps the last good certificate; an expired one makes the webhook not ready.
/// </summary>
internal sealed partial class FileCertificateSource(
    string certificatePath,
    string keyPath,
    WebhookMetrics metrics,
    TimeProvider time,
    ILogger<FileCertificateSource> logger) : BackgroundService, ICertificateSource
{
    private X509Certificate2? _current;
    private string? _problem = "not loaded yet";
    private string? _stamp;

    public X509Certificate2? Current
    {
        get
        {
            var current = Volatile.Read(ref _current);
            return current is not null && current.NotAfter.ToUniversalTime() > time.GetUtcNow().UtcDateTime ? current : null;
        }
    }

    public string? Problem => Current is null ? (Volatile.Read(ref _current) is { } expired ? $"the serving certificate expired at {expired.NotAfter.ToUniversalTime():u}" : _problem) : null;

    /// <summary>Loads if the files changed; returns whether a new certificate is in use.</summary>
    public bool Reload()
    {
        string certificatePem;
        string keyPem;
        try
        {
            certificatePem = File.ReadAllText(certificatePath);
            keyPem = File.ReadAllText(keyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Fail($"cannot read {certificatePath} / {keyPath}: {e.Message}");
        }

        var stamp = Convert.ToHexString(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(certificatePem + keyPem)));
        if (stamp == _stamp)
        {
            return false;
        }

        try
        {
            using var loaded = X509Certificate2.CreateFromPem(certificatePem, keyPem);
            // Re-import so the key is usable by SslStream on every platform.
            var certificate = X509CertificateLoader.LoadPkcs12(loaded.Export(X509ContentType.Pkcs12), null);
            _stamp = stamp;
            Volatile.Write(ref _current, certificate);
            _problem = null;
            metrics.CertificateReloads.WithLabels("success").Inc();
            metrics.CertificateExpiry.Set(new DateTimeOffset(certificate.NotAfter.ToUniversalTime()).ToUnixTimeSeconds());
            LogLoaded(logger, certificate.Subject, certificate.NotAfter.ToUniversalTime());
            return true;
        }
        catch (CryptographicException e)
        {
            _stamp = stamp;
            return Fail($"{certificatePath} / {keyPath} are not a PEM certificate and matching private key: {e.Message}");
        }
    }

    private bool Fail(string problem)
    {
        _problem = Volatile.Read(ref _current) is null ? problem : problem + " (still serving the previous certificate)";
        metrics.CertificateReloads.WithLabels("failure").Inc();
        LogFailed(logger, problem);
        return false;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(5), time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            Reload();
        }
    }

    [LoggerMessage(20, LogLevel.Information, "Serving certificate loaded: {Subject}, expires {NotAfter:u}", EventName = "CertificateLoaded")]
    private static partial void LogLoaded(ILogger logger, string subject, DateTime notAfter);

    [LoggerMessage(21, LogLevel.Error, "Serving certificate not loaded: {Problem}", EventName = "CertificateFailed")]
    private static partial void LogFailed(ILogger logger, string problem);
}
