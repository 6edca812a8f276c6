using System.Net;
using System.Text;
using BackendTls.Sidecar.Failures;

namespace BackendTls.Sidecar.Http1;

internal enum ParseStatus
{
    Incomplete,
    Complete,
    Invalid,
}

/// <summary>Why a message head was refused: the status to answer (requests) and a sentence for people.</summary>
internal readonly record struct ParseError(int Status, string Reason, string Detail);

/// <summary>
/// A strict RFC 9112 head parser. What a lenient parser would guess at is refused, because a proxy that
/// reads framing differently from its backend is a request-smuggling vector: bare LF, obs-fold,
/// whitespace before a colon, invalid or repeated Content-Length, Transfer-Encoding other than
/// <c>chunked</c>, Transfer-Encoding with Content-Length, control characters, a missing or repeated Host.
/// </summary>
internal static class Http1Parser
{
    public const int MaxRequestHeadBytes = 32 * 1024;
    public const int MaxRequestLineBytes = 16 * 1024;
    public const int MaxRequestFields = 100;
    public const int MaxResponseHeadBytes = 64 * 1024;
    public const int MaxResponseFields = 200;

    private const string BadRequest = FailureReason.BadRequest;
    private const string HeadersTooLarge = FailureReason.HeadersTooLarge;
    private const string VersionNotSupported = FailureReason.VersionNotSupported;
    private const string TransferCodingNotSupported = FailureReason.TransferCodingNotSupported;

    public static ParseStatus ParseRequest(byte[] buffer, int offset, int count, RequestHead head, out int consumed, out ParseError error)
    {
        head.Reset(buffer, offset);
        consumed = 0;
        error = default;
        var data = buffer.AsSpan(offset, count);

        // RFC 9112 §2.2: empty lines before a request-line are ignored (some clients send one after a body).
        var pos = 0;
        while (pos + 1 < data.Length && data[pos] == '\r' && data[pos + 1] == '\n')
        {
            pos += 2;
        }

        var status = NextLine(data, ref pos, MaxRequestLineBytes, out var lineStart, out var lineLength, ref error, isRequestLine: true);
        if (status != ParseStatus.Complete)
        {
            return status;
        }

        if (!ParseRequestLine(data.Slice(lineStart, lineLength), lineStart, head, ref error))
        {
            return ParseStatus.Invalid;
        }

        var hostCount = 0;
        string? hostHeader = null;
        while (true)
        {
            status = NextLine(data, ref pos, MaxRequestHeadBytes, out lineStart, out lineLength, ref error, isRequestLine: false);
            if (status != ParseStatus.Complete)
            {
                return status;
            }

            if (lineLength == 0)
            {
                break;
            }

            if (head.FieldCount == MaxRequestFields)
            {
                error = new ParseError(431, HeadersTooLarge, $"more than {MaxRequestFields} header fields");
                return ParseStatus.Invalid;
            }

            if (!ParseField(data, lineStart, lineLength, head, ref error, isRequest: true, out var field))
            {
                return ParseStatus.Invalid;
            }

            if (field.Kind == FieldKind.Host)
            {
                hostCount++;
                hostHeader = Encoding.ASCII.GetString(head.Value(field));
            }
        }

        head.SetLength(pos);
        consumed = pos;
        if (head.Version == 11 && hostCount == 0)
        {
            error = new ParseError(400, BadRequest, "an HTTP/1.1 request must carry a Host header (RFC 9112 §3.2)");
            return ParseStatus.Invalid;
        }

        if (hostCount > 1)
        {
            error = new ParseError(400, BadRequest, "more than one Host header (RFC 9112 §3.2)");
            return ParseStatus.Invalid;
        }

        if (head.Chunked && head.ContentLength >= 0)
        {
            error = new ParseError(400, BadRequest, "both Transfer-Encoding and Content-Length: the body's length is ambiguous (RFC 9112 §6.3)");
            return ParseStatus.Invalid;
        }

        if (head.Chunked && head.Version == 10)
        {
            error = new ParseError(400, BadRequest, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)");
            return ParseStatus.Invalid;
        }

        if (head.Form != TargetForm.Absolute)
        {
            head.Host = hostHeader;
        }

        if (hostHeader is not null && !IsValidAuthority(hostHeader, allowEmpty: true, out var problem))
        {
            error = new ParseError(400, BadRequest, $"Host \"{hostHeader}\" {problem}");
            return ParseStatus.Invalid;
        }

        head.MarkConnectionListed();
        return ParseStatus.Complete;
    }

