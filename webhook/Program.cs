using BackendTls.Webhook.Cli;
using BackendTls.Webhook.Hosting;

// Entry point: `serve` (default) runs the webhook; `inject` injects manifests offline.
var command = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "serve";
var rest = args.Length > 0 && !args[0].StartsWith('-') ? args[1..] : args;
if (args is ["--help"] or ["-h"] or ["help"])
{
    Console.WriteLine(WebhookOptions.Usage);
    return 0;
}

switch (command)
{
    case "serve":
        WebApplication app;
        try
        {
            app = WebhookHost.Build(WebhookOptions.Parse(rest, Environment.GetEnvironmentVariable));
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync($"backendtls-webhook: {e.Message}");
            return 2;
        }

        await using (app)
        {
            await app.RunAsync();
        }

        return 0;
    case "inject":
        return InjectCommand.Run(rest, Console.In, Console.Out, Console.Error);
    default:
        await Console.Error.WriteLineAsync($"backendtls-webhook: unknown command \"{command}\"\n\n{WebhookOptions.Usage}");
        return 2;
}
