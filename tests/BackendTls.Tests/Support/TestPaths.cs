using BackendTls.Tests.Shared;

namespace BackendTls.Tests.Support;

/// <summary>Locations of the repository and the shared reference material the tests read.</summary>
internal static class TestPaths
{
    public static string RepositoryRoot => Repository.Root;

    /// <summary><c>../shared/reference</c> beside the repository (present on CI and developer machines).</summary>
    public static string Reference => Repository.Reference;
}