    public static ParseStatus ParseResponse(byte[] buffer, int offset, int count, ResponseHead head, out int consumed, out ParseError error)
    {
        head.Reset(buffer, offset);
        consumed = 0;
        error = default;
        var data = buffer.AsSpan(offset, count);
        var pos = 0;
        var status = NextLine(data, ref pos, MaxResponseHeadBytes, out var lineStart, out var lineLength, ref error, isRequestLine: false);
        if (status != ParseStatus.Complete)
        {
            return status;
        }

        if (!ParseStatusLine(data.Slice(lineStart, lineLength), lineStart, head, ref error))
        {
            return ParseStatus.Invalid;
        }

        while (true)
        {
            status = NextLine(data, ref pos, MaxResponseHeadBytes, out lineStart, out lineLength, ref error, isRequestLine: false);
            if (status != ParseStatus.Complete)
            {
                return status;
            }

            if (lineLength == 0)
            {
                break;
            }

            if (head.FieldCount == MaxResponseFields)
            {
                error = new ParseError(502, HeadersTooLarge, $"the response has more than {MaxResponseFields} header fields");
                return ParseStatus.Invalid;
            }

            if (!ParseField(data, lineStart, lineLength, head, ref error, isRequest: false, out _))
            {
                return ParseStatus.Invalid;
            }
        }

        head.SetLength(pos);
        consumed = pos;
        if (head.Chunked && head.ContentLength >= 0 && head.StatusCode >= 200)
        {
            error = new ParseError(502, BadRequest, "the response has both Transfer-Encoding and Content-Length (RFC 9112 §6.3)");
            return ParseStatus.Invalid;
        }

        head.MarkConnectionListed();
        return ParseStatus.Complete;
    }

    /// <summary>Finds the next CRLF-terminated line; a bare LF is an error, a missing terminator is incomplete.</summary>
    private static ParseStatus NextLine(ReadOnlySpan<byte> data, ref int pos, int limit, out int start, out int length, ref ParseError error, bool isRequestLine)
    {
        start = pos;
        length = 0;
        var lf = data[pos..].IndexOf((byte)'\n');
        if (lf < 0)
        {
            if (data.Length > limit || (isRequestLine && data.Length - pos > MaxRequestLineBytes))
            {
                error = isRequestLine
                    ? new ParseError(414, HeadersTooLarge, $"the request line is longer than {MaxRequestLineBytes} bytes")
                    : new ParseError(431, HeadersTooLarge, $"the header section is larger than {limit / 1024} KiB");
                return ParseStatus.Invalid;
            }

            return ParseStatus.Incomplete;
        }

        if (pos + lf > limit)
        {
            error = new ParseError(431, HeadersTooLarge, $"the header section is larger than {limit / 1024} KiB");
            return ParseStatus.Invalid;
        }

        if (lf == 0 || data[pos + lf - 1] != '\r')
        {
            error = new ParseError(400, BadRequest, "a line ends in a bare LF; HTTP/1.1 lines end in CRLF (RFC 9112 §2.2)");
            return ParseStatus.Invalid;
        }

        length = lf - 1;
        pos += lf + 1;
        return ParseStatus.Complete;
    }

