using System.Net;
using System.Net.Sockets;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Http1;
using BackendTls.Sidecar.Telemetry;
using BackendTls.Sidecar.Upstreams;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>
/// Forwards one HTTP/1.1 exchange over a pooled, verified TLS connection, in order:
/// (1) a connection from the target's pool, or a new one;
/// (2) the request head as received (the request-target byte for byte, hop-by-hop fields dropped,
///     X-Forwarded-* added), with a small body in the same write;
/// (3) the rest of the body, streamed, while the response may already come back;
/// (4) the response head (1xx passed on), then its body, streamed and re-framed for the gateway;
/// (5) the connection back to the pool only if both messages ended cleanly.
/// A request is sent again only when that is safe: idempotent, without a body, on a reused connection
/// that failed before any response byte (RFC 9110 §9.2.2).
/// </summary>
internal static class Http1Lane
{
    /// <summary>Bodies up to this size that have already arrived go out with the head, in one TLS record.</summary>
    private const int InlineBodyLimit = 8 * 1024;

    public static async ValueTask<ExchangeOutcome> ForwardAsync(ProxyConnection client, UpstreamTarget target, EndPoint endpoint)
    {
        var request = client.Request;
        var retryable = request.Framing == BodyFraming.None && HttpMethodNames.IsIdempotent(request.Method);
        for (var attempt = 0; ; attempt++)
        {
            // (1) A retry never takes a pooled connection: the one that failed was pooled, and so are its siblings.
            var upstream = attempt == 0 ? target.Pool.Rent(endpoint) : null;
            var reused = upstream is not null;
            if (upstream is null)
            {
                upstream = await ConnectAsync(client, target, endpoint, offerHttp2: !target.ProtocolKnown && !request.WantsUpgrade);
                if (upstream.NegotiatedHttp2)
                {
                    upstream.Dispose();
                    return ExchangeOutcome.SwitchToHttp2;
                }
            }

            upstream.Uses++;
            var result = await ExchangeAsync(client, target, upstream, retryAllowed: reused && retryable && attempt == 0);
            if (result is { } outcome)
            {
                return outcome;
            }
        }
    }

    private static async ValueTask<UpstreamConnection> ConnectAsync(ProxyConnection client, UpstreamTarget target, EndPoint endpoint, bool offerHttp2)
    {
        try
        {
            return await target.Connector!.ConnectAsync(endpoint, offerHttp2, client.Token);
        }
        catch (UpstreamFailureException e)
        {
            throw new ProxyFailureException(ProxyFailure.From(e), logged: true);
        }
        catch (OperationCanceledException)
        {
            throw new ClientGoneException(); // only shutdown cancels a connect
        }
    }

    /// <summary>Null when the request should go again on a new connection (it was not processed).</summary>
    private static async ValueTask<ExchangeOutcome?> ExchangeAsync(ProxyConnection client, UpstreamTarget target, UpstreamConnection upstream, bool retryAllowed)
    {
        var request = client.Request;
        var token = client.Token;

        // (2) Head, and the body too when it is small and already here.
        var output = client.Output;
        ComposeRequestHead(client, target, output);
        if (request.Framing == BodyFraming.ContentLength && request.ContentLength <= InlineBodyLimit && client.Input.Available >= request.ContentLength)
        {
            ReadOnlyMemory<byte> data;
            while (!(data = await client.RequestBody.ReadAsync(token)).IsEmpty)
            {
                output.Write(data.Span);
            }
        }

        try
        {
            await output.FlushToAsync(upstream.Stream, token);
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            upstream.Dispose();
            if (retryAllowed)
            {
                return null;
            }

            throw new ProxyFailureException(new ProxyFailure(502, FailureReason.UpstreamReset,
                "the backend closed the connection while the request was being sent"));
        }
        catch (OperationCanceledException)
        {
            upstream.Dispose();
            throw new ClientGoneException();
        }

        // (3) The rest of the body, concurrently with (4).
        var upload = client.RequestBody.IsComplete ? null : UploadAsync(client, upstream, request.Chunked);

        // (4) Response head.
        try
        {
            if (upload is null)
            {
                client.SetDeadline(TimeoutKind.ResponseHeaders, target.ResponseTimeout);
                await ReadResponseHeadAsync(client, upstream, request);
            }
            else
            {
                // --response-timeout counts from the end of the request, not through a slow upload.
                var head = ReadResponseHeadAsync(client, upstream, request).AsTask();
                if (await Task.WhenAny(upload, head) == upload)
                {
                    client.SetDeadline(TimeoutKind.ResponseHeaders, target.ResponseTimeout);
                }

                await head;
            }
        }
        catch (UpstreamReadException e)
        {
            upstream.Dispose();
            var uploadResult = upload is null ? UploadResult.Sent : await upload;
            if (ClientFailure(client, uploadResult) is { } clientFailure)
            {
                throw clientFailure;
            }

            if (target.Connector!.ClientCertificateRefusal(e.InnerException ?? e, closedBeforeAnswer: e.NothingReceived && upstream.Uses == 1 && client.TimedOut == TimeoutKind.None) is { } refused)
            {
                throw new ProxyFailureException(ProxyFailure.From(refused), logged: true); // TLS 1.3: refused after the handshake
            }

            if (e.NothingReceived && retryAllowed)
            {
                return null;
            }

            throw new ProxyFailureException(Classify(client, target, e));
        }
        finally
        {
            client.ClearDeadline();
        }

        return client.Response.StatusCode == 101
            ? await UpgradeTunnel.RunAsync(client, target, upstream)
            : await ForwardResponseAsync(client, target, upstream, upload);
    }

