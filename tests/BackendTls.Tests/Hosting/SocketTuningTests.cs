using BackendTls.Sidecar.Hosting;

namespace BackendTls.Tests.Hosting;

/// <summary>The inline-completions default, and that an operator's own value wins. Restores the variable.</summary>
public sealed class SocketTuningTests
{
    [Theory]
    [InlineData(null, "1")]
    [InlineData("0", "0")]
    [InlineData("1", "1")]
    public void PreferInlineCompletions_SetsOnlyWhatTheOperatorLeftUnset(string? operatorValue, string expected)
    {
        var saved = Environment.GetEnvironmentVariable(SocketTuning.InlineCompletionsVariable);
        try
        {
            Environment.SetEnvironmentVariable(SocketTuning.InlineCompletionsVariable, operatorValue);
            SocketTuning.PreferInlineCompletions();
            Assert.Equal(expected, Environment.GetEnvironmentVariable(SocketTuning.InlineCompletionsVariable));
        }
        finally
        {
            Environment.SetEnvironmentVariable(SocketTuning.InlineCompletionsVariable, saved);
        }
    }
}
