using System.Buffers;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using BackendTls.Sidecar.Failures;
using BackendTls.Sidecar.Http1;
using BackendTls.Sidecar.Telemetry;
using BackendTls.Sidecar.Upstreams;

namespace BackendTls.Sidecar.Forwarding;

/// <summary>
/// Forwards one exchange to a backend that chose h2, through the target's SocketsHttpHandler: the same
/// header rules as the HTTP/1.1 lane (the fields it forwards, X-Forwarded-*), the request-target never
/// decoded, bodies streamed both ways, and failures classified into the same reasons.
/// </summary>
internal static class Http2Lane
{
    /// <summary>The request-target as the gateway sent it: never decoded or normalised (shared with the h2c lane).</summary>
    public static readonly UriCreationOptions RawTarget = new() { DangerousDisablePathAndQueryCanonicalization = true };

    /// <summary>
    /// Where a request to the target goes: the policy hostname's URI (the connector dials the Service), or a
    /// captured connection's original destination. Shared with the h2c lane.
    /// </summary>
    public static string BaseUri(UpstreamTarget target, IPEndPoint? destination) => destination is null
        ? target.Http2BaseUri
        : $"https://{(destination.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{destination.Address}]" : destination.Address.ToString())}:{destination.Port}";

    /// <summary>The connection's own fields (RFC 9110 §7.6.1), never forwarded either way by the HTTP/2 lanes.</summary>
    public static bool IsHopByHop(string name) => HopByHop.Contains(name);

    /// <param name="client">The gateway's connection.</param>
    /// <param name="target">The target.</param>
    /// <param name="destination">A captured connection's original destination; null: the target's Service address.</param>
    public static async ValueTask<ExchangeOutcome> ForwardAsync(ProxyConnection client, UpstreamTarget target, IPEndPoint? destination)
    {
        var request = client.Request;
        using var message = CreateRequest(client, target, destination);
        var content = message.Content as RequestBodyContent;
        HttpResponseMessage response;
        try
        {
            var send = target.Http2Invoker!.SendAsync(message, client.Token);
            if (content is null)
            {
                client.SetDeadline(TimeoutKind.ResponseHeaders, target.ResponseTimeout);
            }
            else if (await Task.WhenAny(send, content.Sent) == content.Sent)
            {
                client.SetDeadline(TimeoutKind.ResponseHeaders, target.ResponseTimeout); // from the end of the request
            }

            response = await send;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            throw Classify(client, target, content, e);
        }
        finally
        {
            client.ClearDeadline();
        }

        using (response)
        {
            return await ForwardResponseAsync(client, target, request, response);
        }
    }

    private static HttpRequestMessage CreateRequest(ProxyConnection client, UpstreamTarget target, IPEndPoint? destination)
    {
        var request = client.Request;
        // The URI's authority keys the handler's pool and is where it connects: the policy hostname (then the
        // connector dials the Service), or a captured connection's original destination. The SNI is always
        // the policy hostname (the handler's TargetHost), the :authority the gateway's Host.
        var message = new HttpRequestMessage(HttpMethod.Parse(request.Method), new Uri(BaseUri(target, destination) + Encoding.ASCII.GetString(request.ForwardedTarget), RawTarget))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };

        if (request.Framing != BodyFraming.None)
        {
            message.Content = new RequestBodyContent(client);
        }

        var forwardedFor = new StringBuilder();
        var forwardedProto = false;
        foreach (var field in request.Fields)
        {
            switch (field.Kind)
            {
                case FieldKind.Forwarded or FieldKind.XForwardedProto:
                    forwardedProto |= field.Kind == FieldKind.XForwardedProto;
                    var name = Encoding.ASCII.GetString(request.Name(field));
                    var value = Encoding.Latin1.GetString(request.Value(field));
                    if (!message.Headers.TryAddWithoutValidation(name, value))
                    {
                        message.Content?.Headers.TryAddWithoutValidation(name, value);
                    }

                    break;
                case FieldKind.XForwardedFor:
                    forwardedFor.Append(Encoding.Latin1.GetString(request.Value(field))).Append(", ");
                    break;
            }
        }

        // The backend sees the Host the gateway sent; h2 is chosen only when it is the policy hostname.
        message.Headers.Host = request.Host ?? target.Sni;
        message.Headers.TryAddWithoutValidation("X-Forwarded-For", forwardedFor.Append(Encoding.ASCII.GetString(client.RemoteAddress)).ToString());
        if (!forwardedProto)
        {
            message.Headers.TryAddWithoutValidation("X-Forwarded-Proto", "http");
        }

        return message;
    }

    private static Exception Classify(ProxyConnection client, UpstreamTarget target, RequestBodyContent? content, Exception e)
    {
        if (content?.ClientFailure is { } clientFailure)
        {
            return clientFailure;
        }

        if (e is OperationCanceledException && UpstreamCause(e) is null)
        {
            return client.TimedOut switch
            {
                TimeoutKind.ResponseHeaders => new ProxyFailureException(new ProxyFailure(504, FailureReason.UpstreamTimeout,
                    $"the backend sent no response headers within {target.ResponseTimeout.TotalSeconds:0.###}s of the request (--response-timeout)")),
                TimeoutKind.Shutdown => new ProxyFailureException(new ProxyFailure(503, FailureReason.NotReady, "the sidecar is shutting down; retry")),
                _ => new ClientGoneException(e),
            };
        }

        return UpstreamFailure(target, e);
    }

    /// <summary>
    /// A failure of the backend side of an HTTP/2 exchange in the proxy's reasons: verification and
    /// connection failures as the connector classified them, else a reset or protocol error. Shared by the
    /// h2c lane, so both report the same reasons.
    /// </summary>
    public static ProxyFailureException UpstreamFailure(UpstreamTarget target, Exception e)
    {
        if (UpstreamCause(e) is { } failure)
        {
            return new ProxyFailureException(ProxyFailure.From(failure), logged: true);
        }

        if (target.Connector?.ClientCertificateRefusal(e, closedBeforeAnswer: e is HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded }) is { } refused)
        {
            return new ProxyFailureException(ProxyFailure.From(refused), logged: true);
        }

        if (e is HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError }
            && target.Connector!.ClassifyHandshakeFailure(e.InnerException ?? e, target.AddressEndPoint, clientCancelled: false) is UpstreamFailureException handshake)
        {
            return new ProxyFailureException(ProxyFailure.From(handshake), logged: true);
        }

        var reason = e is HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded } ? FailureReason.UpstreamReset : FailureReason.UpstreamProtocolError;
        return new ProxyFailureException(new ProxyFailure(502, reason, $"the backend did not send a valid response: {SocketErrorText.Describe(e)}"));
    }

    private static UpstreamFailureException? UpstreamCause(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is UpstreamFailureException failure)
            {
                return failure;
            }
        }

        return null;
    }

    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Transfer-Encoding", "Upgrade", "Proxy-Authenticate",
    };

    private static async ValueTask<ExchangeOutcome> ForwardResponseAsync(ProxyConnection client, UpstreamTarget target, RequestHead request, HttpResponseMessage response)
    {
        var status = (int)response.StatusCode;
        var noBody = request.IsHead || status is < 200 or 204 or 304;
        var length = response.Content.Headers.NonValidated.Contains("Content-Length");
        var chunkedOut = !noBody && !length && request.Version >= 11;
        var keepAlive = request.KeepAlive && !client.Draining && (noBody || length || chunkedOut);

        var output = client.Output;
        output.Write("HTTP/1.1 "u8).WriteNumber(status).Write(" "u8).WriteLatin1(ErrorResponse.StatusText(status)).Write("\r\n"u8);
        foreach (var (name, values) in response.Headers.NonValidated)
        {
            if (!HopByHop.Contains(name))
            {
                WriteField(output, name, values);
            }
        }

        foreach (var (name, values) in response.Content.Headers.NonValidated)
        {
            WriteField(output, name, values);
        }

        if (chunkedOut)
        {
            output.Write("Transfer-Encoding: chunked\r\n"u8);
        }

        output.Write(keepAlive ? (request.Version == 10 ? "Connection: keep-alive\r\n"u8 : ""u8) : "Connection: close\r\n"u8);
        output.Write("\r\n"u8);

        var completed = false;
        var buffer = ArrayPool<byte>.Shared.Rent(InputBuffer.BlockSize);
        try
        {
            await output.FlushToAsync(client.Stream, client.Token);
            if (!noBody)
            {
                await using var body = await response.Content.ReadAsStreamAsync(client.Token);
                int read;
                while (true)
                {
                    client.SetDeadline(TimeoutKind.BodyStalled, client.Context.Settings.BodyIdleTimeout);
                    read = await body.ReadAsync(buffer, client.Token);
                    if (read == 0)
                    {
                        break;
                    }

                    if (chunkedOut)
                    {
                        output.WriteHex(read).Write("\r\n"u8).Write(buffer.AsSpan(0, read)).Write("\r\n"u8);
                        await output.FlushToAsync(client.Stream, client.Token);
                    }
                    else
                    {
                        await client.Stream.WriteAsync(buffer.AsMemory(0, read), client.Token);
                    }
                }

                if (chunkedOut)
                {
                    output.Write("0\r\n"u8);
                    foreach (var (name, values) in response.TrailingHeaders.NonValidated)
                    {
                        WriteField(output, name, values);
                    }

                    output.Write("\r\n"u8);
                    await output.FlushToAsync(client.Stream, client.Token);
                }
            }

            completed = true;
        }
        catch (Exception e) when (e is IOException or HttpRequestException or OperationCanceledException or SocketException)
        {
            // Headers are gone already: the only honest signal left is to close the gateway's connection.
            Log.UpstreamResponseAborted(client.Context.Logger, target.Id, SocketErrorText.Describe(e));
        }
        finally
        {
            client.ClearDeadline();
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return new ExchangeOutcome(status, completed && keepAlive && client.RequestBody.IsComplete);
    }

    private static void WriteField(OutputBuffer output, string name, HeaderStringValues values)
    {
        foreach (var value in values)
        {
            output.WriteLatin1(name).Write(": "u8).WriteLatin1(value).Write("\r\n"u8);
        }
    }

    /// <summary>The gateway's request body, decoded from its HTTP/1.1 framing, as the handler's content.</summary>
    private sealed class RequestBodyContent(ProxyConnection client) : HttpContent
    {
        private readonly TaskCompletionSource _sent = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Completes when the whole body went to the handler (or failed).</summary>
        public Task Sent => _sent.Task;

        /// <summary>Set when the gateway, not the backend, broke the upload.</summary>
        public Exception? ClientFailure { get; private set; }

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            var idle = client.Context.Settings.BodyIdleTimeout;
            try
            {
                while (true)
                {
                    client.SetUploadDeadline(TimeoutKind.RequestBody, idle);
                    ReadOnlyMemory<byte> data;
                    try
                    {
                        data = await client.RequestBody.ReadAsync(client.Token);
                    }
                    catch (HttpBodyException e)
                    {
                        ClientFailure = new ProxyFailureException(new ProxyFailure(400, FailureReason.BadRequest, e.Detail));
                        throw;
                    }
                    catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
                    {
                        ClientFailure = client.TimedOut == TimeoutKind.RequestBody
                            ? new ProxyFailureException(new ProxyFailure(408, FailureReason.RequestTimeout,
                                $"the request body stopped arriving for {idle.TotalSeconds:0.###}s (--body-idle-timeout)"))
                            : new ClientGoneException(e);
                        throw;
                    }

                    if (data.IsEmpty)
                    {
                        break;
                    }

                    client.SetUploadDeadline(TimeoutKind.BodyStalled, idle);
                    await stream.WriteAsync(data, cancellationToken);
                }
            }
            finally
            {
                client.ClearUploadDeadline();
                _sent.TrySetResult();
            }
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override bool TryComputeLength(out long length)
        {
            length = client.Request.ContentLength;
            return client.Request.Framing == BodyFraming.ContentLength;
        }
    }
}
