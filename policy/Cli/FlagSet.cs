using System.Globalization;
using System.Net;
using System.Text;

namespace BackendTls.Policy.Cli;

/// <summary>One command-line flag: its name, help, default, and where its value came from.</summary>
public abstract class Flag
{
    private protected Flag(string name, string? shortName, string valueName, string help, string? defaultText, bool repeatable)
    {
        Name = name;
        ShortName = shortName;
        ValueName = valueName;
        Help = help;
        DefaultText = defaultText;
        Repeatable = repeatable;
    }

    public string Name { get; }

    public string? ShortName { get; }

    public string ValueName { get; }

    public string Help { get; }

    public string? DefaultText { get; }

    public bool Repeatable { get; }

    /// <summary>Given on the command line or in the environment.</summary>
    public bool IsSet { get; private protected set; }

    internal abstract void Reset();

    /// <summary>Takes one value; returns a sentence saying what is wrong with it, or null.</summary>
    internal abstract string? Accept(string value);
}

/// <summary>A flag whose values parse to <typeparamref name="T"/>.</summary>
public sealed class Flag<T> : Flag
{
    private readonly Func<string, (T Value, string? Problem)> _parse;
    private readonly T _default;
    private readonly List<T> _values = [];

    internal Flag(string name, string? shortName, string valueName, string help, T defaultValue, string? defaultText, bool repeatable, Func<string, (T, string?)> parse)
        : base(name, shortName, valueName, help, defaultText, repeatable)
    {
        _default = defaultValue;
        _parse = parse;
    }

    /// <summary>The last value given, or the default.</summary>
    public T Value => _values.Count > 0 ? _values[^1] : _default;

    /// <summary>Every value given (repeatable flags).</summary>
    public IReadOnlyList<T> Values => _values;

    internal override void Reset()
    {
        _values.Clear();
        IsSet = false;
    }

    internal override string? Accept(string value)
    {
        var (parsed, problem) = _parse(value);
        if (problem is not null)
        {
            return problem;
        }

        if (!Repeatable)
        {
            _values.Clear();
        }

        _values.Add(parsed);
        IsSet = true;
        return null;
    }
}

/// <summary>
/// The flags of one command, from which both parsing and the usage text come: <c>--name value</c>,
/// <c>--name=value</c>, <c>-n value</c>, and (with a prefix) <c>PREFIX_NAME</c> environment variables under
/// the flags. Every problem is collected, so a user fixes a command line in one go. Used by every command
/// of both programs, so they all read flags the same way.
/// </summary>
public sealed class FlagSet(string command, string synopsis, string? environmentPrefix = null)
{
    private readonly List<Flag> _flags = [];

    public string Command { get; } = command;

    public IReadOnlyList<Flag> Flags => _flags;

    public Flag<T> Add<T>(string name, T defaultValue, Func<string, (T, string?)> parse, string help,
        string valueName = "VALUE", string? shortName = null, bool repeatable = false, string? defaultText = null)
    {
        var flag = new Flag<T>(name, shortName, valueName, help, defaultValue, defaultText ?? DefaultTextOf(defaultValue), repeatable, parse);
        _flags.Add(flag);
        return flag;
    }

    private static string? DefaultTextOf<T>(T value) => value switch
    {
        null => null,
        string { Length: 0 } => null,
        TimeSpan span => span.TotalSeconds.ToString(CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        System.Collections.IEnumerable and not string => null,
        _ => Convert.ToString(value, CultureInfo.InvariantCulture),
    };

    public bool HelpRequested { get; private set; }

    /// <summary>Reads the environment, then the arguments over it. Returns every problem found (empty when all is well).</summary>
    public IReadOnlyList<string> Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        var errors = new List<string>();
        HelpRequested = false;
        foreach (var flag in _flags)
        {
            flag.Reset();
        }

        if (environmentPrefix is not null)
        {
            foreach (var flag in _flags)
            {
                var variable = environmentPrefix + flag.Name.Replace('-', '_').ToUpperInvariant();
                if (environment(variable) is not { Length: > 0 } text)
                {
                    continue;
                }

                var values = flag.Repeatable ? text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : [text];
                foreach (var value in values)
                {
                    if (flag.Accept(value) is { } problem)
                    {
                        errors.Add($"{variable}=\"{value}\" {problem}");
                    }
                }
            }
        }

        // Flags override the environment: a flag given on the command line replaces what the environment set.
        var fromArgs = new HashSet<Flag>();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (arg is "-h" or "--help" or "help")
            {
                HelpRequested = true;
                continue;
            }

            string name;
            string? inline = null;
            Flag? flag;
            if (arg.StartsWith("--", StringComparison.Ordinal) && arg.Length > 2)
            {
                name = arg[2..];
                var equals = name.IndexOf('=', StringComparison.Ordinal);
                if (equals >= 0)
                {
                    inline = name[(equals + 1)..];
                    name = name[..equals];
                }

                flag = _flags.FirstOrDefault(f => f.Name == name);
            }
            else if (arg.Length == 2 && arg[0] == '-' && arg[1] != '-')
            {
                name = arg[1..];
                flag = _flags.FirstOrDefault(f => f.ShortName == name);
            }
            else
            {
                errors.Add($"unexpected argument \"{arg}\"; flags look like --name value");
                continue;
            }

            if (flag is null)
            {
                errors.Add($"unknown flag {arg.Split('=')[0]}{Suggest(name)}");
                if (inline is null && i + 1 < args.Count && !args[i + 1].StartsWith('-'))
                {
                    i++; // skip its value, so it is not reported as a stray argument too
                }

                continue;
            }

            var value = inline;
            if (value is null)
            {
                if (i + 1 >= args.Count)
                {
                    errors.Add($"{arg} needs a value ({flag.ValueName})");
                    continue;
                }

                value = args[++i];
            }

            if (fromArgs.Add(flag) && flag.Repeatable)
            {
                flag.Reset(); // the command line replaces a list from the environment
            }

            if (flag.Accept(value) is { } problem)
            {
                errors.Add($"--{flag.Name} \"{value}\" {problem}");
            }
        }

