using System.Text;
using BackendTls.Policy.Loading;
using BackendTls.Sidecar.Routing;
using BackendTls.Sidecar.Telemetry;
using BackendTls.Sidecar.Upstreams;

namespace BackendTls.Sidecar.Configuration;

/// <summary>Where the data path gets the current config from.</summary>
internal interface IProxySnapshotSource
{
    /// <summary>The last good config; null until one has loaded (then the sidecar is not ready).</summary>
    ProxySnapshot? Current { get; }

    LoadAttempt? LastAttempt { get; }
}

/// <summary>What the config store needs from the command line.</summary>
internal sealed record ConfigSettings(string ConfigDir, string ClusterDomain, TimeSpan PollInterval, UpstreamSettings Upstream);

/// <summary>
/// Loads the config directory at start and whenever it changes (file system events, plus polling
/// because events are unreliable on some volume types). A change is applied atomically by swapping
/// the snapshot; a broken or partial update keeps the last good one, and says why in logs, metrics and
/// readiness. Pools of unchanged targets are kept; replaced ones drain before they are disposed.
/// </summary>
internal sealed class ConfigStore : BackgroundService, IProxySnapshotSource
{
    private static readonly TimeSpan SettleDelay = TimeSpan.FromMilliseconds(50);

    private readonly ConfigSettings _settings;
    private readonly SidecarMetrics _metrics;
    private readonly ILogger _logger;
    private readonly ILogger _upstreamLogger;
    private readonly ConfigDirectory _directory;
    private readonly ConfigLoader _loader;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _changed = new(0, 1);
    private readonly Lock _reloadLock = new();
    private ProxySnapshot? _current;
    private LoadAttempt? _lastAttempt;
    private string? _lastStamp;
    private string? _lastErrorText;

    private readonly Action<string>? _alsoLoad;

    /// <param name="settings">Where and how often.</param>
    /// <param name="metrics">Reload metrics.</param>
    /// <param name="loggers">Loggers.</param>
    /// <param name="time">The clock.</param>
    /// <param name="alsoLoad">Called with each snapshot folder on every reload (the destination index lives in the same directory).</param>
    public ConfigStore(ConfigSettings settings, SidecarMetrics metrics, ILoggerFactory loggers, TimeProvider time, Action<string>? alsoLoad = null)
    {
        _alsoLoad = alsoLoad;
        _settings = settings;
        _metrics = metrics;
        _time = time;
        _logger = loggers.CreateLogger("BackendTls.Sidecar.Config");
        _upstreamLogger = loggers.CreateLogger("BackendTls.Sidecar.Upstream");
        _directory = new ConfigDirectory(settings.ConfigDir);
        _loader = new ConfigLoader(settings.ClusterDomain, time);
    }

    public ProxySnapshot? Current => Volatile.Read(ref _current);

    public LoadAttempt? LastAttempt => Volatile.Read(ref _lastAttempt);

    /// <summary>Raised after a new snapshot is in place (listeners bind new dedicated ports).</summary>
    public event Action<ProxySnapshot>? Changed;

    /// <summary>Loads now if the directory changed since the last look. Returns whether a load ran.</summary>
    public bool ReloadIfChanged()
    {
        lock (_reloadLock)
        {
            var stamp = Stamp();
            if (stamp == _lastStamp)
            {
                return false;
            }

            _lastStamp = stamp;
            try
            {
                Reload();
            }
            catch (Exception e)
            {
                // Whatever the input did, the last good config stays and the process keeps serving.
                Reject([$"{_directory.Path}: the config could not be loaded ({e.GetType().Name}: {e.Message}); this is a defect, please report it"]);
                Log.ReloadCrashed(_logger, e);
            }

            return true;
        }
    }

    private void Reload()
    {
        if (_alsoLoad is not null)
        {
            try
            {
                _alsoLoad(_directory.ResolveSnapshotFolder());
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Log.WatcherError(_logger, $"cannot read {_directory.Path} ({e.GetType().Name})");
            }
        }

        var outcome = _loader.Load(_directory);
        if (outcome.Config is not { } config)
        {
            Reject(outcome.Errors);
            return;
        }

        var now = _time.GetUtcNow();
        _lastErrorText = null;
        Volatile.Write(ref _lastAttempt, new LoadAttempt(now, true, []));
        _metrics.ConfigValid.Set(1);
        var previous = Current;
        if (previous?.Config.Fingerprint == config.Fingerprint)
        {
            _metrics.Reloads.WithLabels("unchanged").Inc();
            return;
        }

        Apply(config, previous, now);
        _metrics.Reloads.WithLabels("success").Inc();
        _metrics.LastReloadSuccess.Set(now.ToUnixTimeMilliseconds() / 1000.0);
    }

    private void Reject(IReadOnlyList<string> errors)
    {
        _metrics.Reloads.WithLabels("failure").Inc();
        _metrics.ConfigValid.Set(0);
        Volatile.Write(ref _lastAttempt, new LoadAttempt(_time.GetUtcNow(), false, errors));
        var errorText = string.Join(" | ", errors);
        if (errorText != _lastErrorText)
        {
            _lastErrorText = errorText;
            var action = Current is null ? "the sidecar stays not ready until it is fixed" : "keeping the last good config";
            Log.ConfigRejected(_logger, _directory.Path, action, errorText);
        }
    }

