namespace BackendTls.Policy.Loading;

/// <summary>
/// Reads a directory laid out as kubelet mounts a ConfigMap: the files live in a timestamped folder
/// behind the <c>..data</c> symlink, which kubelet swaps atomically. Resolving <c>..data</c> once and
/// reading everything from its target gives a consistent snapshot even if a swap happens meanwhile.
/// A plain directory (hand-written files) works too.
/// </summary>
public sealed class ConfigDirectory(string path)
{
    public const string DataLink = "..data";

    public string Path { get; } = System.IO.Path.GetFullPath(path);

    /// <summary>The folder to read a consistent snapshot from.</summary>
    public string ResolveSnapshotFolder()
    {
        var link = System.IO.Path.Combine(Path, DataLink);
        var info = new DirectoryInfo(link);
        if (info.Exists && info.LinkTarget is { } target)
        {
            return System.IO.Path.GetFullPath(System.IO.Path.Combine(Path, target));
        }

        return Path;
    }

    /// <summary>
    /// A file of the snapshot. Names are flat (ConfigMap keys), so a name with a path separator or
    /// <c>..</c> is refused rather than followed out of the directory.
    /// </summary>
    public static string? SafeFilePath(string snapshotFolder, string fileName)
    {
        if (fileName.Length == 0 || fileName.Contains('/', StringComparison.Ordinal)
            || fileName.Contains('\\', StringComparison.Ordinal) || fileName is "." or ".."
            || fileName.StartsWith("..", StringComparison.Ordinal))
        {
            return null;
        }

        return System.IO.Path.Combine(snapshotFolder, fileName);
    }
}
