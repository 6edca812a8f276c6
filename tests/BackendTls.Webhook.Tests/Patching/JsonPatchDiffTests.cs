using System.Text.Json;
using System.Text.Json.Nodes;
using BackendTls.Webhook.Patching;
using Microsoft.AspNetCore.JsonPatch.SystemTextJson;

namespace BackendTls.Webhook.Tests.Patching;

public class JsonPatchDiffTests
{
    /// <summary>Applies our patch with ASP.NET Core's JSON Patch (an independent implementation).</summary>
    internal static JsonNode Apply(JsonNode original, JsonArray patch)
    {
        var document = JsonSerializer.Deserialize<JsonPatchDocument>(patch.ToJsonString())!;
        var target = original.DeepClone();
        document.ApplyTo(target);
        return target;
    }

    [Theory]
    [InlineData("""{"a":1}""", """{"a":1}""")]
    [InlineData("""{"a":1}""", """{"a":2}""")]
    [InlineData("""{"a":1,"b":2}""", """{"a":1}""")]
    [InlineData("""{"spec":{"containers":[{"name":"app"}]}}""", """{"spec":{"initContainers":[{"name":"proxy"}],"containers":[{"name":"app"}]}}""")]
    [InlineData("""{"spec":{"initContainers":[{"name":"a"},{"name":"b"}]}}""", """{"spec":{"initContainers":[{"name":"proxy"},{"name":"a"},{"name":"b"}]}}""")]
    [InlineData("""{"spec":{"volumes":[{"name":"a"}]}}""", """{"spec":{"volumes":[{"name":"a"},{"name":"p"}]}}""")]
    [InlineData("""{"l":[1,2,3]}""", """{"l":[3,1,4]}""")]
    [InlineData("""{"l":[{"name":"x","v":1},{"name":"y"}]}""", """{"l":[{"name":"y"},{"name":"x","v":2}]}""")]
    [InlineData("""{"metadata":{"annotations":{"a/b":"1","c~d":"2"}}}""", """{"metadata":{"annotations":{"a/b":"1","c~d":"3","prometheus.io/scrape":"true"}}}""")]
    [InlineData("""{"metadata":{}}""", """{"metadata":{"annotations":{"x/y":"z"}}}""")]
    public void Patch_TurnsFromIntoTo_AsAppliedByAnIndependentImplementation(string from, string to)
    {
        var a = JsonNode.Parse(from)!;
        var b = JsonNode.Parse(to)!;

        var patch = JsonPatchDiff.Create(a, b);

        Assert.True(JsonNode.DeepEquals(b, Apply(a, patch)), $"patch {patch.ToJsonString()} gave {Apply(a, patch).ToJsonString()}");
    }

    [Fact]
    public void Unchanged_EmptyPatch()
    {
        var node = JsonNode.Parse("""{"spec":{"containers":[{"name":"app","image":"x"}]}}""")!;
        Assert.Empty(JsonPatchDiff.Create(node, node.DeepClone()));
    }

    [Fact]
    public void InsertingAContainer_IsOneAdd_NoRemoves()
    {
        var a = JsonNode.Parse("""{"spec":{"initContainers":[{"name":"a"}],"containers":[{"name":"app"}]}}""")!;
        var b = JsonNode.Parse("""{"spec":{"initContainers":[{"name":"proxy"},{"name":"a"}],"containers":[{"name":"app"}]}}""")!;

        var patch = JsonPatchDiff.Create(a, b);

        var op = Assert.Single(patch)!;
        Assert.Equal("add", (string?)op["op"]);
        Assert.Equal("/spec/initContainers/0", (string?)op["path"]);
    }

    [Fact]
    public void KeysWithSlashAndTilde_AreEscaped()
    {
        var patch = JsonPatchDiff.Create(JsonNode.Parse("""{"m":{}}""")!, JsonNode.Parse("""{"m":{"a/b~c":"1"}}""")!);
        Assert.Equal("/m/a~1b~0c", (string?)patch[0]!["path"]);
    }
}
