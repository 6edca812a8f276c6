using System.Text;

namespace BackendTls.Sidecar.Http1;

/// <summary>What a header field means to a proxy; everything but <see cref="Forwarded"/> is handled by name.</summary>
internal enum FieldKind : byte
{
    /// <summary>End-to-end: forwarded as received, byte for byte.</summary>
    Forwarded,

    Host,
    ContentLength,
    TransferEncoding,
    Connection,

    /// <summary>Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, Proxy-Authenticate/-Authorization (RFC 9110 §7.6.1).</summary>
    HopByHop,

    /// <summary>Named in the message's Connection header: the connection's own, so dropped (RFC 9110 §7.6.1).</summary>
    ConnectionListed,

    XForwardedFor,
    XForwardedProto,
}

/// <summary>A header field as offsets into the head's buffer; the value has its optional whitespace trimmed.</summary>
internal readonly record struct HeaderField(int NameStart, int NameLength, int ValueStart, int ValueLength, FieldKind Kind);

/// <summary>How the body of a message is delimited (RFC 9112 §6.3).</summary>
internal enum BodyFraming : byte
{
    None,
    ContentLength,
    Chunked,

    /// <summary>Responses only: the body runs until the backend closes the connection.</summary>
    UntilClose,
}

/// <summary>
/// The parsed head of a request or response. Fields point into the buffer the head was parsed from,
/// which stays valid until its reader reads again; one instance per connection is reused for every message.
/// </summary>
internal abstract class HttpHead
{
    private HeaderField[] _fields = new HeaderField[32];
    private List<string>? _connectionOptions;

    public byte[] Buffer { get; private set; } = [];

    /// <summary>Offset of the head in <see cref="Buffer"/>.</summary>
    public int Offset { get; private set; }

    public int Length { get; private set; }

    /// <summary>10 for HTTP/1.0, 11 for HTTP/1.1.</summary>
    public int Version { get; set; }

    public int FieldCount { get; private set; }

    public long ContentLength { get; set; } = -1;

    public bool Chunked { get; set; }

    public bool ConnectionClose { get; set; }

    public bool ConnectionKeepAlive { get; set; }

    /// <summary>Tokens of the Connection header other than close and keep-alive, lower-cased.</summary>
    public IReadOnlyList<string> ConnectionOptions => (IReadOnlyList<string>?)_connectionOptions ?? [];

    public ReadOnlySpan<HeaderField> Fields => _fields.AsSpan(0, FieldCount);

    public ReadOnlySpan<byte> Bytes => Buffer.AsSpan(Offset, Length);

    public ReadOnlySpan<byte> Name(in HeaderField field) => Buffer.AsSpan(Offset + field.NameStart, field.NameLength);

    public ReadOnlySpan<byte> Value(in HeaderField field) => Buffer.AsSpan(Offset + field.ValueStart, field.ValueLength);

    public ReadOnlySpan<byte> Slice(int start, int length) => Buffer.AsSpan(Offset + start, length);

    /// <summary>The whole field line as received (name, separator, value), without its CRLF.</summary>
    public ReadOnlySpan<byte> Line(in HeaderField field) => Slice(field.NameStart, field.ValueStart + field.ValueLength - field.NameStart);

    /// <summary>The first field named <paramref name="lowerName"/> (compared case-insensitively).</summary>
    public bool TryGetField(ReadOnlySpan<byte> lowerName, out HeaderField field)
    {
        foreach (var candidate in Fields)
        {
            if (HttpSyntax.EqualsLower(Name(candidate), lowerName))
            {
                field = candidate;
                return true;
            }
        }

        field = default;
        return false;
    }

    /// <summary>Whether the connection persists after this message, by version and Connection (RFC 9112 §9.3).</summary>
    public bool KeepAlive => !ConnectionClose && (Version >= 11 || ConnectionKeepAlive);

    public virtual void Reset(byte[] buffer, int offset)
    {
        Buffer = buffer;
        Offset = offset;
        Length = 0;
        Version = 0;
        FieldCount = 0;
        ContentLength = -1;
        Chunked = false;
        ConnectionClose = false;
        ConnectionKeepAlive = false;
        _connectionOptions?.Clear();
    }

    public void SetLength(int length) => Length = length;

    public void AddField(HeaderField field)
    {
        if (FieldCount == _fields.Length)
        {
            Array.Resize(ref _fields, _fields.Length * 2);
        }

        _fields[FieldCount++] = field;
    }

    public void AddConnectionOption(string token) => (_connectionOptions ??= []).Add(token);

    /// <summary>Marks fields named in Connection (which may come after them) as the connection's own.</summary>
    public void MarkConnectionListed()
    {
        if (_connectionOptions is not { Count: > 0 } options)
        {
            return;
        }

        for (var i = 0; i < FieldCount; i++)
        {
            ref var field = ref _fields[i];
            if (field.Kind is FieldKind.Forwarded or FieldKind.XForwardedFor or FieldKind.XForwardedProto)
            {
                var name = Name(field);
                foreach (var option in options)
                {
                    if (option.Length == name.Length && Ascii.EqualsIgnoreCase(name, option))
                    {
                        field = field with { Kind = FieldKind.ConnectionListed };
                        break;
                    }
                }
            }
        }
    }
}

