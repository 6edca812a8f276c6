using BackendTls.Policy.Cli;
using BackendTls.Webhook.Cli;
using BackendTls.Webhook.Hosting;

// Entry point: `serve` (default) runs the webhook; `inject` injects manifests offline.
var command = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "serve";
var rest = args.Length > 0 && !args[0].StartsWith('-') ? args[1..] : args;
switch (command)
{
    case "serve":
        WebhookOptions options;
        try
        {
            options = WebhookOptions.Parse(rest, Environment.GetEnvironmentVariable);
        }
        catch (OptionsException e) when (e.HelpRequested)
        {
            Console.WriteLine(WebhookOptions.Usage);
            return 0;
        }
        catch (OptionsException e)
        {
            await Console.Error.WriteLineAsync(string.Join("\n", e.Problems.Select(p => "backendtls-webhook: " + p)) + "\n\n" + WebhookOptions.Usage);
            return 2;
        }

        WebApplication app;
        try
        {
            app = WebhookHost.Build(options);
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync("backendtls-webhook: " + e.Message);
            return 2;
        }

        await using (app)
        {
            await app.RunAsync();
        }

        return 0;
    case "inject":
        return InjectCommand.Run(rest, Console.In, Console.Out, Console.Error);
    case "help":
        Console.WriteLine(WebhookOptions.Commands);
        return 0;
    default:
        await Console.Error.WriteLineAsync($"backendtls-webhook: unknown command \"{command}\"\n\n{WebhookOptions.Commands}");
        return 2;
}
