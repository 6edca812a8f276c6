using System.Globalization;
using System.Text.Json.Nodes;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace BackendTls.Policy.Yaml;

/// <summary>
/// Converts between YAML and <see cref="JsonNode"/>. Kubernetes manifests and our config file are read
/// through this so the rest of the code works on one tree type, without reflection (AOT-safe).
/// Reading is bounded, because one file can come from anyone who can write a ConfigMap: at most
/// <see cref="MaxDepth"/> levels of nesting and <see cref="MaxNodes"/> nodes, aliases counted as the
/// nodes they expand to (a "billion laughs" file fails fast instead of eating memory). The tree is built
/// from YamlDotNet's event stream, so no recursion depends on the input.
/// </summary>
public static partial class YamlDocuments
{
    /// <summary>Deeper than any Kubernetes object or CRD schema we read (the config file needs 6).</summary>
    public const int MaxDepth = 48;

    /// <summary>Room for 50,000 endpoints and 5,000 targets with a wide margin (that is about 1 million nodes).</summary>
    public const long MaxNodes = 8_000_000;

    /// <summary>Parses every document of a (multi-document) YAML or JSON text. Empty documents are skipped.</summary>
    /// <param name="text">The YAML.</param>
    /// <param name="sourceName">For messages.</param>
    /// <param name="typedScalars">
    /// False (policy and config reading): every scalar is a string, so <c>min-tls-version: 1.3</c> stays "1.3".
    /// True (manifests written back out): plain scalars get their YAML types (int, float, bool, null; a
    /// leading-zero integer is octal, as kubectl reads it), so the output keeps <c>containerPort: 80</c> a number.
    /// </param>
    /// <exception cref="YamlFormatException">Not valid YAML, or over a limit; the message has line and column.</exception>
    public static IReadOnlyList<JsonNode> Parse(string text, string sourceName, bool typedScalars = false) =>
        new TreeBuilder(sourceName, typedScalars).Build(text);

    /// <summary>Builds JSON trees from parser events with an explicit stack.</summary>
    private sealed class TreeBuilder(string sourceName, bool typed)
    {
        private readonly Stack<Frame> _stack = new();
        private readonly Dictionary<string, (JsonNode? Node, long Count)> _anchors = new(StringComparer.Ordinal);
        private readonly HashSet<string> _open = new(StringComparer.Ordinal);
        private long _nodes;

        private sealed class Frame(JsonNode container, string? anchor, long nodesBefore)
        {
            public JsonNode Container { get; } = container;

            public string? Anchor { get; } = anchor;

            public long NodesBefore { get; } = nodesBefore;

            /// <summary>In a mapping: the key whose value comes next; null when a key comes next.</summary>
            public string? PendingKey { get; set; }

            public bool ExpectingValue { get; set; }
        }

        public List<JsonNode> Build(string text)
        {
            var documents = new List<JsonNode>();
            var parser = new Parser(new StringReader(text));
            JsonNode? root = null;
            var rootSet = false;
            try
            {
                while (parser.MoveNext())
                {
                    var current = parser.Current!;
                    switch (current)
                    {
                        case DocumentStart:
                            _anchors.Clear();
                            root = null;
                            rootSet = false;
                            break;
                        case DocumentEnd:
                            if (rootSet && root is not null)
                            {
                                documents.Add(root);
                            }

                            break;
                        case MappingStart mapping:
                            Open(new JsonObject(), mapping.Anchor, current);
                            break;
                        case SequenceStart sequence:
                            Open(new JsonArray(), sequence.Anchor, current);
                            break;
                        case MappingEnd or SequenceEnd:
                            var frame = _stack.Pop();
                            if (frame.Anchor is { } anchor)
                            {
                                _open.Remove(anchor);
                                _anchors[anchor] = (frame.Container, _nodes - frame.NodesBefore);
                            }

                            if (_stack.Count == 0)
                            {
                                (root, rootSet) = (frame.Container, true);
                            }
                            else
                            {
                                Add(frame.Container, current);
                            }

                            break;
                        case Scalar scalar:
                            Count(1, current);
                            var value = ScalarToJson(scalar, typed);
                            if (!scalar.Anchor.IsEmpty)
                            {
                                _anchors[scalar.Anchor.Value] = (value, 1);
                            }

                            if (_stack.Count == 0)
                            {
                                (root, rootSet) = (value, true);
                            }
                            else
                            {
                                AddScalar(scalar, value, current);
                            }

                            break;
                        case AnchorAlias alias:
                            var name = alias.Value.Value;
                            if (_open.Contains(name))
                            {
                                throw Fail(current, $"alias *{name} refers to a node that contains it");
                            }

                            if (!_anchors.TryGetValue(name, out var anchored))
                            {
                                throw Fail(current, $"alias *{name} has no anchor &{name} before it");
                            }

                            Count(anchored.Count, current);
                            var copy = anchored.Node?.DeepClone();
                            if (_stack.Count == 0)
                            {
                                (root, rootSet) = (copy, true);
                            }
                            else if (copy is JsonValue aliasValue && _stack.Peek() is { Container: JsonObject, ExpectingValue: false } keyFrame)
                            {
                                keyFrame.PendingKey = aliasValue.ToString();
                                keyFrame.ExpectingValue = true;
                            }
                            else
                            {
                                Add(copy, current);
                            }

                            break;
                    }
                }
            }
            catch (YamlException e)
            {
                throw new YamlFormatException($"{sourceName}: line {e.Start.Line}, column {e.Start.Column}: {e.Message}", e);
            }

            return documents;
        }

