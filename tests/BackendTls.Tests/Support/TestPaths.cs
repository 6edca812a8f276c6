namespace BackendTls.Tests.Support;

/// <summary>Locations of the repository and the shared reference material the tests read.</summary>
internal static class TestPaths
{
    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary><c>../shared/reference</c> beside the repository (present on CI and developer machines).</summary>
    public static string Reference => Path.Combine(RepositoryRoot, "..", "shared", "reference");

    private static string FindRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Sidecar.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("Sidecar.sln not found above " + AppContext.BaseDirectory);
    }
}
