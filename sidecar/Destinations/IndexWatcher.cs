using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using BackendTls.Policy.Destinations;
using BackendTls.Policy.Loading;
using BackendTls.Policy.Validation;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Telemetry;

namespace BackendTls.Sidecar.Destinations;

/// <summary>Where the live destination index comes from (flags).</summary>
internal sealed record IndexWatchSettings(Uri Url, string TokenFile, string CaFile);

/// <summary>What readiness needs to know of the live index.</summary>
internal interface IIndexStatus
{
    /// <summary>Whether readiness may stop waiting: the index answered once, or waiting longer would only delay the pod.</summary>
    bool SettledForReadiness { get; }

    /// <summary>Why the index is not followed right now (null: it is, or there is none to follow).</summary>
    string? Problem { get; }

    bool Watched { get; }
}

/// <summary>No live index configured (explicit mode, the offline flow): nothing to wait for.</summary>
internal sealed class NoIndex : IIndexStatus
{
    public bool SettledForReadiness => true;

    public string? Problem => null;

    public bool Watched => false;
}

/// <summary>
/// Follows the webhook's destination index (<c>GET /index/v1</c>, long-polled): a full index first, then
/// what changed, so a new endpoint reaches the capture listener about as soon as its EndpointSlice changes.
/// Authenticated with the pod's projected service-account token (re-read on every request: kubelet rotates
/// it); the webhook's certificate is checked against <c>index-ca.crt</c> of the config directory. The files
/// are the bootstrap and the fallback: until the first answer, and while the webhook cannot be reached, the
/// last index (watched or mounted) stays in use.
/// </summary>
/// <remarks>
/// Readiness waits for the first answer (the mounted file names only the policy targets' ClusterIPs, not
/// their endpoints) for at most <see cref="ReadinessWait"/>: past that the sidecar is ready anyway and fails
/// closed on what it does not know, rather than holding the gateway's start on the webhook.
/// </remarks>
internal sealed partial class IndexWatcher(IndexWatchSettings settings, DestinationStore store, SidecarMetrics metrics, TimeProvider time, ILogger<IndexWatcher> logger)
    : BackgroundService, IIndexStatus
{
    public static readonly TimeSpan ReadinessWait = TimeSpan.FromSeconds(10);
    private readonly DateTimeOffset _started = time.GetUtcNow();
    private volatile bool _answered;
    private readonly Dictionary<string, ServiceDestinations> _services = new(StringComparer.Ordinal);
    private string? _epoch;
    private long _revision;
    private volatile string? _lastProblem;
    private string? _certificateProblem;

    public bool SettledForReadiness => _answered || time.GetUtcNow() - _started >= ReadinessWait;

    public string? Problem => _lastProblem;

    public bool Watched => _answered && _lastProblem is null;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(2),
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = ValidateWebhook },
        };
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(60) };
        var backoff = TimeSpan.FromSeconds(1);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (!File.Exists(settings.CaFile))
                {
                    throw new IOException($"{settings.CaFile} does not exist (the controller writes the webhook's CA there as {Path.GetFileName(settings.CaFile)}); the mounted destination index stays in use");
                }

                var token = (await File.ReadAllTextAsync(settings.TokenFile, stoppingToken)).Trim();
                using var request = new HttpRequestMessage(HttpMethod.Get, $"{settings.Url}?wait=true&epoch={Uri.EscapeDataString(_epoch ?? string.Empty)}&since={_revision}");
                request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
                using var response = await client.SendAsync(request, stoppingToken);
                if (!response.IsSuccessStatusCode)
                {
                    throw new IOException($"the index answered {(int)response.StatusCode}: {(await response.Content.ReadAsStringAsync(stoppingToken)).Trim()}");
                }

                var update = await JsonSerializer.DeserializeAsync(await response.Content.ReadAsStreamAsync(stoppingToken),
                    DestinationUpdateJsonContext.Default.DestinationUpdate, stoppingToken) ?? throw new IOException("the index answered nothing");
                Apply(update);
                _answered = true;
                metrics.DestinationIndexWatchConnected.Set(1);
                if (_lastProblem is not null)
                {
                    Log.IndexWatchRecovered(logger, settings.Url.ToString());
                    _lastProblem = null;
                }

                backoff = TimeSpan.FromSeconds(1);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is IOException or HttpRequestException or JsonException or UnauthorizedAccessException or TaskCanceledException)
            {
                metrics.DestinationIndexWatchConnected.Set(0);
                var problem = e is HttpRequestException && _certificateProblem is { } certificate
                    ? $"the webhook's certificate was refused: {certificate}"
                    : e is HttpRequestException http ? SocketErrorText.Describe(http) : e.Message;
                _certificateProblem = null;
                if (problem != _lastProblem)
                {
                    Log.IndexWatchFailed(logger, settings.Url.ToString(), problem, backoff.TotalSeconds);
                    _lastProblem = problem;
                }

                await Task.Delay(backoff, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
            }
        }
    }

    private void Apply(DestinationUpdate update)
    {
        var changed = update.Full || update.Services.Count > 0 || update.Removed.Count > 0 || update.Epoch != _epoch;
        if (update.Full)
        {
            _services.Clear();
        }

        foreach (var removed in update.Removed)
        {
            _services.Remove(removed);
        }

        foreach (var service in update.Services)
        {
            _services[$"{service.Namespace}/{service.Name}"] = service;
        }

        _epoch = update.Epoch;
        _revision = update.Revision;
        if (changed)
        {
            store.PublishWatched(DestinationTable.Build(new DestinationIndex { Revision = $"{_epoch}:{_revision}", Services = [.. _services.Values] }));
        }
    }

    /// <summary>The webhook's certificate must chain to index-ca.crt and name the URL's host.</summary>
    private bool ValidateWebhook(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        _certificateProblem = Refusal(certificate, errors);
        return _certificateProblem is null;
    }

    private string? Refusal(X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (certificate is not X509Certificate2 leaf)
        {
            return "it sent none";
        }

        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return $"it does not name {settings.Url.Host}";
        }

        X509Certificate2Collection? anchors;
        try
        {
            anchors = CaBundle.Parse(BoundedFile.ReadText(settings.CaFile, BoundedFile.MaxConfigFileBytes), out var problem);
            if (anchors is null)
            {
                return $"{settings.CaFile}: {problem}";
            }
        }
        catch (FileReadException e)
        {
            return e.Message;
        }

        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(anchors);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return custom.Build(leaf)
            ? null
            : $"it does not chain to {settings.CaFile} ({string.Join(", ", custom.ChainStatus.Select(s => s.Status))})";
    }
}
