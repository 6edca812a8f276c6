using BackendTls.Policy.Cli;
using BackendTls.Sidecar.Cli;
using BackendTls.Sidecar.Hosting;
using BackendTls.Sidecar.Tls;

// Entry point: pick the subcommand; each parses its own flags with the one FlagSet and says what is wrong.
const string Commands = """
    backendtls-sidecar [run] [flags]   proxy plain HTTP from the gateway to backends over verified TLS
    backendtls-sidecar render ...      turn BackendTLSPolicy manifests into a config directory
    backendtls-sidecar demo            run a self-contained demo on loopback (no cluster needed)
    backendtls-sidecar wait ...        exit 0 once the sidecar is ready (postStart hook)
    backendtls-sidecar capture-init    install the transparent-capture rules (init container, NET_ADMIN)
    backendtls-sidecar COMMAND --help  the flags of a command
    """;

var command = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "run";
var rest = args.Length > 0 && !args[0].StartsWith('-') ? args[1..] : args;
switch (command)
{
    case "run":
        SocketTuning.PreferInlineCompletions();
        // OpenSSL reads the system trust store on the first certificate chain build (~100 ms here): start
        // that now, in parallel with starting the host; readiness waits for it.
        _ = TrustStoreWarmup.Started;
        SidecarOptions options;
        try
        {
            options = SidecarOptions.Parse(rest, Environment.GetEnvironmentVariable);
        }
        catch (OptionsException e) when (e.HelpRequested)
        {
            Console.WriteLine(Commands + "\n" + SidecarOptions.Usage);
            return 0;
        }
        catch (OptionsException e)
        {
            await Console.Error.WriteLineAsync(string.Join("\n", e.Problems.Select(p => "backendtls-sidecar: " + p)) + "\n\n" + SidecarOptions.Usage);
            return 2;
        }

        try
        {
            await using var app = SidecarHost.Build(options);
            await app.RunAsync();
            return 0;
        }
        catch (IOException e)
        {
            // A port that cannot be bound: the message names the address and why, in our words.
            await Console.Error.WriteLineAsync($"backendtls-sidecar: {e.Message}; choose another port with --listen or --admin");
            return 1;
        }

    case "render":
        return RenderCommand.Run(rest, Console.In, Console.Out, Console.Error);
    case "demo":
        return await DemoCommand.RunAsync(rest, Console.Out, Console.Error);
    case "wait":
        return await WaitCommand.RunAsync(rest, Console.Out, Console.Error);
    case "capture-init":
        return await CaptureInitCommand.RunAsync(rest, Console.Out, Console.Error);
    case "help":
        Console.WriteLine(Commands);
        return 0;
    default:
        await Console.Error.WriteLineAsync($"backendtls-sidecar: unknown command \"{command}\"\n\n{Commands}");
        return 2;
}