internal enum TargetForm : byte
{
    /// <summary><c>/path?query</c></summary>
    Origin,

    /// <summary><c>http://authority/path?query</c>: forwarded as origin-form, the authority becomes the Host.</summary>
    Absolute,

    /// <summary><c>OPTIONS *</c></summary>
    Asterisk,

    /// <summary><c>CONNECT host:port</c></summary>
    Authority,
}

internal sealed class RequestHead : HttpHead
{
    public string Method { get; set; } = "GET";

    /// <summary>Offsets of the request-target as received.</summary>
    public int TargetStart { get; set; }

    public int TargetLength { get; set; }

    /// <summary>The part of the target forwarded as origin-form (the whole target, or an absolute URI's path and query).</summary>
    public int PathStart { get; set; }

    public int PathLength { get; set; }

    public TargetForm Form { get; set; }

    /// <summary>The Host header, or the authority of an absolute-form target; null when neither was sent (HTTP/1.0).</summary>
    public string? Host { get; set; }

    public bool ExpectContinue { get; set; }

    public bool Upgrade { get; set; }

    /// <summary>An upgrade the sender meant (RFC 9110 §7.8): an Upgrade field and the "upgrade" Connection option.</summary>
    public bool WantsUpgrade => Upgrade && ConnectionOptions.Contains("upgrade");

    public bool IsHead => ReferenceEquals(Method, HttpMethodNames.Head);

    public ReadOnlySpan<byte> Target => Slice(TargetStart, TargetLength);

    /// <summary>The request-target sent to the backend: origin-form, or <c>*</c>; never decoded or normalised.</summary>
    public ReadOnlySpan<byte> ForwardedTarget => PathLength == 0 ? "/"u8 : Slice(PathStart, PathLength);

    public BodyFraming Framing => Chunked ? BodyFraming.Chunked : ContentLength > 0 ? BodyFraming.ContentLength : BodyFraming.None;

    public override void Reset(byte[] buffer, int offset)
    {
        base.Reset(buffer, offset);
        Method = HttpMethodNames.Get;
        TargetStart = TargetLength = PathStart = PathLength = 0;
        Form = TargetForm.Origin;
        Host = null;
        ExpectContinue = false;
        Upgrade = false;
    }
}

internal sealed class ResponseHead : HttpHead
{
    public int StatusCode { get; set; }

    public int ReasonStart { get; set; }

    public int ReasonLength { get; set; }

    public ReadOnlySpan<byte> Reason => Slice(ReasonStart, ReasonLength);

    /// <summary>RFC 9112 §6.3: the response to HEAD, 1xx, 204 and 304 have no body, whatever the headers say.</summary>
    public BodyFraming FramingFor(bool headRequest)
    {
        if (headRequest || StatusCode is < 200 or 204 or 304)
        {
            return BodyFraming.None;
        }

        if (Chunked)
        {
            return BodyFraming.Chunked;
        }

        if (ContentLength >= 0)
        {
            return ContentLength == 0 ? BodyFraming.None : BodyFraming.ContentLength;
        }

        return BodyFraming.UntilClose;
    }

    public override void Reset(byte[] buffer, int offset)
    {
        base.Reset(buffer, offset);
        StatusCode = 0;
        ReasonStart = ReasonLength = 0;
    }
}

/// <summary>Interned method names, so the common ones cost no allocation and compare by reference.</summary>
internal static class HttpMethodNames
{
    public const string Get = "GET";
    public const string Head = "HEAD";
    public const string Post = "POST";
    public const string Put = "PUT";
    public const string Delete = "DELETE";
    public const string Patch = "PATCH";
    public const string Options = "OPTIONS";
    public const string Trace = "TRACE";
    public const string Connect = "CONNECT";

    public static string From(ReadOnlySpan<byte> method) => method switch
    {
        _ when method.SequenceEqual("GET"u8) => Get,
        _ when method.SequenceEqual("POST"u8) => Post,
        _ when method.SequenceEqual("HEAD"u8) => Head,
        _ when method.SequenceEqual("PUT"u8) => Put,
        _ when method.SequenceEqual("DELETE"u8) => Delete,
        _ when method.SequenceEqual("PATCH"u8) => Patch,
        _ when method.SequenceEqual("OPTIONS"u8) => Options,
        _ when method.SequenceEqual("TRACE"u8) => Trace,
        _ when method.SequenceEqual("CONNECT"u8) => Connect,
        _ => System.Text.Encoding.ASCII.GetString(method),
    };

    /// <summary>RFC 9110 §9.2.2: methods whose repetition has the same effect as one request.</summary>
    public static bool IsIdempotent(string method) =>
        ReferenceEquals(method, Get) || ReferenceEquals(method, Head) || ReferenceEquals(method, Options)
        || ReferenceEquals(method, Trace) || ReferenceEquals(method, Put) || ReferenceEquals(method, Delete);
}
