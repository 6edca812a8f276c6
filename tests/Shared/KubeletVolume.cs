namespace BackendTls.Tests.Shared;

/// <summary>
/// Writes files the way kubelet updates a ConfigMap volume: into a new timestamped folder, then an atomic
/// rename of a new <c>..data</c> symlink over the old one; the visible names are symlinks through <c>..data</c>.
/// </summary>
internal static partial class KubeletVolume
{
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "rename", SetLastError = true, StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int Rename(string oldPath, string newPath);

    public static void Publish(string directory, IReadOnlyDictionary<string, string> files)
    {
        var version = $"..{DateTime.UtcNow:yyyy_MM_dd_HH_mm_ss.fffffff}";
        var folder = Path.Combine(directory, version);
        Directory.CreateDirectory(folder);
        foreach (var (name, content) in files)
        {
            File.WriteAllText(Path.Combine(folder, name), content);
        }

        var data = Path.Combine(directory, "..data");
        var previous = Directory.Exists(data) ? new DirectoryInfo(data).LinkTarget : null;
        var temporary = Path.Combine(directory, "..data_tmp");
        File.CreateSymbolicLink(temporary, version);
        // rename(2) swaps the link atomically (File.Move refuses links to directories).
        if (Rename(temporary, data) != 0)
        {
            throw new IOException($"rename {temporary} -> {data} failed: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        }
        foreach (var name in files.Keys)
        {
            var link = Path.Combine(directory, name);
            if (!File.Exists(link) && new FileInfo(link).LinkTarget is null)
            {
                File.CreateSymbolicLink(link, Path.Combine("..data", name));
            }
        }

        if (previous is not null)
        {
            Directory.Delete(Path.Combine(directory, previous), recursive: true);
        }
    }
}
