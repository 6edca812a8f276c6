using BackendTls.Sidecar.Demo;
using BackendTls.Sidecar.Hosting;
using BackendTls.Sidecar.Rendering;
using BackendTls.Sidecar.Tls;

// Entry point: pick the subcommand; each lives in its own folder.
var command = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "run";
var rest = args.Length > 0 && !args[0].StartsWith('-') ? args[1..] : args;
if (args is ["--help"] or ["-h"] or ["help"])
{
    Console.WriteLine(SidecarOptions.Usage);
    return 0;
}

switch (command)
{
    case "run":
        SidecarOptions options;
        // OpenSSL reads the system trust store on the first certificate chain build (~100 ms here): start
        // that now, in parallel with starting the host; readiness waits for it.
        _ = TrustStoreWarmup.Started;
        try
        {
            options = SidecarOptions.Parse(rest, Environment.GetEnvironmentVariable);
            await using var app = SidecarHost.Build(options);
            await app.RunAsync();
            return 0;
        }
        catch (OptionsException e)
        {
            await Console.Error.WriteLineAsync($"backendtls-sidecar: {e.Message}");
            return 2;
        }
        catch (IOException e) when (e.Message.Contains("bind", StringComparison.OrdinalIgnoreCase))
        {
            // Kestrel's message names the address; a stack trace would add nothing for the reader.
            await Console.Error.WriteLineAsync($"backendtls-sidecar: {e.Message} Choose another port with --listen/--admin.");
            return 1;
        }

    case "render":
        return RenderCommand.Run(rest, Console.In, Console.Out, Console.Error);
    case "demo":
        return await DemoCommand.RunAsync(rest, Console.Out);
    case "wait":
        return await WaitCommand.RunAsync(rest, Console.Error);
    default:
        await Console.Error.WriteLineAsync($"backendtls-sidecar: unknown command \"{command}\"\n\n{SidecarOptions.Usage}");
        return 2;
}
