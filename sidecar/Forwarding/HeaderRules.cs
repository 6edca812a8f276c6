using System.Collections.Frozen;
using Microsoft.Net.Http.Headers;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>Which headers are the connection's own (RFC 9110 §7.6.1) and never cross the proxy.</summary>
internal static class HeaderRules
{
    private static readonly FrozenSet<string> HopByHop = new[]
    {
        HeaderNames.Connection, HeaderNames.KeepAlive, HeaderNames.ProxyAuthenticate, HeaderNames.ProxyAuthorization,
        "Proxy-Connection", HeaderNames.TE, HeaderNames.Trailer, HeaderNames.TransferEncoding, HeaderNames.Upgrade,
    }.ToFrozenSet(StringComparer.OrdinalIgnoreCase);

    /// <summary>Content headers belong on HttpContent, not on the request message.</summary>
    private static readonly FrozenSet<string> Content = new[]
    {
        HeaderNames.ContentLength, HeaderNames.ContentType, HeaderNames.ContentEncoding, HeaderNames.ContentLanguage,
        HeaderNames.ContentLocation, HeaderNames.ContentMD5, HeaderNames.ContentRange, HeaderNames.ContentDisposition,
        HeaderNames.Expires, HeaderNames.LastModified, HeaderNames.Allow,
    }.ToFrozenSet(StringComparer.OrdinalIgnoreCase);

    public static bool IsHopByHop(string name) => HopByHop.Contains(name);

    public static bool IsContentHeader(string name) => Content.Contains(name);
}
