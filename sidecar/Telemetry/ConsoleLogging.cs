namespace BackendTls.Sidecar.Telemetry;

/// <summary>Console logging as every command of the sidecar writes it: one line per event, JSON in containers.</summary>
internal static class ConsoleLogging
{
    public static void Add(ILoggingBuilder logging, string format)
    {
        if (format == "json")
        {
            logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            });
        }
        else
        {
            logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
        }
    }
}
