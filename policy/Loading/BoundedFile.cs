using System.Runtime.InteropServices;
using System.Text;

namespace BackendTls.Policy.Loading;

/// <summary>A file that was not read, with a sentence saying why.</summary>
public sealed class FileReadException(string message, bool notFound = false) : IOException(message)
{
    /// <summary>The file (or a folder on its path) does not exist.</summary>
    public bool NotFound { get; } = notFound;
}

/// <summary>
/// Reads a file only if it is a regular file of bounded size: a link to <c>/dev/zero</c> or a FIFO in a
/// mounted directory must not hang or exhaust the process. Also resolves where a path really leads, so a
/// CA file cannot be a link out of the directory the sidecar was told to read. Messages are our own words
/// (the AOT build strips the runtime's).
/// </summary>
public static partial class BoundedFile
{
    /// <summary>Config directory files (a ConfigMap holds at most 1 MiB; files written by hand may be larger).</summary>
    public const int MaxConfigFileBytes = 16 * 1024 * 1024;

    /// <summary>Manifests given to render or inject (a dump of 50,000 EndpointSlices is tens of MiB).</summary>
    public const int MaxManifestBytes = 256 * 1024 * 1024;

    public static string ReadText(string path, int maxBytes) => Encoding.UTF8.GetString(ReadBytes(path, maxBytes));

    /// <summary>The suffix of a gzip-compressed config file (the controller compresses what would not fit a ConfigMap).</summary>
    public const string GzipSuffix = ".gz";

    /// <summary>
    /// The text of <paramref name="path"/>, or of <paramref name="path"/>.gz decompressed; both bounded by
    /// <paramref name="maxBytes"/> (the decompressed size too: a small file must not inflate without end).
    /// </summary>
    /// <exception cref="FileReadException">Neither exists (NotFound), both exist, or either is unreadable, too large or not gzip.</exception>
    public static string ReadTextOrGzip(string path, int maxBytes)
    {
        var compressed = path + GzipSuffix;
        var plain = KindOf(path, out _) != Kind.Missing;
        if (KindOf(compressed, out _) == Kind.Missing)
        {
            return ReadText(path, maxBytes);
        }

        if (plain)
        {
            throw new FileReadException($"both {path} and {compressed} exist; keep one (the controller writes one or the other)");
        }

        using var input = new MemoryStream(ReadBytes(compressed, maxBytes));
        try
        {
            using var gzip = new System.IO.Compression.GZipStream(input, System.IO.Compression.CompressionMode.Decompress);
            var output = new MemoryStream();
            var chunk = new byte[81920];
            int read;
            while ((read = gzip.Read(chunk)) > 0)
            {
                if (output.Length + read > maxBytes)
                {
                    throw new FileReadException($"{compressed} decompresses to more than {maxBytes / (1024 * 1024)} MiB; refusing to read it");
                }

                output.Write(chunk, 0, read);
            }

            return Encoding.UTF8.GetString(output.GetBuffer(), 0, (int)output.Length);
        }
        catch (InvalidDataException)
        {
            throw new FileReadException($"{compressed} is not gzip data");
        }
    }

    /// <summary>Gzip as the controller writes it: the same input gives the same bytes (no timestamp), so unchanged content is no write.</summary>
    public static byte[] Gzip(string text)
    {
        var output = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(output, System.IO.Compression.CompressionLevel.SmallestSize, leaveOpen: true))
        {
            gzip.Write(Encoding.UTF8.GetBytes(text));
        }

