using BackendTls.Sidecar.Tls;

namespace BackendTls.Tests.Tls;

public class HostnameMatcherTests
{
    [Theory]
    [InlineData("www.example.com", "www.example.com", true)]
    [InlineData("WWW.Example.COM", "www.example.com", true)]
    [InlineData("www.example.com.", "www.example.com", true)]
    [InlineData("*.example.com", "www.example.com", true)]
    [InlineData("*.example.com", "a.b.example.com", false)] // one label only
    [InlineData("*.example.com", "example.com", false)]
    [InlineData("*.example.com", ".example.com", false)]
    [InlineData("*", "www.example.com", false)] // the tutorial's CN=* is no wildcard
    [InlineData("*", "*", false)]
    [InlineData("*.com", "example.com", false)] // too broad
    [InlineData("w*.example.com", "www.example.com", false)] // partial wildcards are not honoured
    [InlineData("www.*.com", "www.example.com", false)]
    [InlineData("*.*.example.com", "a.b.example.com", false)]
    [InlineData("other.example.com", "www.example.com", false)]
    [InlineData("example.com", "www.example.com", false)]
    [InlineData("", "www.example.com", false)]
    public void Matches_FollowsRfc6125(string presented, string reference, bool expected) =>
        Assert.Equal(expected, HostnameMatcher.Matches(presented, reference));

    [Theory]
    [InlineData("*.example.com", "*.example.com", true)] // a policy SAN that is itself a wildcard matches only as written
    [InlineData("www.example.com", "*.example.com", false)]
    [InlineData("*.example.com", "www.example.com", true)]
    public void MatchesPolicyName_TreatsWildcardPolicyNamesLiterally(string presented, string policyName, bool expected) =>
        Assert.Equal(expected, HostnameMatcher.MatchesPolicyName(presented, policyName));
}
