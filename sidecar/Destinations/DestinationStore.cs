using System.Text.Json;
using BackendTls.Policy.Destinations;
using BackendTls.Policy.Loading;
using BackendTls.Sidecar.Telemetry;

namespace BackendTls.Sidecar.Destinations;

/// <summary>Where the capture path gets the current destination table from, and learns of changes.</summary>
internal interface IDestinationSource
{
    DestinationTable Current { get; }

    /// <summary>Completes at the next change of the table (or at <paramref name="cancellationToken"/>).</summary>
    Task WaitForChangeAsync(CancellationToken cancellationToken);
}

/// <summary>
/// The destination index the capture listener looks original destinations up in. Loaded from
/// <c>destinations.json</c> in the config directory (written by render, and by the controller for the
/// policies' own Services); a file that does not parse keeps the last good table and says why.
/// </summary>
internal sealed class DestinationStore(SidecarMetrics metrics, ILogger<DestinationStore> logger) : IDestinationSource
{
    private DestinationTable _current = DestinationTable.Empty;
    private DestinationTable _fromFile = DestinationTable.Empty;
    private bool _watched;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private string? _lastFileHash; // a hash, not the text: the file can be megabytes

    public DestinationTable Current => Volatile.Read(ref _current);

    public async Task WaitForChangeAsync(CancellationToken cancellationToken) =>
        await Volatile.Read(ref _changed).Task.WaitAsync(cancellationToken);

    /// <summary>Reads the index file of a config snapshot folder, if it changed (called by the config store on every reload).</summary>
    public void LoadFrom(string folder)
    {
        var path = Path.Combine(folder, DestinationIndex.FileName);
        string text;
        try
        {
            text = BoundedFile.ReadTextOrGzip(path, BoundedFile.MaxConfigFileBytes);
        }
        catch (FileReadException e) when (e.NotFound)
        {
            text = string.Empty;
        }
        catch (FileReadException e)
        {
            Log.DestinationIndexRejected(logger, path, e.Message);
            return;
        }

        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)));
        if (hash == _lastFileHash)
        {
            return;
        }

        _lastFileHash = hash;
        if (text.Length == 0)
        {
            PublishFile(DestinationTable.Empty);
            return;
        }

        DestinationIndex? index;
        try
        {
            index = JsonSerializer.Deserialize(text, DestinationIndexJsonContext.Default.DestinationIndex);
        }
        catch (JsonException e)
        {
            Log.DestinationIndexRejected(logger, path, $"not a destination index: {(e.Path is { Length: > 1 } p ? p[2..] : "the document")} has the wrong kind of value");
            return;
        }

        if (index is not { Kind: DestinationIndex.IndexKind })
        {
            Log.DestinationIndexRejected(logger, path, $"kind is not {DestinationIndex.IndexKind}");
            return;
        }

        PublishFile(DestinationTable.Build(index));
    }

    /// <summary>The mounted file's table: in use until the live index has answered once.</summary>
    private void PublishFile(DestinationTable table)
    {
        _fromFile = table;
        if (!_watched)
        {
            Publish(table);
        }
    }

    /// <summary>The live index (the webhook's): from its first answer on, it is the table.</summary>
    public void PublishWatched(DestinationTable table)
    {
        _watched = true;
        Publish(table);
    }

    /// <summary>Swaps the table and wakes whoever waits for a change (held unknown destinations).</summary>
    private void Publish(DestinationTable table)
    {
        Volatile.Write(ref _current, table);
        metrics.DestinationIndexAddresses.Set(table.Addresses);
        Log.DestinationIndexLoaded(logger, table.Revision ?? "(file)", table.Services, table.Addresses);
        Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }
}
