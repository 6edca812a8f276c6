using System.Globalization;
using System.Text.Json.Nodes;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace BackendTls.Policy.Yaml;

/// <summary>
/// Converts between YAML and <see cref="JsonNode"/>. Kubernetes manifests and our config file are read
/// through this so the rest of the code works on one tree type, without reflection (AOT-safe).
/// </summary>
public static partial class YamlDocuments
{
    /// <summary>Parses every document of a (multi-document) YAML or JSON text. Empty documents are skipped.</summary>
    /// <param name="text">The YAML.</param>
    /// <param name="sourceName">For messages.</param>
    /// <param name="typedScalars">
    /// False (policy and config reading): every scalar is a string, so <c>min-tls-version: 1.3</c> stays "1.3".
    /// True (manifests written back out): plain scalars get their YAML types (int, float, bool, null; a
    /// leading-zero integer is octal, as kubectl reads it), so the output keeps <c>containerPort: 80</c> a number.
    /// </param>
    /// <exception cref="YamlFormatException">The text is not valid YAML; the message has line and column.</exception>
    public static IReadOnlyList<JsonNode> Parse(string text, string sourceName, bool typedScalars = false)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new YamlFormatException(
                $"{sourceName}: line {e.Start.Line}, column {e.Start.Column}: {e.Message}", e);
        }

        var documents = new List<JsonNode>(stream.Documents.Count);
        foreach (var document in stream.Documents)
        {
            if (ToJson(document.RootNode, typedScalars) is { } node)
            {
                documents.Add(node);
            }
        }

        return documents;
    }

    /// <summary>
    /// Scalars become JSON strings (numbers too): consumers read numbers with
    /// <c>AllowReadingFromString</c>, so <c>port: 8443</c> and <c>port: "8443"</c> mean the same.
    /// </summary>
    private static JsonNode? ToJson(YamlNode node, bool typed) => node switch
    {
        YamlMappingNode mapping => ToJsonObject(mapping, typed),
        YamlSequenceNode sequence => new JsonArray(sequence.Children.Select(c => ToJson(c, typed)).ToArray()),
        YamlScalarNode scalar => ScalarToJson(scalar, typed),
        _ => null,
    };

    private static JsonObject ToJsonObject(YamlMappingNode mapping, bool typed)
    {
        var result = new JsonObject();
        foreach (var (key, value) in mapping.Children)
        {
            var name = (key as YamlScalarNode)?.Value ?? key.ToString();
            // Last key wins, as in kubectl; duplicates are rare and not worth failing on.
            result[name] = ToJson(value, typed);
        }

        return result;
    }

    private static JsonValue? ScalarToJson(YamlScalarNode scalar, bool typed)
    {
        var isPlain = scalar.Style is ScalarStyle.Plain or ScalarStyle.Any;
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

    private static YamlNode ToYamlNode(JsonNode? node) => node switch
    {
        JsonObject obj => new YamlMappingNode(
            obj.Select(p => new KeyValuePair<YamlNode, YamlNode>(new YamlScalarNode(p.Key), ToYamlNode(p.Value)))),
        JsonArray array => new YamlSequenceNode(array.Select(ToYamlNode)),
        null => new YamlScalarNode("null") { Style = ScalarStyle.Plain },
        JsonValue value when value.TryGetValue<string>(out var s) => StringScalar(s),
        JsonValue value => new YamlScalarNode(value.ToJsonString()) { Style = ScalarStyle.Plain },
        _ => throw new ArgumentOutOfRangeException(nameof(node)),
    };

    private static YamlScalarNode StringScalar(string value)
    {
        // Multi-line values (PEM) read best as literal blocks.
        if (value.Contains('\n', StringComparison.Ordinal))
        {
            return new YamlScalarNode(value) { Style = ScalarStyle.Literal };
        }

        return new YamlScalarNode(value) { Style = NeedsQuotes(value) ? ScalarStyle.DoubleQuoted : ScalarStyle.Any };
    }

    private static bool NeedsQuotes(string value) =>
        value.Length == 0
        || double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out _)
        || value is "true" or "false" or "null" or "~" or "yes" or "no" or "on" or "off";
}

/// <summary>A YAML text that could not be parsed.</summary>
public sealed class YamlFormatException(string message, Exception inner) : Exception(message, inner);