    private static bool ParseRequestLine(ReadOnlySpan<byte> line, int lineStart, RequestHead head, ref ParseError error)
    {
        var firstSpace = line.IndexOf((byte)' ');
        var lastSpace = line.LastIndexOf((byte)' ');
        if (firstSpace <= 0 || lastSpace <= firstSpace + 1)
        {
            error = new ParseError(400, BadRequest, "the request line is not METHOD SP TARGET SP HTTP-VERSION");
            return false;
        }

        var method = line[..firstSpace];
        var target = line[(firstSpace + 1)..lastSpace];
        var version = line[(lastSpace + 1)..];
        if (!HttpSyntax.IsToken(method))
        {
            error = new ParseError(400, BadRequest, "the method is not a token (RFC 9110 §9.1)");
            return false;
        }

        foreach (var b in target)
        {
            if (!HttpSyntax.IsTargetChar(b))
            {
                error = new ParseError(400, BadRequest, b switch
                {
                    (byte)'#' => "the request-target holds a fragment ('#'), which a client never sends (RFC 9112 §3.2)",
                    (byte)' ' => "the request-target holds a space; send it percent-encoded (%20)",
                    _ => $"the request-target holds byte 0x{b:X2}; only visible ASCII is allowed (percent-encode it)",
                });
                return false;
            }
        }

        if (version.SequenceEqual("HTTP/1.1"u8))
        {
            head.Version = 11;
        }
        else if (version.SequenceEqual("HTTP/1.0"u8))
        {
            head.Version = 10;
        }
        else if (version.Length == 8 && version.StartsWith("HTTP/"u8) && char.IsAsciiDigit((char)version[5]) && version[6] == '.' && char.IsAsciiDigit((char)version[7]))
        {
            error = new ParseError(505, VersionNotSupported, $"{Encoding.ASCII.GetString(version)} is not supported; send HTTP/1.1");
            return false;
        }
        else
        {
            error = new ParseError(400, BadRequest, "the request line does not end in HTTP/1.1 or HTTP/1.0");
            return false;
        }

        head.Method = HttpMethodNames.From(method);
        head.TargetStart = lineStart + firstSpace + 1;
        head.TargetLength = target.Length;
        head.PathStart = head.TargetStart;
        head.PathLength = target.Length;
        if (target[0] == '/')
        {
            head.Form = TargetForm.Origin;
            return true;
        }

        if (target.SequenceEqual("*"u8))
        {
            if (!ReferenceEquals(head.Method, HttpMethodNames.Options))
            {
                error = new ParseError(400, BadRequest, "the asterisk request-target is only for OPTIONS (RFC 9112 §3.2.4)");
                return false;
            }

            head.Form = TargetForm.Asterisk;
            return true;
        }

        if (ReferenceEquals(head.Method, HttpMethodNames.Connect))
        {
            head.Form = TargetForm.Authority; // refused by the forwarder with its own reason
            return true;
        }

        var schemeLength = StartsWithScheme(target);
        if (schemeLength == 0)
        {
            error = new ParseError(400, BadRequest, "the request-target is neither a path (/...) nor an absolute http(s) URI");
            return false;
        }

        var rest = target[schemeLength..];
        var authorityEnd = rest.IndexOfAny((byte)'/', (byte)'?');
        var authority = authorityEnd < 0 ? rest : rest[..authorityEnd];
        var authorityText = Encoding.ASCII.GetString(authority);
        if (!IsValidAuthority(authorityText, allowEmpty: false, out var problem))
        {
            error = new ParseError(400, BadRequest, $"the authority \"{authorityText}\" of the absolute request-target {problem}");
            return false;
        }

        head.Form = TargetForm.Absolute;
        head.Host = authorityText;
        // Forwarded as origin-form: the path and query exactly as they came, never decoded.
        head.PathStart = head.TargetStart + schemeLength + authority.Length;
        head.PathLength = authorityEnd < 0 ? 0 : rest.Length - authority.Length;
        if (head.PathLength > 0 && rest[authority.Length] == '?')
        {
            error = new ParseError(400, BadRequest, "the absolute request-target has a query but no path; send http://host/?query");
            return false;
        }

        return true;
    }

    private static int StartsWithScheme(ReadOnlySpan<byte> target)
    {
        if (target.Length > 7 && HttpSyntax.EqualsLower(target[..7], "http://"u8))
        {
            return 7;
        }

        if (target.Length > 8 && HttpSyntax.EqualsLower(target[..8], "https://"u8))
        {
            return 8;
        }

        return 0;
    }

    private static bool ParseStatusLine(ReadOnlySpan<byte> line, int lineStart, ResponseHead head, ref ParseError error)
    {
        // HTTP/1.x SP 3DIGIT [SP reason]
        if (line.Length < 12 || !line.StartsWith("HTTP/1."u8) || line[7] is not ((byte)'0' or (byte)'1') || line[8] != ' '
            || !char.IsAsciiDigit((char)line[9]) || !char.IsAsciiDigit((char)line[10]) || !char.IsAsciiDigit((char)line[11])
            || (line.Length > 12 && line[12] != ' '))
        {
            error = new ParseError(502, BadRequest, "the backend's status line is not HTTP/1.x SP 3DIGIT SP reason");
            return false;
        }

        head.Version = line[7] == '1' ? 11 : 10;
        head.StatusCode = ((line[9] - '0') * 100) + ((line[10] - '0') * 10) + (line[11] - '0');
        if (head.StatusCode < 100)
        {
            error = new ParseError(502, BadRequest, $"the backend sent status code {head.StatusCode}");
            return false;
        }

        var reason = line.Length > 13 ? line[13..] : [];
        foreach (var b in reason)
        {
            if (!HttpSyntax.IsFieldValueChar(b))
            {
                error = new ParseError(502, BadRequest, "the backend's reason phrase holds a control character");
                return false;
            }
        }

        head.ReasonStart = lineStart + 13;
        head.ReasonLength = reason.Length;
        return true;
    }

