using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace BackendTls.Tests.Support;

[JsonSerializable(typeof(JsonNode))]
internal sealed partial class TestJson : JsonSerializerContext;
