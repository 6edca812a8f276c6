using BackendTls.Sidecar.Demo;
using BackendTls.Tests.Support;

namespace BackendTls.Tests.Forwarding;

/// <summary>
/// What the backend receives is what the gateway sent, checked as bytes on the wire at a real TLS backend,
/// whatever code path forwards it; and what the sidecar refuses never reaches a backend at all.
/// </summary>
public sealed class WireFidelityTests : IAsyncLifetime
{
    private const string Hostname = "abc.example.com";
    private readonly CertificateAuthority _ca = CertificateAuthority.Create("CN=Wire Root");
    private System.Security.Cryptography.X509Certificates.X509Certificate2 _leaf = null!;
    private RecordingBackend _backend = null!;
    private SidecarFixture _sidecar = null!;
    private Func<RecordedRequest, byte[]?> _respond = _ => RecordingBackend.Ok;

    public async Task InitializeAsync()
    {
        _leaf = _ca.Issue("CN=backend", dnsNames: [Hostname]);
        _backend = RecordingBackend.Start(_leaf, r => _respond(r));
        _sidecar = new SidecarFixture { ResponseTimeout = TimeSpan.FromSeconds(1), BodyIdleTimeout = TimeSpan.FromSeconds(1) };
        await _sidecar.StartForBackendAsync(_backend.Port, _ca.CertificatePem, Hostname);
    }

    public async Task DisposeAsync()
    {
        await _sidecar.DisposeAsync();
        await _backend.DisposeAsync();
        _leaf.Dispose();
        _ca.Dispose();
    }

    private Task<RawResponse> SendAsync(string request) => RawConnection.ExchangeAsync(_sidecar.ListenPort, request);

    [Theory]
    [InlineData("/a%5C..%5Cadmin")]
    [InlineData("/a/%2e%2e/admin")]
    [InlineData("/a%252e%252e/x")]
    [InlineData("/a%3Fb=1")]
    [InlineData("/a%23frag/x")]
    [InlineData("/?x=%41%2e")]
    [InlineData("/objects/a%2Fb%2fc")]
    [InlineData("/a/../b/./c//d")]
    [InlineData("/caf%C3%A9?q=%E2%82%AC&r=a+b")]
    public async Task RequestTarget_ReachesTheBackendByteForByte(string target)
    {
        var response = await SendAsync($"GET {target} HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");

        Assert.Equal(200, response.Status);
        Assert.Equal($"GET {target} HTTP/1.1", Assert.Single(_backend.Requests).RequestLine);
    }