    private static Exception? ClientFailure(ProxyConnection client, UploadResult upload) => upload switch
    {
        UploadResult.ClientBodyInvalid => new ProxyFailureException(new ProxyFailure(400, FailureReason.BadRequest, client.UploadError ?? "the request body is malformed")),
        UploadResult.ClientTimeout => new ProxyFailureException(new ProxyFailure(408, FailureReason.RequestTimeout,
            $"the request body stopped arriving for {client.Context.Settings.BodyIdleTimeout.TotalSeconds:0.###}s (--body-idle-timeout)")),
        UploadResult.ClientGone => new ClientGoneException(),
        _ => null,
    };

    private static ProxyFailure Classify(ProxyConnection client, UpstreamTarget target, UpstreamReadException e)
    {
        if (e.Protocol is { } protocol)
        {
            return new ProxyFailure(502, FailureReason.UpstreamProtocolError, $"the backend did not send a valid HTTP/1.1 response: {protocol}");
        }

        return client.TimedOut switch
        {
            TimeoutKind.ResponseHeaders => new ProxyFailure(504, FailureReason.UpstreamTimeout,
                $"the backend sent no response headers within {target.ResponseTimeout.TotalSeconds:0.###}s of the request (--response-timeout)"),
            TimeoutKind.BodyStalled => new ProxyFailure(504, FailureReason.UpstreamTimeout,
                $"the backend stopped reading the request body for {client.Context.Settings.BodyIdleTimeout.TotalSeconds:0.###}s (--body-idle-timeout)"),
            TimeoutKind.Shutdown => new ProxyFailure(503, FailureReason.NotReady, "the sidecar is shutting down; retry"),
            _ when e.NothingReceived => new ProxyFailure(502, FailureReason.UpstreamReset,
                "the backend closed the connection without sending a response"),
            _ => new ProxyFailure(502, FailureReason.UpstreamReset, "the backend closed the connection in the middle of the response head"),
        };
    }

    private static void ComposeRequestHead(ProxyConnection client, UpstreamTarget target, OutputBuffer output)
    {
        var request = client.Request;
        output.WriteLatin1(request.Method).Write(" "u8).Write(request.ForwardedTarget).Write(" HTTP/1.1\r\n"u8);
        if (request.Form == TargetForm.Absolute)
        {
            // RFC 9112 §3.2.2: the authority of an absolute-form target replaces the Host header.
            output.Write("Host: "u8).WriteLatin1(request.Host!).Write("\r\n"u8);
        }
        else if (request.Host is null)
        {
            // An HTTP/1.0 request without Host (on a dedicated port): HTTP/1.1 to the backend needs one.
            output.Write("Host: "u8).WriteLatin1(target.Sni).Write("\r\n"u8);
        }

        var forwardedFor = 0;
        var forwardedProto = false;
        foreach (var field in request.Fields)
        {
            switch (field.Kind)
            {
                case FieldKind.HopByHop when request.WantsUpgrade && HttpSyntax.EqualsLower(request.Name(field), "upgrade"u8):
                    break; // the upgrade travels on (RFC 9110 §7.8), with its Connection option below
                case FieldKind.Host when request.Form == TargetForm.Absolute:
                case FieldKind.TransferEncoding:
                case FieldKind.Connection:
                case FieldKind.HopByHop:
                case FieldKind.ConnectionListed:
                    continue;
                case FieldKind.XForwardedFor:
                    forwardedFor++;
                    continue;
                case FieldKind.XForwardedProto:
                    forwardedProto = true;
                    break;
            }

            // The field line as received: name, the same separator, value.
            output.Write(request.Line(field)).Write("\r\n"u8);
        }

        output.Write("X-Forwarded-For: "u8);
        if (forwardedFor > 0)
        {
            foreach (var field in request.Fields)
            {
                if (field.Kind == FieldKind.XForwardedFor)
                {
                    output.Write(request.Value(field)).Write(", "u8);
                }
            }
        }

        output.Write(client.RemoteAddress).Write("\r\n"u8);
        if (!forwardedProto)
        {
            output.Write("X-Forwarded-Proto: http\r\n"u8);
        }

        if (request.Chunked)
        {
            output.Write("Transfer-Encoding: chunked\r\n"u8);
        }

        if (request.WantsUpgrade)
        {
            output.Write("Connection: upgrade\r\n"u8);
        }

        output.Write("\r\n"u8);
    }