    private static bool ParseField(ReadOnlySpan<byte> data, int lineStart, int lineLength, HttpHead head, ref ParseError error, bool isRequest, out HeaderField field)
    {
        field = default;
        var line = data.Slice(lineStart, lineLength);
        var status = isRequest ? 400 : 502;
        var who = isRequest ? "the request" : "the backend's response";
        if (line[0] is (byte)' ' or (byte)'\t')
        {
            error = new ParseError(status, BadRequest, $"{who} continues a header on the next line (obs-fold), which RFC 9112 §5.2 forbids");
            return false;
        }

        var colon = line.IndexOf((byte)':');
        if (colon <= 0)
        {
            error = new ParseError(status, BadRequest, $"{who} has a header line without a name and a colon");
            return false;
        }

        var name = line[..colon];
        if (!HttpSyntax.IsToken(name))
        {
            error = new ParseError(status, BadRequest, name[^1] is (byte)' ' or (byte)'\t'
                ? $"{who} has whitespace between a header name and its colon (RFC 9112 §5.1)"
                : $"{who} has a header name that is not a token");
            return false;
        }

        var rawValue = line[(colon + 1)..];
        foreach (var b in rawValue)
        {
            if (!HttpSyntax.IsFieldValueChar(b))
            {
                error = new ParseError(status, BadRequest, $"header {Encoding.ASCII.GetString(name)} of {who} holds control character 0x{b:X2}");
                return false;
            }
        }

        var value = HttpSyntax.TrimOws(rawValue);
        var valueStart = lineStart + colon + 1 + (value.IsEmpty ? 0 : rawValue.IndexOf(value));
        var kind = Classify(name);
        switch (kind)
        {
            case FieldKind.ContentLength:
                if (!HttpSyntax.TryParseLength(value, out var length))
                {
                    error = new ParseError(status, BadRequest, $"{who} has an invalid Content-Length \"{Encoding.ASCII.GetString(value)}\"");
                    return false;
                }

                if (head.ContentLength >= 0 && (isRequest || head.ContentLength != length))
                {
                    error = new ParseError(status, BadRequest, $"{who} has more than one Content-Length (RFC 9112 §6.3)");
                    return false;
                }

                head.ContentLength = length;
                break;
            case FieldKind.TransferEncoding:
                if (head.Chunked)
                {
                    error = new ParseError(status, BadRequest, $"{who} has more than one Transfer-Encoding header");
                    return false;
                }

                if (!HttpSyntax.EqualsLower(value, "chunked"u8))
                {
                    error = isRequest
                        ? new ParseError(501, TransferCodingNotSupported, $"Transfer-Encoding \"{Encoding.ASCII.GetString(value)}\" is not supported; only chunked is")
                        : new ParseError(502, TransferCodingNotSupported, $"the backend used Transfer-Encoding \"{Encoding.ASCII.GetString(value)}\"; only chunked is supported");
                    return false;
                }

                head.Chunked = true;
                break;
            case FieldKind.Connection:
                ReadConnectionTokens(value, head);
                break;
            case FieldKind.HopByHop when head is RequestHead request:
                if (HttpSyntax.EqualsLower(name, "upgrade"u8))
                {
                    request.Upgrade = true;
                }

                break;
            case FieldKind.Forwarded when isRequest && head is RequestHead request
                                          && HttpSyntax.EqualsLower(name, "expect"u8) && HttpSyntax.EqualsLower(value, "100-continue"u8):
                request.ExpectContinue = true;
                break;
        }

        field = new HeaderField(lineStart, colon, valueStart, value.Length, kind);
        head.AddField(field);
        return true;
    }

    private static void ReadConnectionTokens(ReadOnlySpan<byte> value, HttpHead head)
    {
        foreach (var range in value.Split((byte)','))
        {
            var token = HttpSyntax.TrimOws(value[range]);
            if (token.IsEmpty)
            {
                continue;
            }

            if (HttpSyntax.EqualsLower(token, "close"u8))
            {
                head.ConnectionClose = true;
            }
            else if (HttpSyntax.EqualsLower(token, "keep-alive"u8))
            {
                head.ConnectionKeepAlive = true;
            }
            else if (HttpSyntax.IsToken(token))
            {
                head.AddConnectionOption(Encoding.ASCII.GetString(token).ToLowerInvariant());
            }
        }
    }

