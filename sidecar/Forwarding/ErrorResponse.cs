using System.Buffers;
using System.Text.Json;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Http1;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>
/// The sidecar's own answers: the reason in <c>x-backendtls-error</c> and a JSON body
/// <c>{"error", "target", "detail"}</c> that a person reading curl output can act on.
/// </summary>
internal static class ErrorResponse
{
    public const string Header = "x-backendtls-error";

    // Read by people as much as by tools: keep quotes and <> unescaped.
    private static readonly JsonWriterOptions JsonOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The JSON body of an answer, one line.</summary>
    public static ReadOnlyMemory<byte> Json(ProxyFailure failure, string target)
    {
        var body = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(body, JsonOptions))
        {
            json.WriteStartObject();
            json.WriteString("error", failure.Reason);
            json.WriteString("target", target);
            json.WriteString("detail", failure.Detail);
            json.WriteEndObject();
        }

        body.Write("\n"u8);
        return body.WrittenMemory;
    }

    public static void Compose(OutputBuffer output, ProxyFailure failure, string target, bool close, bool headRequest)
    {
        var body = Json(failure, target);
        output.Write("HTTP/1.1 "u8).WriteNumber(failure.Status).Write(" "u8).WriteLatin1(StatusText(failure.Status)).Write("\r\n"u8);
        output.Write("Content-Type: application/json; charset=utf-8\r\n"u8);
        output.Write("x-backendtls-error: "u8).WriteLatin1(failure.Reason).Write("\r\n"u8);
        if (failure.Status == 405)
        {
            output.Write("Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE\r\n"u8);
        }

        output.Write("Content-Length: "u8).WriteNumber(body.Length).Write("\r\n"u8);
        if (close)
        {
            output.Write("Connection: close\r\n"u8);
        }

        output.Write("\r\n"u8);
        if (!headRequest)
        {
            output.Write(body.Span);
        }
    }

    public static string StatusText(int status) => status switch
    {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status) is { Length: > 0 } phrase ? phrase : "Unknown",
    };
}