    private enum UploadResult
    {
        Sent,
        ClientBodyInvalid,
        ClientTimeout,
        ClientGone,
        UpstreamFailed,
    }

    /// <summary>Streams the request body to the backend; chunked bodies are re-framed (and their trailers kept).</summary>
    private static async Task<UploadResult> UploadAsync(ProxyConnection client, UpstreamConnection upstream, bool chunked)
    {
        var body = client.RequestBody;
        var output = client.UploadOutput;
        var idle = client.Context.Settings.BodyIdleTimeout;
        var readingClient = true;
        try
        {
            while (true)
            {
                readingClient = true;
                client.SetUploadDeadline(TimeoutKind.RequestBody, idle);
                var data = await body.ReadAsync(client.Token);
                readingClient = false;
                client.SetUploadDeadline(TimeoutKind.BodyStalled, idle);
                if (data.IsEmpty)
                {
                    break;
                }

                if (chunked)
                {
                    output.WriteHex(data.Length).Write("\r\n"u8).Write(data.Span).Write("\r\n"u8);
                    await output.FlushToAsync(upstream.Stream, client.Token);
                }
                else
                {
                    await upstream.Stream.WriteAsync(data, client.Token);
                }
            }

            if (chunked)
            {
                output.Write("0\r\n"u8).Write(body.Trailers.Span).Write("\r\n"u8);
                await output.FlushToAsync(upstream.Stream, client.Token);
            }

            return UploadResult.Sent;
        }
        catch (HttpBodyException e)
        {
            client.UploadError = e.Detail;
            upstream.Dispose(); // stop waiting for a response to a request that cannot complete
            return UploadResult.ClientBodyInvalid;
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            if (client.TimedOut == TimeoutKind.RequestBody)
            {
                return UploadResult.ClientTimeout;
            }

            if (readingClient)
            {
                upstream.Dispose();
                return UploadResult.ClientGone;
            }

            // The backend stopped reading; it may still have answered (e.g. 413 before the body).
            return UploadResult.UpstreamFailed;
        }
        finally
        {
            client.ClearUploadDeadline();
        }
    }