        private void Open(JsonNode container, AnchorName anchor, ParsingEvent at)
        {
            Count(1, at);
            if (_stack.Count >= MaxDepth)
            {
                throw Fail(at, $"nested deeper than {MaxDepth} levels; no manifest or config needs that many");
            }

            var name = anchor.IsEmpty ? null : anchor.Value;
            if (name is not null)
            {
                _open.Add(name);
            }

            _stack.Push(new Frame(container, name, _nodes - 1));
        }

        private void Count(long nodes, ParsingEvent at)
        {
            _nodes += nodes;
            if (_nodes > MaxNodes)
            {
                throw Fail(at, $"more than {MaxNodes:N0} nodes (aliases count as what they repeat); refusing to expand it");
            }
        }

        private void AddScalar(Scalar scalar, JsonNode? value, ParsingEvent at)
        {
            var frame = _stack.Peek();
            if (frame.Container is JsonObject && !frame.ExpectingValue)
            {
                frame.PendingKey = scalar.Value;
                frame.ExpectingValue = true;
                return;
            }

            Add(value, at);
        }

        private void Add(JsonNode? node, ParsingEvent at)
        {
            var frame = _stack.Peek();
            switch (frame.Container)
            {
                case JsonArray array:
                    array.Add(node);
                    break;
                case JsonObject obj when frame.ExpectingValue:
                    // Last key wins, as in kubectl; duplicates are rare and not worth failing on.
                    obj[frame.PendingKey!] = node;
                    frame.ExpectingValue = false;
                    frame.PendingKey = null;
                    break;
                default:
                    throw Fail(at, "a mapping key is a mapping or a sequence; only scalar keys are supported");
            }
        }

        private YamlFormatException Fail(ParsingEvent at, string message) =>
            new($"{sourceName}: line {at.Start.Line}, column {at.Start.Column}: {message}", null);
    }

