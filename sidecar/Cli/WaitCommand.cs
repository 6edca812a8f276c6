using BackendTls.Policy.Cli;

namespace BackendTls.Sidecar.Cli;

/// <summary>
/// <c>backendtls-sidecar wait [--url URL] [--timeout SECONDS]</c>: returns 0 once the sidecar's readiness
/// endpoint answers 200, 1 on timeout. The injector uses it as the sidecar's postStart hook when it cannot
/// use a native sidecar: kubelet then starts the gateway container only after the proxy is ready.
/// </summary>
internal static class WaitCommand
{
    private static (FlagSet Set, Flag<Uri> Url, Flag<TimeSpan> Timeout) Flags()
    {
        var set = new FlagSet("wait", "backendtls-sidecar wait [flags]   exit 0 once the sidecar is ready (a postStart hook)");
        var url = set.Add("url", new Uri("http://127.0.0.1:15090/healthz/ready"), ParseUrl, "readiness URL", "URL");
        var timeout = set.Add("timeout", TimeSpan.FromSeconds(60), FlagValues.Seconds(), "give up after", "SECONDS");
        return (set, url, timeout);
    }

    private static (Uri, string?) ParseUrl(string value) =>
        Uri.TryCreate(value, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
            ? (uri, null)
            : (new Uri("http://invalid"), "is not an http(s) URL");

    public static string Usage => Flags().Set.Usage;

    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter output, TextWriter error)
    {
        var (set, urlFlag, timeoutFlag) = Flags();
        var problems = set.Parse(args, _ => null);
        if (set.HelpRequested)
        {
            await output.WriteLineAsync(set.Usage);
            return 0;
        }

        if (problems.Count > 0)
        {
            await error.WriteLineAsync(string.Join("\n", problems.Select(p => "wait: " + p)) + "\n\n" + set.Usage);
            return 2;
        }

        var url = urlFlag.Value;
        var timeout = timeoutFlag.Value;
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(1) };
        using var deadline = new CancellationTokenSource(timeout);
        while (!deadline.IsCancellationRequested)
        {
            try
            {
                using var response = await client.GetAsync(url, deadline.Token);
                if (response.IsSuccessStatusCode)
                {
                    return 0;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // not listening yet
            }

            try
            {
                await Task.Delay(100, deadline.Token);
            }
            catch (TaskCanceledException)
            {
                break;
            }
        }

        await error.WriteLineAsync($"wait: {url} did not become ready within {timeout.TotalSeconds:0}s");
        return 1;
    }
}