    private static async ValueTask<ResponseHead> ReadResponseHeadAsync(ProxyConnection client, UpstreamConnection upstream, RequestHead request)
    {
        var response = client.Response;
        var input = upstream.Input;
        var received = false;
        try
        {
            while (true)
            {
                if (input.Available > 0)
                {
                    received = true;
                    var status = Http1Parser.ParseResponse(input.Array, input.Start, input.Available, response, out var consumed, out var error);
                    if (status == ParseStatus.Invalid)
                    {
                        throw new UpstreamReadException(false, error.Detail);
                    }

                    if (status == ParseStatus.Complete)
                    {
                        input.Consume(consumed);
                        if (response.StatusCode >= 200)
                        {
                            return response;
                        }

                        if (response.StatusCode == 101)
                        {
                            return request.WantsUpgrade ? response
                                : throw new UpstreamReadException(false, "101 Switching Protocols to a request that asked for no upgrade");
                        }

                        // 1xx: interim responses go on to HTTP/1.1 gateways (RFC 9110 §15.2); then read on.
                        if (request.Version >= 11)
                        {
                            client.Output.Write("HTTP/1.1 "u8).WriteNumber(response.StatusCode).Write(" "u8).Write(response.Reason).Write("\r\n"u8);
                            WriteEndToEndFields(response, client.Output);
                            client.Output.Write("\r\n"u8);
                            await client.Output.FlushToAsync(client.Stream, client.Token);
                        }

                        continue;
                    }
                }

                if (!await input.FillAsync(Http1Parser.MaxResponseHeadBytes + InputBuffer.BlockSize, client.Token))
                {
                    throw new UpstreamReadException(!received, null);
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            throw new UpstreamReadException(!received && input.Available == 0, null, e);
        }
    }

    public static void WriteEndToEndFields(HttpHead head, OutputBuffer output)
    {
        foreach (var field in head.Fields)
        {
            if (field.Kind is FieldKind.TransferEncoding or FieldKind.Connection or FieldKind.HopByHop or FieldKind.ConnectionListed)
            {
                continue;
            }

            output.Write(head.Line(field)).Write("\r\n"u8);
        }
    }

    private static async ValueTask<ExchangeOutcome> ForwardResponseAsync(ProxyConnection client, UpstreamTarget target, UpstreamConnection upstream, Task<UploadResult>? upload)
    {
        var request = client.Request;
        var response = client.Response;
        var status = response.StatusCode;
        var framing = response.FramingFor(request.IsHead);
        var chunkedOut = framing == BodyFraming.Chunked || (framing == BodyFraming.UntilClose && request.Version >= 11);
        var uploadDone = upload is null || upload.IsCompleted;
        var keepAlive = request.KeepAlive && !client.Draining && uploadDone && !(framing == BodyFraming.UntilClose && !chunkedOut);

        // (4) Head for the gateway.
        var output = client.Output;
        output.Write("HTTP/1.1 "u8).WriteNumber(status).Write(" "u8).Write(response.Reason).Write("\r\n"u8);
        WriteEndToEndFields(response, output);
        if (chunkedOut)
        {
            output.Write("Transfer-Encoding: chunked\r\n"u8);
        }

        if (!keepAlive && request.Version >= 11)
        {
            output.Write("Connection: close\r\n"u8);
        }
        else if (keepAlive && request.Version == 10)
        {
            output.Write("Connection: keep-alive\r\n"u8);
        }

        output.Write("\r\n"u8);

        // Body.
        var body = client.ResponseBody;
        body.Start(upstream.Input, framing, response.ContentLength, "the backend's response");
        var idle = client.Context.Settings.BodyIdleTimeout;
        var completed = false;
        try
        {
            while (true)
            {
                if (output.Length > 0 && upstream.Input.Available == 0)
                {
                    await output.FlushToAsync(client.Stream, client.Token); // don't hold the head back while the body is slow
                }

                client.SetDeadline(TimeoutKind.BodyStalled, idle);
                ReadOnlyMemory<byte> data;
                try
                {
                    data = await body.ReadAsync(client.Token);
                }
                catch (Exception e) when (e is HttpBodyException or IOException or SocketException)
                {
                    Log.UpstreamResponseAborted(client.Context.Logger, target.Id, e is HttpBodyException b ? b.Detail : SocketErrorText.Describe(e));
                    break;
                }

                if (data.IsEmpty)
                {
                    if (chunkedOut)
                    {
                        output.Write("0\r\n"u8).Write(body.Trailers.Span).Write("\r\n"u8);
                    }

                    if (output.Length > 0)
                    {
                        await output.FlushToAsync(client.Stream, client.Token);
                    }

                    completed = true;
                    break;
                }

                if (chunkedOut)
                {
                    output.WriteHex(data.Length).Write("\r\n"u8).Write(data.Span).Write("\r\n"u8);
                    await output.FlushToAsync(client.Stream, client.Token);
                }
                else if (output.Length > 0)
                {
                    output.Write(data.Span);
                    await output.FlushToAsync(client.Stream, client.Token);
                }
                else
                {
                    await client.Stream.WriteAsync(data, client.Token);
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
        {
            // The gateway stopped reading, or the body stalled past --body-idle-timeout: the head is gone, only closing is left.
            if (client.TimedOut == TimeoutKind.BodyStalled)
            {
                Log.UpstreamResponseAborted(client.Context.Logger, target.Id,
                    $"the response body stalled for {idle.TotalSeconds:0.###}s (--body-idle-timeout)");
            }
        }
        finally
        {
            client.ClearDeadline();
        }

        // (5) Reuse only what ended cleanly.
        if (upload is not null && !upload.IsCompleted)
        {
            // The backend answered before the body was sent: this request cannot complete, and the gateway's
            // connection (told Connection: close) must not wait for the rest of a body nobody reads.
            upstream.Dispose();
            client.CancelExchange();
        }

        var uploaded = upload is null || await upload == UploadResult.Sent;
        if (completed && uploaded && response.KeepAlive && framing != BodyFraming.UntilClose && upstream.Input.Available == 0 && !upstream.IsDisposed)
        {
            target.Pool.Return(upstream);
        }
        else
        {
            upstream.Dispose();
        }

        return new ExchangeOutcome(status, completed && keepAlive && client.RequestBody.IsComplete);
    }

    /// <summary>Reading the backend's response head failed; <see cref="NothingReceived"/> makes a retry safe.</summary>
    private sealed class UpstreamReadException(bool nothingReceived, string? protocol, Exception? inner = null)
        : Exception(protocol ?? "the backend connection failed", inner)
    {
        public bool NothingReceived { get; } = nothingReceived;

        /// <summary>Set when the backend sent something that is not HTTP/1.1.</summary>
        public string? Protocol { get; } = protocol;
    }
}