    [Fact]
    public async Task AbsoluteForm_ForwardedAsOriginForm_Undecoded_HostFromTheAuthority()
    {
        var response = await SendAsync("GET http://svc.default:8443/a%2Fb/%2e%2e?x=%41 HTTP/1.1\r\nHost: ignored.example\r\n\r\n");

        Assert.Equal(200, response.Status);
        var request = Assert.Single(_backend.Requests);
        Assert.Equal("GET /a%2Fb/%2e%2e?x=%41 HTTP/1.1", request.RequestLine);
        Assert.Equal("svc.default:8443", request.Field("Host"));
        Assert.Single(request.FieldNames, n => n.Equals("Host", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task ExplicitMode_ForwardsNowhereAPolicyDoesNotName()
    {
        using var canary = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        canary.Start();
        var port = ((System.Net.IPEndPoint)canary.LocalEndpoint).Port;
        string[] requests =
        [
            $"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
            $"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: {Hostname}\r\n\r\n",
            $"GET / HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n",
            $"GET / HTTP/1.1\r\nHost: other.default.svc.cluster.local:{port}\r\n\r\n",
            $"GET / HTTP/1.1\r\nHost: [::1]:{port}\r\n\r\n",
            $"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
            $"GET https://evil.example/ HTTP/1.1\r\nHost: {Hostname}\r\n\r\n",
        ];

        foreach (var request in requests)
        {
            var response = await SendAsync(request);
            Assert.True(response.Status is 404 or 405, $"{request.Split('\r')[0]}: {response.Status}");
        }

        Assert.False(canary.Pending(), "something connected to the canary");
        Assert.Empty(_backend.Requests);
    }

    [Fact]
    public async Task OptionsAsterisk_IsKept()
    {
        var response = await SendAsync($"OPTIONS * HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");

        Assert.Equal(200, response.Status);
        Assert.Equal("OPTIONS * HTTP/1.1", Assert.Single(_backend.Requests).RequestLine);
    }

    [Fact]
    public async Task HeaderLines_ForwardedAsReceived_InOrder_WithForwardedFor()
    {
        var response = await SendAsync($"GET / HTTP/1.1\r\nHost: {Hostname}\r\nX-Case-Kept: Value  with  spaces\r\nx-lower:v\r\nX-Forwarded-For: 10.0.0.1\r\nAccept: */*\r\n\r\n");

        Assert.Equal(200, response.Status);
        var head = Assert.Single(_backend.Requests).Head;
        Assert.Contains($"\r\nHost: {Hostname}\r\nX-Case-Kept: Value  with  spaces\r\nx-lower:v\r\nAccept: */*\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nX-Forwarded-Proto: http\r\n", head, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("POST", "Content-Length: 4\r\n\r\nbody")]
    [InlineData("PATCH", "Content-Length: 4\r\n\r\nbody")]
    [InlineData("POST", "Content-Length: 0\r\n\r\n")]
    [InlineData("POST", "\r\n")]
    public async Task NoResponse_NonIdempotentRequest_IsNeverSentAgain(string method, string rest)
    {
        _respond = r => r.IndexOnConnection == 0 ? RecordingBackend.Ok : null; // the second request on a connection gets none
        await using var gateway = await RawConnection.OpenAsync(_sidecar.ListenPort);
        await gateway.SendAsync($"GET /warm HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");
        Assert.Equal(200, (await gateway.ReadResponseAsync()).Status); // its connection is now pooled

        await gateway.SendAsync($"{method} /once HTTP/1.1\r\nHost: {Hostname}\r\n{rest}");
        var response = await gateway.ReadResponseAsync();

        Assert.Equal(502, response.Status);
        Assert.Equal("upstream_reset", response.Field("x-backendtls-error"));
        Assert.Single(_backend.Requests, r => r.RequestLine.StartsWith($"{method} /once", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("GET")]
    [InlineData("HEAD")]
    [InlineData("DELETE")]
    public async Task NoResponse_IdempotentRequestWithoutBody_IsSentAgainOnce_OnANewConnection(string method)
    {
        _respond = r => r.IndexOnConnection == 0 ? RecordingBackend.Ok : null;
        await using var gateway = await RawConnection.OpenAsync(_sidecar.ListenPort);
        await gateway.SendAsync($"GET /warm HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");
        Assert.Equal(200, (await gateway.ReadResponseAsync()).Status);

        await gateway.SendAsync($"{method} /again HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");
        var response = await gateway.ReadResponseAsync(headRequest: method == "HEAD");

        Assert.Equal(200, response.Status);
        var sent = _backend.Requests.Where(r => r.RequestLine.StartsWith($"{method} /again", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, sent.Count);
        Assert.NotEqual(sent[0].Connection, sent[1].Connection);
    }

    [Fact]
    public async Task ConnectionListedFields_DroppedBothWays()
    {
        _respond = _ => "HTTP/1.1 200 OK\r\nConnection: X-Resp, keep-alive\r\nX-Resp: hop\r\nKeep-Alive: timeout=5\r\nX-Other: end-to-end\r\nContent-Length: 2\r\n\r\nok"u8.ToArray();

        var response = await SendAsync($"GET / HTTP/1.1\r\nHost: {Hostname}\r\nConnection: keep-alive, X-Custom\r\nX-Custom: hop\r\nX-Keep: yes\r\n" +
                                       "Keep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\r\n");

        var request = Assert.Single(_backend.Requests);
        Assert.Equal(["Host", "X-Keep", "X-Forwarded-For", "X-Forwarded-Proto"], request.FieldNames);
        Assert.Equal(200, response.Status);
        Assert.Equal(["X-Other", "Content-Length"], response.FieldNames);
    }

    [Fact]
    public async Task Connect_405WithReason_NotForwarded()
    {
        var response = await SendAsync($"CONNECT {Hostname}:443 HTTP/1.1\r\nHost: {Hostname}:443\r\n\r\n");

        Assert.Equal(405, response.Status);
        Assert.Equal("method_not_allowed", response.Field("x-backendtls-error"));
        Assert.Contains("CONNECT", response.Body, StringComparison.Ordinal);
        Assert.Empty(_backend.Requests);
    }

    [Theory]
    [InlineData("abc.example.com:99999", "port")]
    [InlineData("abc.example.com..", "empty label")]
    [InlineData("abc..example.com", "empty label")]
    [InlineData("abc.example.com:", "")]
    [InlineData("abc.example.com:8x", "port")]
    [InlineData("[::1", "IPv6")]
    [InlineData("a b", "not allowed")]
    public async Task InvalidHost_400WithReason_CountedAsTheGatewaysFault(string host, string problem)
    {
        var response = await SendAsync($"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");

        if (host.EndsWith(':'))
        {
            // An empty port is valid authority syntax (RFC 3986); the name is the policy's.
            Assert.Equal(200, response.Status);
            return;
        }

        Assert.Equal(400, response.Status);
        Assert.Equal("bad_request", response.Field("x-backendtls-error"));
        Assert.Contains(problem, response.Body, StringComparison.Ordinal);
        Assert.Empty(_backend.Requests);
        Assert.Contains("backendtls_requests_total{target=\"unknown\",code=\"400\"}", await _sidecar.MetricsAsync(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("zz\r\nbody\r\n0\r\n\r\n", "chunk size")]
    [InlineData("4\r\nbodyXX\r\n0\r\n\r\n", "chunk data longer")]
    [InlineData("4\nbody\r\n0\r\n\r\n", "bare LF")]
    [InlineData("4\r\nbo", "ended")]
    public async Task MalformedChunkedBody_400_CountedAsTheGatewaysNotTheBackends(string body, string detail)
    {
        await using var gateway = await RawConnection.OpenAsync(_sidecar.ListenPort);
        await gateway.SendAsync($"POST /upload HTTP/1.1\r\nHost: {Hostname}\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        if (body.EndsWith("bo", StringComparison.Ordinal))
        {
            // A body cut short: the gateway has gone quiet; the body idle timeout answers.
            var timedOut = await gateway.ReadResponseAsync();
            Assert.Equal(408, timedOut.Status);
            return;
        }

        var response = await gateway.ReadResponseAsync();

        Assert.Equal(400, response.Status);
        Assert.Equal("bad_request", response.Field("x-backendtls-error"));
        Assert.Contains(detail, response.Body, StringComparison.Ordinal);
        var metrics = await _sidecar.MetricsAsync();
        Assert.Contains("backendtls_requests_total{target=\"default/svc:8443\",code=\"400\"} 1", metrics, StringComparison.Ordinal);
        Assert.DoesNotContain("upstream_protocol_error", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SlowUpload_IsNotCutByTheResponseTimeout()
    {
        // --response-timeout is 1 s; the upload takes about 2.5 s (the body idle timeout is generous: a busy test machine stalls).
        await using var sidecar = new SidecarFixture { ResponseTimeout = TimeSpan.FromSeconds(1), BodyIdleTimeout = TimeSpan.FromSeconds(20) };
        await sidecar.StartForBackendAsync(_backend.Port, _ca.CertificatePem, Hostname);
        await using var gateway = await RawConnection.OpenAsync(sidecar.ListenPort);
        const int Size = 25 * 10_000;
        await gateway.SendAsync($"POST /slow HTTP/1.1\r\nHost: {Hostname}\r\nContent-Length: {Size}\r\n\r\n");
        for (var i = 0; i < 25; i++)
        {
            await gateway.SendAsync(new byte[10_000]);
            await Task.Delay(100);
        }

        var response = await gateway.ReadResponseAsync();

        Assert.Equal(200, response.Status);
        Assert.Equal(Size, Assert.Single(_backend.Requests).RawBody.Length);
    }

    [Fact]
    public async Task StalledUpload_408AfterTheBodyIdleTimeout()
    {
        await using var gateway = await RawConnection.OpenAsync(_sidecar.ListenPort);
        await gateway.SendAsync($"POST /stall HTTP/1.1\r\nHost: {Hostname}\r\nContent-Length: 1000\r\n\r\n0123456789");

        var response = await gateway.ReadResponseAsync();

        Assert.Equal(408, response.Status);
        Assert.Equal("request_timeout", response.Field("x-backendtls-error"));
        Assert.Contains("--body-idle-timeout", response.Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SilentBackend_504_CountsFromTheEndOfTheRequest()
    {
        using var leaf = _ca.Issue("CN=silent", dnsNames: [Hostname]);
        var silent = RecordingBackend.Start(leaf, _ => RecordingBackend.Never);
        await using (silent)
        {
            await using var sidecar = new SidecarFixture { ResponseTimeout = TimeSpan.FromMilliseconds(600) };
            await sidecar.StartForBackendAsync(silent.Port, _ca.CertificatePem, Hostname);

            var response = await RawConnection.ExchangeAsync(sidecar.ListenPort, $"GET / HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");

            Assert.True(response.Status == 504, response.Body);
            Assert.Equal("upstream_timeout", response.Field("x-backendtls-error"));
        }
    }

    [Fact]
    public async Task H2cUpgrade_501WithReason_NotForwarded()
    {
        var response = await SendAsync($"GET /chat HTTP/1.1\r\nHost: {Hostname}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n");

        Assert.Equal(501, response.Status);
        Assert.Equal("upgrade_not_supported", response.Field("x-backendtls-error"));
        Assert.Empty(_backend.Requests);
    }

    [Fact]
    public async Task WebSocketUpgrade_ReachesTheBackend_WithItsUpgradeAndOneConnectionOption()
    {
        // The backend declines (200): the gateway gets that answer, and the backend saw the upgrade as sent.
        var response = await SendAsync($"GET /chat HTTP/1.1\r\nHost: {Hostname}\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");

        Assert.Equal(200, response.Status);
        var request = Assert.Single(_backend.Requests);
        Assert.Equal("websocket", request.Field("Upgrade"));
        Assert.Equal("upgrade", request.Field("Connection"));
        Assert.Equal(["Host", "Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "X-Forwarded-For", "X-Forwarded-Proto", "Connection"], request.FieldNames);
    }

    [Fact]
    public async Task UpgradeFieldWithoutItsConnectionOption_IsDropped_AndTheRequestForwardedPlain()
    {
        // RFC 9110 §7.8: without "upgrade" in Connection the field is not an upgrade request; it is hop-by-hop.
        var response = await SendAsync($"GET /chat HTTP/1.1\r\nHost: {Hostname}\r\nUpgrade: websocket\r\n\r\n");

        Assert.Equal(200, response.Status);
        Assert.Null(Assert.Single(_backend.Requests).Field("Upgrade"));
    }

    /// <summary>Framing a backend could read differently from us: refused, and nothing reaches the backend (RFC 9112).</summary>
    [Theory]
    [InlineData("POST / HTTP/1.1\r\nHost: H\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "both Transfer-Encoding and Content-Length")]
    [InlineData("POST / HTTP/1.1\r\nHost: H\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, "more than one Content-Length")]
    [InlineData("POST / HTTP/1.1\r\nHost: H\r\nContent-Length: 3, 3\r\n\r\nabc", 400, "invalid Content-Length")]
    [InlineData("POST / HTTP/1.1\r\nHost: H\r\nContent-Length: +3\r\n\r\nabc", 400, "invalid Content-Length")]
    [InlineData("POST / HTTP/1.1\r\nHost: H\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "only chunked")]
    [InlineData("POST / HTTP/1.1\r\nHost: H\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "more than one Transfer-Encoding")]
    [InlineData("POST / HTTP/1.1\r\nHost: H\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, "whitespace between a header name and its colon")]
    [InlineData("GET / HTTP/1.1\nHost: H\n\n", 400, "bare LF")]
    [InlineData("GET / HTTP/1.1\r\nHost: H\r\nX-Folded: a\r\n b\r\n\r\n", 400, "obs-fold")]
    [InlineData("GET / HTTP/1.1\r\nHost: H\r\nHost: H\r\n\r\n", 400, "more than one Host")]
    [InlineData("GET / HTTP/1.1\r\n\r\n", 400, "must carry a Host")]
    [InlineData("GET / HTTP/1.1\r\nHost: H\r\nX-Nul: a\0b\r\n\r\n", 400, "control character")]
    [InlineData("GET /a b HTTP/1.1\r\nHost: H\r\n\r\n", 400, "a space")]
    [InlineData("GET /a#frag HTTP/1.1\r\nHost: H\r\n\r\n", 400, "fragment")]
    [InlineData("GET / HTTP/2.0\r\nHost: H\r\n\r\n", 505, "HTTP/2.0 is not supported")]
    [InlineData("G@T / HTTP/1.1\r\nHost: H\r\n\r\n", 400, "method")]
    [InlineData("POST / HTTP/1.0\r\nHost: H\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "HTTP/1.0")]
    public async Task AmbiguousOrMalformedRequest_Refused_NothingReachesTheBackend(string request, int status, string detail)
    {
        var response = await SendAsync(request.Replace("Host: H", $"Host: {Hostname}", StringComparison.Ordinal));

        Assert.Equal(status, response.Status);
        Assert.Contains(detail, response.Body, StringComparison.Ordinal);
        Assert.Equal("close", response.Field("Connection"));
        Assert.Empty(_backend.Requests);
    }

    [Fact]
    public async Task OversizedHead_431_NothingForwarded()
    {
        var response = await SendAsync($"GET / HTTP/1.1\r\nHost: {Hostname}\r\nX-Big: {new string('a', 40_000)}\r\n\r\n");

        Assert.Equal(431, response.Status);
        Assert.Empty(_backend.Requests);
    }

    [Fact]
    public async Task ChunkedBodies_ReframedBothWays_TrailersKept()
    {
        _respond = r => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Checksum: 42\r\n\r\n"u8.ToArray();

        var response = await SendAsync($"POST /up HTTP/1.1\r\nHost: {Hostname}\r\nTransfer-Encoding: chunked\r\n\r\n5;name=x\r\nhello\r\n1\r\n!\r\n0\r\nX-Sent: 1\r\n\r\n");

        var request = Assert.Single(_backend.Requests);
        Assert.Equal("chunked", request.Field("Transfer-Encoding"));
        var body = System.Text.Encoding.ASCII.GetString(request.RawBody);
        Assert.Equal("5\r\nhello\r\n1\r\n!\r\n0\r\nX-Sent: 1\r\n\r\n", body);
        Assert.Equal(200, response.Status);
        Assert.Equal("abcde", response.Body);
        Assert.Contains("X-Checksum: 42", response.Head, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExpectContinue_InterimResponsePassedOn_BodyFollows()
    {
        _respond = _ => RecordingBackend.Ok;
        await using var gateway = await RawConnection.OpenAsync(_sidecar.ListenPort);
        await gateway.SendAsync($"POST /e HTTP/1.1\r\nHost: {Hostname}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        await Task.Delay(200); // the gateway waits for 100 Continue; the recording backend does not send one
        await gateway.SendAsync("hello");

        var response = await gateway.ReadResponseAsync();

        Assert.Equal(200, response.Status);
        var request = Assert.Single(_backend.Requests);
        Assert.Equal("100-continue", request.Field("Expect"));
        Assert.Equal("hello", System.Text.Encoding.ASCII.GetString(request.RawBody));
    }

    [Fact]
    public async Task Pipelined_Requests_AnsweredInOrder()
    {
        _respond = r => System.Text.Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{r.RequestLine.Split(' ')[1][1..]}");
        await using var gateway = await RawConnection.OpenAsync(_sidecar.ListenPort);
        await gateway.SendAsync($"GET /a1 HTTP/1.1\r\nHost: {Hostname}\r\n\r\nGET /b2 HTTP/1.1\r\nHost: {Hostname}\r\n\r\nPOST /c3 HTTP/1.1\r\nHost: {Hostname}\r\nContent-Length: 2\r\n\r\nhi");

        Assert.Equal("a1", (await gateway.ReadResponseAsync()).Body);
        Assert.Equal("b2", (await gateway.ReadResponseAsync()).Body);
        Assert.Equal("c3", (await gateway.ReadResponseAsync()).Body);
    }

    [Fact]
    public async Task CloseDelimitedResponse_ChunkedToHttp11_ClosedForHttp10()
    {
        _respond = _ => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"u8.ToArray();

        var http11 = await SendAsync($"GET / HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");
        var http10 = await SendAsync($"GET / HTTP/1.0\r\nHost: {Hostname}\r\n\r\n");

        Assert.Equal(("chunked", "until the end"), (http11.Field("Transfer-Encoding"), http11.Body));
        Assert.Equal((null, "until the end"), (http10.Field("Transfer-Encoding"), http10.Body));
    }

    [Fact]
    public async Task HeadAnd204And304_HaveNoBody_ConnectionStaysUsable()
    {
        _respond = r => r.RequestLine.StartsWith("HEAD", StringComparison.Ordinal)
            ? "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"u8.ToArray()
            : r.RequestLine.Contains("/204", StringComparison.Ordinal) ? "HTTP/1.1 204 No Content\r\n\r\n"u8.ToArray()
            : "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"u8.ToArray();
        await using var gateway = await RawConnection.OpenAsync(_sidecar.ListenPort);

        await gateway.SendAsync($"HEAD / HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");
        var head = await gateway.ReadResponseAsync(headRequest: true);
        await gateway.SendAsync($"GET /204 HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");
        var noContent = await gateway.ReadResponseAsync();
        await gateway.SendAsync($"GET /304 HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");
        var notModified = await gateway.ReadResponseAsync();

        Assert.Equal((200, "1000"), (head.Status, head.Field("Content-Length")));
        Assert.Equal(204, noContent.Status);
        Assert.Equal(304, notModified.Status);
        Assert.Single(_backend.Requests.Select(r => r.Connection).Distinct());
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc")]
    [InlineData("HTTP/1.1 200 OK\nContent-Length: 2\n\nok")]
    [InlineData("HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok")]
    [InlineData("SSH-2.0-OpenSSH_9.2\r\n\r\n")]
    public async Task BackendsAmbiguousResponse_502UpstreamProtocolError(string response)
    {
        _respond = _ => System.Text.Encoding.ASCII.GetBytes(response);

        var answer = await SendAsync($"GET / HTTP/1.1\r\nHost: {Hostname}\r\n\r\n");

        Assert.Equal(502, answer.Status);
        Assert.Equal("upstream_protocol_error", answer.Field("x-backendtls-error"));
    }
}
