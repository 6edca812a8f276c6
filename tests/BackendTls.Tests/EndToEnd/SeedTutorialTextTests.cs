using BackendTls.Tests.Shared;

namespace BackendTls.Tests.EndToEnd;

/// <summary>The tests run the tutorial's own commands: this fails if the tutorial's text and ours drift apart.</summary>
public class SeedTutorialTextTests
{
    private static string Tutorial() =>
        File.ReadAllText(Path.Combine(Repository.Reference, "seed-backend-tls.md")).Replace("'", "", StringComparison.Ordinal).Replace("\"", "", StringComparison.Ordinal);

    [Fact]
    public void OpensslCommands_AreTheTutorialsVerbatim()
    {
        var tutorial = Tutorial();
        foreach (var command in OpenSsl.TutorialCommands)
        {
            Assert.Contains("openssl " + string.Join(' ', command), tutorial, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void PolicyFields_AreTheTutorials()
    {
        var tutorial = Tutorial();
        Assert.Contains("apiVersion: gateway.networking.k8s.io/v1alpha3", tutorial, StringComparison.Ordinal);
        Assert.Contains("hostname: www.example.com", tutorial, StringComparison.Ordinal);
        Assert.Contains("- name: httpbin-root-ca", tutorial, StringComparison.Ordinal);
        Assert.Contains("kind: Secret", tutorial, StringComparison.Ordinal);
    }
}