        return errors;
    }

    private string Suggest(string name)
    {
        var close = _flags.FirstOrDefault(f => f.Name.Contains(name, StringComparison.Ordinal) || name.Contains(f.Name, StringComparison.Ordinal));
        return close is null ? "; see --help" : $"; did you mean --{close.Name}?";
    }

    /// <summary>The usage text: the synopsis, then one line per flag with its default.</summary>
    public string Usage
    {
        get
        {
            var text = new StringBuilder(synopsis.TrimEnd()).Append('\n');
            if (_flags.Count == 0)
            {
                return text.ToString();
            }

            text.Append('\n').Append(Command).Append(" flags");
            if (environmentPrefix is not null)
            {
                text.Append(" (or environment variables ").Append(environmentPrefix).Append("<NAME>, - as _)");
            }

            text.Append(":\n");
            var lines = _flags.Select(f => ((f.ShortName is null ? "    " : $"-{f.ShortName}, ") + $"--{f.Name} {f.ValueName}", f)).ToList();
            var width = Math.Min(lines.Max(l => l.Item1.Length), 34) + 2;
            foreach (var (left, flag) in lines)
            {
                text.Append("  ").Append(left.PadRight(width)).Append(flag.Help);
                if (flag.DefaultText is { } value)
                {
                    text.Append(" [").Append(value).Append(']');
                }

                if (flag.Repeatable)
                {
                    text.Append(" (repeatable)");
                }

                text.Append('\n');
            }

            return text.ToString();
        }
    }
}

/// <summary>Value parsers for flags; each returns the value, or a phrase saying what a valid one looks like.</summary>
public static class FlagValues
{
    public static (string, string?) Text(string value) =>
        value.Trim().Length == 0 ? (value, "is empty") : (value, null);

    public static Func<string, (TimeSpan, string?)> Seconds(bool allowZero = false, double max = 86400) => value =>
        double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && (seconds > 0 || (allowZero && seconds == 0)) && seconds <= max
            ? (TimeSpan.FromSeconds(seconds), null)
            : (default, $"is not a number of seconds ({(allowZero ? "0" : "above 0")} to {max.ToString(CultureInfo.InvariantCulture)})");

    public static (bool, string?) Bool(string value) => value switch
    {
        "true" or "True" or "1" => (true, null),
        "false" or "False" or "0" => (false, null),
        _ => (false, "is not true or false"),
    };

    public static Func<string, (string, string?)> OneOf(params string[] choices) => value =>
        choices.Contains(value, StringComparer.Ordinal) ? (value, null) : (value, $"is not valid; use {string.Join(", ", choices[..^1])} or {choices[^1]}");

    public static Func<string, (int, string?)> WholeNumber(int min, int max) => value =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number >= min && number <= max
            ? (number, null)
            : (0, $"is not a whole number from {min} to {max}");

    /// <summary>ADDR:PORT with an IP address (IPv6 in brackets), or localhost:PORT.</summary>
    public static (IPEndPoint, string?) Endpoint(string value)
    {
        if (IPEndPoint.TryParse(value, out var endpoint) && endpoint.Port is > 0 and <= 65535 && value.Contains(':', StringComparison.Ordinal))
        {
            return (endpoint, null);
        }

        if (value.StartsWith("localhost:", StringComparison.Ordinal)
            && int.TryParse(value.AsSpan(10), NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and <= 65535)
        {
            return (new IPEndPoint(IPAddress.Loopback, port), null);
        }

        return (new IPEndPoint(IPAddress.None, 0), "is not ADDR:PORT (an IP address and a port, e.g. 127.0.0.1:15001)");
    }
}

/// <summary>A bad command line or environment setting: every problem found, one per line.</summary>
public sealed class OptionsException(IReadOnlyList<string> problems, bool helpRequested = false) : Exception(string.Join("\n", problems))
{
    public IReadOnlyList<string> Problems { get; } = problems;

    /// <summary>--help was given: print the usage and exit 0.</summary>
    public bool HelpRequested { get; } = helpRequested;
}