    private void Apply(LoadedConfig config, ProxySnapshot? previous, DateTimeOffset now)
    {
        foreach (var warning in config.Warnings)
        {
            Log.ConfigWarning(_logger, warning);
        }

        var reusable = previous?.Targets.ToDictionary(t => t.Config.Fingerprint, StringComparer.Ordinal) ?? [];
        var targets = new List<UpstreamTarget>(config.Targets.Count);
        foreach (var target in config.Targets)
        {
            if (reusable.Remove(target.Fingerprint, out var existing))
            {
                targets.Add(existing);
                continue;
            }

            targets.Add(new UpstreamTarget(target, _settings.Upstream, _metrics, _upstreamLogger));
            DescribeTarget(target);
        }

        var snapshot = new ProxySnapshot(config, targets, new TargetRouter(targets, _settings.ClusterDomain), now);
        Volatile.Write(ref _current, snapshot);
        Log.ConfigLoaded(_logger, config.Fingerprint, config.SourcePath, targets.Count);

        var liveIds = targets.Select(t => t.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var retired in reusable.Values)
        {
            retired.Retire();
            if (!liveIds.Contains(retired.Id))
            {
                _metrics.RemoveTarget(retired.Id);
            }
        }

        _metrics.Targets.WithLabels("verifying").Set(targets.Count(t => !t.IsFailClosed));
        _metrics.Targets.WithLabels("fail_closed").Set(targets.Count(t => t.IsFailClosed));
        Changed?.Invoke(snapshot);
    }

    private void DescribeTarget(LoadedTarget target)
    {
        if (target.Trust == TrustMode.FailClosed)
        {
            Log.TargetFailClosed(_logger, target.Id, target.FailClosedMessage);
            return;
        }

        var verify = target.SubjectAltNames.Count > 0
            ? "SAN " + string.Join(" or ", target.SubjectAltNames)
            : "hostname " + target.Hostname;
        var trust = target.Trust == TrustMode.System
            ? "system store"
            : string.Join(", ", target.CaBundles.Select(b => b.Source ?? b.File));
        Log.TargetConfigured(_logger, target.Id, target.Hostname, verify, trust, target.Tls.MinVersionText,
            target.Tls.MaxVersionText, target.Tls.AlpnText, target.Address);
    }

    /// <summary>A cheap fingerprint of the directory: the ..data target and each file's size and mtime.</summary>
    private string Stamp()
    {
        try
        {
            var folder = _directory.ResolveSnapshotFolder();
            var builder = new StringBuilder(folder);
            var files = new DirectoryInfo(folder).GetFiles();
            Array.Sort(files, (a, b) => string.CompareOrdinal(a.Name, b.Name));
            foreach (var file in files)
            {
                builder.Append('|').Append(file.Name).Append(':').Append(file.Length).Append(':').Append(file.LastWriteTimeUtc.Ticks);
            }

            return builder.ToString();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "unreadable:" + e.GetType().Name + ":" + _time.GetUtcNow().Ticks / TimeSpan.TicksPerMinute;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var watcher = CreateWatcher();
        using var poll = new PeriodicTimer(_settings.PollInterval, _time);
        var tick = poll.WaitForNextTickAsync(stoppingToken).AsTask();
        // One waiter on the change signal at a time: a new one per loop would leave the old ones
        // pending, and a file event would then wake an abandoned waiter instead of this loop.
        var signal = _changed.WaitAsync(stoppingToken);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var fired = await Task.WhenAny(tick, signal);
                if (fired == tick)
                {
                    if (!await tick)
                    {
                        return;
                    }

                    tick = poll.WaitForNextTickAsync(stoppingToken).AsTask();
                }
                else
                {
                    await signal;
                    signal = _changed.WaitAsync(stoppingToken);
                    // Let a burst of events (kubelet writes a folder, then swaps a link) settle.
                    await Task.Delay(SettleDelay, _time, stoppingToken);
                }

                ReloadIfChanged();
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private FileSystemWatcher? CreateWatcher()
    {
        if (!Directory.Exists(_directory.Path))
        {
            return null;
        }

        try
        {
            var watcher = new FileSystemWatcher(_directory.Path) { IncludeSubdirectories = false };
            watcher.Changed += (_, _) => Signal();
            watcher.Created += (_, _) => Signal();
            watcher.Deleted += (_, _) => Signal();
            watcher.Renamed += (_, _) => Signal();
            watcher.Error += (_, e) => Log.WatcherError(_logger, e.GetException().Message);
            watcher.EnableRaisingEvents = true;
            return watcher;
        }
        catch (Exception e) when (e is IOException or ArgumentException or PlatformNotSupportedException)
        {
            Log.WatcherError(_logger, e.Message);
            return null;
        }
    }

    /// <summary>Wakes the watch loop (file events, and tests).</summary>
    internal void Signal()
    {
        try
        {
            _changed.Release();
        }
        catch (SemaphoreFullException)
        {
            // A reload is already pending.
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        _changed.Dispose();
        foreach (var target in Current?.Targets ?? [])
        {
            target.Dispose();
        }
    }
}