        return output.ToArray();
    }

    /// <exception cref="FileReadException">Missing, not a regular file, unreadable or too large.</exception>
    public static byte[] ReadBytes(string path, int maxBytes)
    {
        var kind = KindOf(path, out var error);
        switch (kind)
        {
            case Kind.Missing:
                throw new FileReadException($"{path} does not exist", notFound: true);
            case Kind.Directory:
                throw new FileReadException($"{path} is a directory, not a file");
            case Kind.Other:
                throw new FileReadException($"{path} is not a regular file (a device, pipe or socket); refusing to read it");
            case Kind.Unknown:
                throw new FileReadException($"cannot read {path}: {error}");
        }

        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
            var buffer = new MemoryStream();
            var chunk = new byte[81920];
            int read;
            while ((read = stream.Read(chunk)) > 0)
            {
                if (buffer.Length + read > maxBytes)
                {
                    throw new FileReadException($"{path} is larger than {maxBytes / (1024 * 1024)} MiB; refusing to read it");
                }

                buffer.Write(chunk, 0, read);
            }

            return buffer.ToArray();
        }
        catch (FileNotFoundException)
        {
            throw new FileReadException($"{path} does not exist", notFound: true);
        }
        catch (DirectoryNotFoundException)
        {
            throw new FileReadException($"{path} does not exist", notFound: true);
        }
        catch (UnauthorizedAccessException)
        {
            throw new FileReadException($"{path}: permission denied");
        }
        catch (IOException e) when (e is not FileReadException)
        {
            throw new FileReadException($"cannot read {path} (I/O error {e.HResult & 0xFFFF})");
        }
    }

    /// <summary>Reads standard input (render -f -) with the same bound.</summary>
    public static string ReadText(TextReader reader, int maxChars)
    {
        var builder = new StringBuilder();
        var chunk = new char[81920];
        int read;
        while ((read = reader.Read(chunk, 0, chunk.Length)) > 0)
        {
            if (builder.Length + read > maxChars)
            {
                throw new FileReadException($"standard input is larger than {maxChars / (1024 * 1024)} MiB; refusing to read it");
            }

            builder.Append(chunk, 0, read);
        }

        return builder.ToString();
    }

    /// <summary>The absolute path with every link resolved (realpath(3)), or null when it does not exist.</summary>
    public static string? RealPath(string path)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return Path.GetFullPath(path);
        }

        var resolved = realpath(path, IntPtr.Zero);
        if (resolved == IntPtr.Zero)
        {
            return null;
        }

        try
        {
            return Marshal.PtrToStringUTF8(resolved);
        }
        finally
        {
            free(resolved);
        }
    }

    /// <summary>Whether <paramref name="path"/>, links followed, stays inside <paramref name="directory"/> (itself resolved).</summary>
    public static bool StaysInside(string path, string directory, out string? resolved)
    {
        resolved = RealPath(path);
        var root = RealPath(directory);
        if (resolved is null || root is null)
        {
            return true; // missing: reported as missing by the read
        }

        return resolved.StartsWith(root.TrimEnd('/') + "/", StringComparison.Ordinal);
    }

    private enum Kind
    {
        Regular,
        Directory,
        Other,
        Missing,
        Unknown,
    }

    private static Kind KindOf(string path, out string? error)
    {
        error = null;
        if (!OperatingSystem.IsLinux())
        {
            return File.Exists(path) ? Kind.Regular : Directory.Exists(path) ? Kind.Directory : Kind.Missing;
        }

        // statx has one layout on every Linux architecture; stx_mode is the u16 at offset 28.
        var buffer = new byte[256];
        if (statx(AtFdCwd, path, 0, StatxType, buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno is 2 or 20) // ENOENT, ENOTDIR
            {
                return Kind.Missing;
            }

            error = errno == 13 ? "permission denied" : $"error {errno}";
            return Kind.Unknown;
        }

        var mode = BitConverter.ToUInt16(buffer, 28) & 0xF000;
        return mode switch
        {
            0x8000 => Kind.Regular,
            0x4000 => Kind.Directory,
            _ => Kind.Other,
        };
    }

    private const int AtFdCwd = -100;
    private const uint StatxType = 0x1;

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int dirfd, string path, int flags, uint mask, [Out] byte[] buffer);

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr realpath(string path, IntPtr resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void free(IntPtr pointer);
}
