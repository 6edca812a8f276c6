using System.Globalization;

namespace BackendTls.Sidecar.Hosting;

/// <summary>
/// <c>backendtls-sidecar wait [--url URL] [--timeout SECONDS]</c>: returns 0 once the sidecar's readiness
/// endpoint answers 200, 1 on timeout. The injector uses it as the sidecar's postStart hook when it cannot
/// use a native sidecar: kubelet then starts the gateway container only after the proxy is ready.
/// </summary>
internal static class WaitCommand
{
    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter error)
    {
        var url = "http://127.0.0.1:15090/healthz/ready";
        var timeout = TimeSpan.FromSeconds(60);
        for (var i = 0; i + 1 < args.Count; i += 2)
        {
            switch (args[i])
            {
                case "--url":
                    url = args[i + 1];
                    break;
                case "--timeout" when double.TryParse(args[i + 1], NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds > 0:
                    timeout = TimeSpan.FromSeconds(seconds);
                    break;
                default:
                    await error.WriteLineAsync($"wait: unexpected \"{args[i]} {args[i + 1]}\"; use --url URL --timeout SECONDS");
                    return 2;
            }
        }

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