    private static FieldKind Classify(ReadOnlySpan<byte> name) => name.Length switch
    {
        2 when HttpSyntax.EqualsLower(name, "te"u8) => FieldKind.HopByHop,
        4 when HttpSyntax.EqualsLower(name, "host"u8) => FieldKind.Host,
        7 when HttpSyntax.EqualsLower(name, "upgrade"u8) => FieldKind.HopByHop,
        7 when HttpSyntax.EqualsLower(name, "trailer"u8) => FieldKind.HopByHop,
        10 when HttpSyntax.EqualsLower(name, "connection"u8) => FieldKind.Connection,
        10 when HttpSyntax.EqualsLower(name, "keep-alive"u8) => FieldKind.HopByHop,
        14 when HttpSyntax.EqualsLower(name, "content-length"u8) => FieldKind.ContentLength,
        15 when HttpSyntax.EqualsLower(name, "x-forwarded-for"u8) => FieldKind.XForwardedFor,
        16 when HttpSyntax.EqualsLower(name, "proxy-connection"u8) => FieldKind.HopByHop,
        17 when HttpSyntax.EqualsLower(name, "transfer-encoding"u8) => FieldKind.TransferEncoding,
        17 when HttpSyntax.EqualsLower(name, "x-forwarded-proto"u8) => FieldKind.XForwardedProto,
        18 when HttpSyntax.EqualsLower(name, "proxy-authenticate"u8) => FieldKind.HopByHop,
        19 when HttpSyntax.EqualsLower(name, "proxy-authorization"u8) => FieldKind.HopByHop,
        _ => FieldKind.Forwarded,
    };

    /// <summary>
    /// host [":" port] as a Host header or absolute-form authority may carry it: a DNS name (letters,
    /// digits, '-', '_', no empty label, at most one trailing dot), an IPv4 address or a bracketed IPv6 one,
    /// and a port of 1 to 65535. The problem, if any, is a phrase that completes "Host "x" ...".
    /// </summary>
    public static bool IsValidAuthority(string authority, bool allowEmpty, out string problem)
    {
        problem = string.Empty;
        if (authority.Length == 0)
        {
            problem = "is empty";
            return allowEmpty;
        }

        var host = authority;
        if (authority[0] == '[')
        {
            var close = authority.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || !IPAddress.TryParse(authority.AsSpan(1, close - 1), out var v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                problem = "is not a valid [IPv6] address";
                return false;
            }

            return ValidPort(authority.AsSpan(close + 1), out problem);
        }

        var colon = authority.LastIndexOf(':');
        if (colon >= 0)
        {
            if (!ValidPort(authority.AsSpan(colon), out problem))
            {
                return false;
            }

            host = authority[..colon];
        }

        if (host.Length is 0 or > 254)
        {
            problem = host.Length == 0 ? "has no host name" : "has a host name longer than 253 characters";
            return false;
        }

        var name = host.EndsWith('.') ? host[..^1] : host;
        foreach (var label in name.Split('.'))
        {
            if (label.Length == 0)
            {
                problem = "has an empty label (\"..\" or a leading dot)";
                return false;
            }

            if (label.Length > 63)
            {
                problem = "has a label longer than 63 characters";
                return false;
            }

            foreach (var c in label)
            {
                if (!char.IsAsciiLetterOrDigit(c) && c is not '-' and not '_')
                {
                    problem = $"holds '{c}', which is not allowed in a host name";
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>"" or ":" followed by 1 to 5 digits, 1-65535.</summary>
    private static bool ValidPort(ReadOnlySpan<char> portPart, out string problem)
    {
        problem = string.Empty;
        if (portPart.IsEmpty)
        {
            return true;
        }

        var digits = portPart[1..];
        if (portPart[0] == ':' && digits.IsEmpty)
        {
            return true; // "host:" is valid authority syntax (RFC 3986 §3.2.3)
        }

        if (portPart[0] != ':' || digits.Length > 5 || !int.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
            || port is < 1 or > 65535)
        {
            problem = $"has port \"{portPart.TrimStart(':')}\"; a port is a number from 1 to 65535";
            return false;
        }

        return true;
    }
}
