namespace BackendTls.Tests.Shared;

/// <summary>
/// Waits for a condition by polling it (bounded), and fails with what it last saw, never quietly: the one
/// way tests wait for something to happen.
/// </summary>
internal static class Eventually
{
    /// <summary>Polls until <paramref name="check"/> reports success; on timeout the test fails with its last observation.</summary>
    /// <param name="check">Returns whether the condition holds and what was seen (for the failure message).</param>
    /// <param name="what">What is awaited, for the failure message.</param>
    /// <param name="timeout">How long at most (10 s by default).</param>
    public static async Task<string> HoldsAsync(Func<Task<(bool Holds, string Seen)>> check, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        var seen = "(nothing yet)";
        while (true)
        {
            try
            {
                (var holds, seen) = await check();
                if (holds)
                {
                    return seen;
                }
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                seen = $"{e.GetType().Name}: {e.Message}";
            }

            if (DateTime.UtcNow >= deadline)
            {
                throw new Xunit.Sdk.XunitException($"timed out after {(timeout ?? TimeSpan.FromSeconds(10)).TotalSeconds:0.#} s waiting for {what}; last seen: {seen}");
            }

            await Task.Delay(50);
        }
    }
}
