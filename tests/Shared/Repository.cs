namespace BackendTls.Tests.Shared;

/// <summary>Where the repository (the folder with Sidecar.sln) and ../shared/reference are, from a test's output folder.</summary>
internal static class Repository
{
    public static string Root { get; } = Find();

    public static string Reference => Path.Combine(Root, "..", "shared", "reference");

    private static string Find()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Sidecar.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("Sidecar.sln not found above " + AppContext.BaseDirectory);
    }
}