    /// <summary>
    /// Scalars become JSON strings (numbers too) unless typed: consumers read numbers with
    /// <c>AllowReadingFromString</c>, so <c>port: 8443</c> and <c>port: "8443"</c> mean the same.
    /// </summary>
    private static JsonValue? ScalarToJson(Scalar scalar, bool typed)
    {
        var isPlain = scalar.Style is ScalarStyle.Plain or ScalarStyle.Any && scalar.Tag.IsEmpty;
        var value = scalar.Value ?? string.Empty;
        if (isPlain && value is "" or "~" or "null" or "Null" or "NULL")
        {
            return null;
        }

        if (typed && isPlain)
        {
            if (value is "true" or "True" or "TRUE" or "false" or "False" or "FALSE")
            {
                return JsonValue.Create(value.Equals("true", StringComparison.OrdinalIgnoreCase));
            }

            if (value.Length > 1 && value[0] == '0' && value.All(c => c is >= '0' and <= '7'))
            {
                return JsonValue.Create(Convert.ToInt64(value, 8));
            }

            if (long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
            {
                return JsonValue.Create(integer);
            }

            if (FloatPattern().IsMatch(value) && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var real))
            {
                return JsonValue.Create(real);
            }
        }

        return JsonValue.Create(value);
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")]
    private static partial System.Text.RegularExpressions.Regex FloatPattern();

    /// <summary>Writes a JSON tree as block-style YAML, quoting strings that would read as another type.</summary>
    public static string ToYaml(JsonNode node)
    {
        var stream = new YamlStream(new YamlDocument(ToYamlNode(node)));
        using var writer = new StringWriter(CultureInfo.InvariantCulture);
        stream.Save(writer, assignAnchors: false);
        // YamlDotNet may end a saved stream with a document-end marker; drop it for a clean file.
        var text = writer.ToString().TrimEnd();
        if (text.EndsWith("...", StringComparison.Ordinal))
        {
            text = text[..^3].TrimEnd();
        }

        return text + "\n";
    }

    private static YamlNode ToYamlNode(JsonNode? node)
    {
        // An explicit stack of work, like the reader: the output's depth never depends on recursion.
        var root = NewYamlNode(node, out var pending);
        var work = new Stack<(JsonNode Json, YamlNode Yaml)>();
        if (pending)
        {
            work.Push((node!, root));
        }

        while (work.TryPop(out var item))
        {
            switch (item.Json)
            {
                case JsonObject obj:
                    var mapping = (YamlMappingNode)item.Yaml;
                    foreach (var (key, value) in obj)
                    {
                        var child = NewYamlNode(value, out var more);
                        mapping.Add(StringScalar(key), child);
                        if (more)
                        {
                            work.Push((value!, child));
                        }
                    }

                    break;
                case JsonArray array:
                    var sequence = (YamlSequenceNode)item.Yaml;
                    foreach (var value in array)
                    {
                        var child = NewYamlNode(value, out var more);
                        sequence.Add(child);
                        if (more)
                        {
                            work.Push((value!, child));
                        }
                    }

                    break;
            }
        }

        return root;
    }

    private static YamlNode NewYamlNode(JsonNode? node, out bool hasChildren)
    {
        hasChildren = node is JsonObject or JsonArray;
        return node switch
        {
            JsonObject => new YamlMappingNode(),
            JsonArray => new YamlSequenceNode(),
            null => new YamlScalarNode("null") { Style = ScalarStyle.Plain },
            JsonValue value when value.TryGetValue<string>(out var s) => StringScalar(s),
            JsonValue value => new YamlScalarNode(value.ToJsonString()) { Style = ScalarStyle.Plain },
            _ => throw new ArgumentOutOfRangeException(nameof(node)),
        };
    }

    private static YamlScalarNode StringScalar(string value)
    {
        // Multi-line values (PEM) read best as literal blocks.
        if (value.Contains('\n', StringComparison.Ordinal))
        {
            return new YamlScalarNode(value) { Style = ScalarStyle.Literal };
        }

        return new YamlScalarNode(value) { Style = ReadsAsNonString(value) ? ScalarStyle.DoubleQuoted : ScalarStyle.Any };
    }

    /// <summary>
    /// Whether a plain scalar would not come back as a string under a YAML 1.1 resolver (kubectl's go-yaml:
    /// y/n, yes/no, on/off, 0x1F, 0b101, 1_000, 1:30 sexagesimal, .inf, .nan, timestamps, "=", "&lt;&lt;") or a
    /// YAML 1.2 one (0o17). Such a string is written double-quoted; so is anything that starts like a number.
    /// </summary>
    public static bool ReadsAsNonString(string value)
    {
        if (value.Length == 0)
        {
            return true;
        }

        if (value is "~" or "=" or "<<" || Yaml11Words.Contains(value))
        {
            return true;
        }

        var first = value[0];
        var second = value.Length > 1 ? value[1] : '\0';
        // Numbers, timestamps, .inf/.nan in every spelling, signed or not.
        return char.IsAsciiDigit(first)
               || (first is '+' or '-' && (char.IsAsciiDigit(second) || second == '.'))
               || (first == '.' && (char.IsAsciiDigit(second) || SpecialFloat(value)))
               || (first is '+' or '-' && value.Length > 2 && second == '.' && SpecialFloat(value[1..]));
    }

    private static bool SpecialFloat(string dotted) => dotted.ToLowerInvariant() is ".inf" or ".nan";

    private static readonly HashSet<string> Yaml11Words = new(StringComparer.Ordinal)
    {
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
        "null", "Null", "NULL",
    };
}

/// <summary>A YAML text that could not be parsed or is over a limit.</summary>
public sealed class YamlFormatException(string message, Exception? inner) : Exception(message, inner);
