using System.Net;
using System.Text.Json.Nodes;

namespace BackendTls.Webhook.Tests.Support;

/// <summary>
/// An in-process stand-in for the parts of the Kubernetes API the controller uses: objects in memory,
/// get/list (with a simple label selector), create, replace (and the status subresource) with
/// resourceVersion conflicts, delete; watches that replay changes after their resourceVersion and then
/// stream new ones; TokenReviews of the tokens a test registers. Not a Kubernetes implementation: the k3s
/// tests are the real thing.
/// </summary>
internal sealed class ApiStandIn : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Lock _lock = new();
    private readonly Dictionary<(string Resource, string? Namespace, string Name), JsonObject> _objects = [];
    private readonly List<Change> _history = [];
    private readonly List<Watcher> _watchers = [];
    private long _version = 100;

    private sealed record Change(long Version, string Resource, string? Namespace, string Type, JsonObject Object);

    private sealed record Watcher(string Resource, string? Namespace, System.Threading.Channels.Channel<Change> Events);

    /// <param name="listener">A listening socket to serve on (one made inside a network namespace); else loopback, any port.</param>
    public ApiStandIn(System.Net.Sockets.Socket? listener = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            if (listener is null)
            {
                k.Listen(IPAddress.Loopback, 0);
            }
            else
            {
                k.ListenHandle((ulong)listener.Handle);
            }
        });
        _app = builder.Build();
        _app.Run(HandleAsync);
    }

    public string Url => _app.Urls.First();

    /// <summary>Writes (POST/PUT/DELETE) by "METHOD resource[/status]", for "nothing changed, nothing written" checks.</summary>
    public List<string> Writes { get; } = [];

    /// <summary>Service-account tokens TokenReview accepts.</summary>
    public Dictionary<string, StandInToken> Tokens { get; } = new(StringComparer.Ordinal);

    /// <summary>TokenReviews answered so far.</summary>
    public int TokenReviews { get; private set; }

    public Task StartAsync() => _app.StartAsync();

    /// <summary>Creates or replaces an object (watchers see ADDED or MODIFIED).</summary>
    public void Seed(string resource, string? ns, JsonObject obj)
    {
        lock (_lock)
        {
            obj["metadata"]!["resourceVersion"] = (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture);
            obj["metadata"]!["uid"] ??= Guid.NewGuid().ToString();
            var key = (resource, ns, (string)obj["metadata"]!["name"]!);
            var type = _objects.ContainsKey(key) ? "MODIFIED" : "ADDED";
            _objects[key] = obj;
            Publish(resource, ns, type, obj);
        }
    }

    /// <summary>Deletes an object (watchers see DELETED).</summary>
    public void Remove(string resource, string? ns, string name) => Delete(resource, ns, name);

    // Callers hold _lock.
    private void Publish(string resource, string? ns, string type, JsonObject obj)
    {
        var change = new Change(_version, resource, ns, type, obj.DeepClone().AsObject());
        _history.Add(change);
        foreach (var watcher in _watchers.Where(w => w.Resource == resource && (w.Namespace is null || w.Namespace == ns)))
        {
            watcher.Events.Writer.TryWrite(change);
        }
    }

    /// <summary>Changes after the watch's resourceVersion first, then new ones, one JSON line each, until the client leaves.</summary>
    private async Task WatchAsync(HttpContext context, string resource, string? ns)
    {
        var channel = System.Threading.Channels.Channel.CreateUnbounded<Change>();
        var watcher = new Watcher(resource, ns, channel);
        _ = long.TryParse(context.Request.Query["resourceVersion"], out var since);
        lock (_lock)
        {
            foreach (var change in _history.Where(c => c.Version > since && c.Resource == resource && (ns is null || c.Namespace == ns)))
            {
                channel.Writer.TryWrite(change);
            }

            _watchers.Add(watcher);
        }

        context.Response.ContentType = "application/json";
        await context.Response.Body.FlushAsync();
        try
        {
            await foreach (var change in channel.Reader.ReadAllAsync(context.RequestAborted))
            {
                var line = new JsonObject { ["type"] = change.Type, ["object"] = change.Object.DeepClone() }.ToJsonString() + "\n";
                await context.Response.WriteAsync(line, context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
            }
        }
        catch (OperationCanceledException)
        {
            // the client left
        }
        finally
        {
            lock (_lock)
            {
                _watchers.Remove(watcher);
            }
        }
    }

    private (int, JsonObject) ReviewToken(JsonObject review)
    {
        var token = (string?)review["spec"]?["token"] ?? string.Empty;
        var audiences = review["spec"]?["audiences"]?.AsArray().Select(a => (string?)a).ToList() ?? [];
        lock (_lock)
        {
            TokenReviews++;
            var status = Tokens.TryGetValue(token, out var known) && audiences.Contains(known.Audience)
                ? new JsonObject
                {
                    ["authenticated"] = true,
                    ["user"] = new JsonObject
                    {
                        ["username"] = known.User,
                        // A bound (projected) token names its pod, as the API server's TokenReview says.
                        ["extra"] = known.PodName is null ? null : new JsonObject { ["authentication.kubernetes.io/pod-name"] = new JsonArray(known.PodName) },
                    },
                    ["audiences"] = new JsonArray(known.Audience),
                }
                : new JsonObject { ["authenticated"] = false, ["error"] = "invalid bearer token" };
            review["status"] = status;
            return (201, review);
        }
    }

    public JsonObject? Get(string resource, string? ns, string name)
    {
        lock (_lock)
        {
            return _objects.TryGetValue((resource, ns, name), out var obj) ? obj.DeepClone().AsObject() : null;
        }
    }

    public IReadOnlyList<JsonObject> All(string resource)
    {
        lock (_lock)
        {
            return _objects.Where(o => o.Key.Resource == resource).Select(o => o.Value.DeepClone().AsObject()).ToList();
        }
    }

    private async Task HandleAsync(HttpContext context)
    {
        // /api/v1/... or /apis/{group}/{version}/...
        var parts = context.Request.Path.Value!.Trim('/').Split('/');
        var rest = parts[0] == "api" ? parts[2..] : parts[3..];
        string? ns = null;
        if (rest.Length >= 3 && rest[0] == "namespaces")
        {
            ns = rest[1];
            rest = rest[2..];
        }

        var resource = rest[0];
        var name = rest.Length > 1 ? rest[1] : null;
        var status = rest.Length > 2 && rest[2] == "status";
        if (context.Request.Query["watch"] == "true")
        {
            await WatchAsync(context, resource, ns);
            return;
        }

        var method = context.Request.Method;
        var text = method is "POST" or "PUT" or "PATCH" ? await new StreamReader(context.Request.Body).ReadToEndAsync() : null;
        var body = text is null ? null : JsonNode.Parse(text) is JsonObject o ? o : new JsonObject { ["patch"] = JsonNode.Parse(text) };
        if (method != "GET")
        {
            lock (_lock)
            {
                Writes.Add($"{method} {resource}{(status ? "/status" : string.Empty)}");
            }
        }

        var (code, answer) = method switch
        {
            "GET" when name is null => (200, List(resource, ns, context.Request.Query["labelSelector"])),
            "GET" => Get(resource, ns, name) is { } found ? (200, found) : NotFound(),
            "POST" when resource == "tokenreviews" => ReviewToken(body!),
            "POST" => Create(resource, ns, body!),
            "PUT" => Replace(resource, ns, name!, body!, status),
            "DELETE" => Delete(resource, ns, name!),
            "PATCH" when context.Request.ContentType?.StartsWith("application/json-patch+json", StringComparison.Ordinal) == true => Patch(resource, ns, name!, body!),
            _ => (405, new JsonObject()),
        };
        context.Response.StatusCode = code;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(answer.ToJsonString());
    }

    private JsonObject List(string resource, string? ns, string? selector)
    {
        var (key, value) = selector is { Length: > 0 } s ? (s.Split('=')[0], s.Split('=')[1]) : (null, null);
        lock (_lock)
        {
            var items = _objects
                .Where(o => o.Key.Resource == resource && (ns is null || o.Key.Namespace == ns))
                .Where(o => key is null || (string?)o.Value["metadata"]?["labels"]?[key] == value)
                .Select(o => (JsonNode)o.Value.DeepClone())
                .ToArray();
            return new JsonObject { ["metadata"] = new JsonObject { ["resourceVersion"] = _version.ToString(System.Globalization.CultureInfo.InvariantCulture) }, ["items"] = new JsonArray(items) };
        }
    }

    private (int, JsonObject) Create(string resource, string? ns, JsonObject body)
    {
        lock (_lock)
        {
            var metadata = body["metadata"]!.AsObject();
            var name = (string?)metadata["name"] ?? (string?)metadata["generateName"] + (++_version);
            metadata["name"] = name;
            if (_objects.ContainsKey((resource, ns, name)))
            {
                return (409, Status(409, "AlreadyExists"));
            }

            metadata["resourceVersion"] = (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture);
            metadata["uid"] = Guid.NewGuid().ToString();
            _objects[(resource, ns, name)] = body.DeepClone().AsObject();
            Publish(resource, ns, "ADDED", body);
            return (201, body);
        }
    }

    private (int, JsonObject) Replace(string resource, string? ns, string name, JsonObject body, bool statusOnly)
    {
        lock (_lock)
        {
            if (!_objects.TryGetValue((resource, ns, name), out var current))
            {
                return NotFound();
            }

            if ((string?)body["metadata"]?["resourceVersion"] is { } version && version != (string?)current["metadata"]!["resourceVersion"])
            {
                return (409, Status(409, "Conflict"));
            }

            var next = statusOnly ? current.DeepClone().AsObject() : body.DeepClone().AsObject();
            if (statusOnly)
            {
                next["status"] = body["status"]?.DeepClone();
            }

            next["metadata"]!["resourceVersion"] = (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture);
            next["metadata"]!["uid"] = current["metadata"]!["uid"]?.DeepClone();
            _objects[(resource, ns, name)] = next;
            Publish(resource, ns, "MODIFIED", next);
            return (200, next);
        }
    }

    /// <summary>RFC 6902 patches, applied with ASP.NET Core's JSON Patch.</summary>
    private (int, JsonObject) Patch(string resource, string? ns, string name, JsonObject body)
    {
        lock (_lock)
        {
            if (!_objects.TryGetValue((resource, ns, name), out var current))
            {
                return NotFound();
            }

            var document = System.Text.Json.JsonSerializer.Deserialize<Microsoft.AspNetCore.JsonPatch.SystemTextJson.JsonPatchDocument>(body["patch"]!.ToJsonString())!;
            var next = current.DeepClone();
            document.ApplyTo(next);
            next["metadata"]!["resourceVersion"] = (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture);
            _objects[(resource, ns, name)] = next.AsObject();
            Publish(resource, ns, "MODIFIED", next.AsObject());
            return (200, next.AsObject());
        }
    }

    private (int, JsonObject) Delete(string resource, string? ns, string name)
    {
        lock (_lock)
        {
            if (!_objects.Remove((resource, ns, name), out var gone))
            {
                return NotFound();
            }

            ++_version;
            Publish(resource, ns, "DELETED", gone);
            return (200, Status(200, "Success"));
        }
    }

    private static (int, JsonObject) NotFound() => (404, Status(404, "NotFound"));

    private static JsonObject Status(int code, string reason) =>
        new() { ["kind"] = "Status", ["apiVersion"] = "v1", ["status"] = code < 300 ? "Success" : "Failure", ["reason"] = reason, ["code"] = code };

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>A token the stand-in's TokenReview accepts for one audience (bound to a pod, if named).</summary>
internal sealed record StandInToken(string User, string Audience, string? PodName = null);
