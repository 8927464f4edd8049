using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Qmp;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Control;

/// <summary>
/// The server side of QMP over one connection: the greeting, <c>qmp_capabilities</c> first, then requests
/// (<c>{"execute": ..., "arguments": ..., "id": ...}</c>, framed by the QMP library's <see cref="QmpMessageReader"/>:
/// whitespace between messages, a message over several lines) answered in order by <c>return</c> or <c>error</c>,
/// and, once negotiated, events between the replies, each message one CRLF-ended line. A request that is not JSON
/// gets one error and the connection stays (the rest of its line is skipped, however it arrives); a request that grows past
/// <see cref="MaxRequestBytes"/> without ending cuts the client off, since no QMP client sends one.
/// </summary>
internal sealed class QmpServerConnection(Stream stream, IQmpCommands commands, DaemonEvents events, ILogger logger)
{
    /// <summary>Longest request accepted, in bytes; a longer one closes the connection.</summary>
    public const int MaxRequestBytes = 64 * 1024;

    private readonly QmpMessageReader _requests = new();
    private bool _negotiated;
    private bool _skippingLine; // the rest of a line that was not JSON, already answered, until its newline
    private long _skippedBytes; // of that line so far: it too may not pass MaxRequestBytes

    /// <summary>Serves the connection until the client leaves or <paramref name="stopping"/> ends it; never throws for what the client does.</summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        PipeReader reader = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
        using var leaving = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        DaemonEvents.Subscriber? subscription = null;
        Task pump = Task.CompletedTask;
        var replies = new List<byte[]>();
        using var writing = new SemaphoreSlim(1, 1);
        try
        {
            await WriteAsync(writing, Greeting(), stopping).ConfigureAwait(false);
            while (true)
            {
                ReadResult result = await reader.ReadAsync(stopping).ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = result.Buffer;
                bool wasNegotiated = _negotiated;
                bool tooLong = !ReadRequests(ref buffer, replies);
                reader.AdvanceTo(buffer.Start, buffer.End);
                if (_negotiated && !wasNegotiated)
                {
                    // Subscribed before the reply that ends negotiation goes out, so that no event after it is lost
                    // (a client that acts on the reply at once must see what its act causes); the pump, which
                    // writes them, starts after that reply, as QMP orders them.
                    subscription = events.Subscribe();
                }

                foreach (byte[] reply in replies)
                {
                    await WriteAsync(writing, reply, stopping).ConfigureAwait(false);
                }

                replies.Clear();
                if (tooLong)
                {
                    // The requests before it are answered; then the client is cut off.
                    throw new InvalidDataException($"a request line longer than {MaxRequestBytes} bytes");
                }

                if (subscription is not null && !wasNegotiated)
                {
                    // As QMP: events flow once capabilities are negotiated, after the reply that ends negotiation.
                    pump = PumpEventsAsync(writing, subscription, leaving.Token);
                }

                if (result.IsCompleted)
                {
                    return;
                }
            }
        }
        catch (InvalidDataException e)
        {
            // Not a client's ordinary leaving: something sent what no QMP client sends.
            DaemonLog.ControlClientCutOff(logger, e.Message);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or OperationCanceledException or ObjectDisposedException)
        {
            DaemonLog.ControlClientClosed(logger, e.Message);
        }
        finally
        {
            subscription?.Dispose();
            await leaving.CancelAsync().ConfigureAwait(false);
            await pump.ConfigureAwait(false);
            await reader.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Answers every whole request at the front of <paramref name="buffer"/>, leaving an unfinished one there; false
    /// when that one is already longer than <see cref="MaxRequestBytes"/>.
    /// </summary>
    private bool ReadRequests(ref ReadOnlySequence<byte> buffer, List<byte[]> replies)
    {
        while (true)
        {
            if (_skippingLine)
            {
                SequencePosition? newline = buffer.PositionOf((byte)'\n');
                ReadOnlySequence<byte> rest = newline is SequencePosition end ? buffer.Slice(buffer.GetPosition(1, end)) : buffer.Slice(buffer.End);
                _skippedBytes += buffer.Length - rest.Length;
                buffer = rest;
                if (_skippedBytes > MaxRequestBytes)
                {
                    return false;
                }

                if (newline is null)
                {
                    break;
                }

                (_skippingLine, _skippedBytes) = (false, 0);
            }

            JsonDocument? request;
            try
            {
                if (!_requests.TryRead(ref buffer, out request))
                {
                    break;
                }
            }
            catch (JsonException e)
            {
                // Answer the line that is not JSON once and skip the rest of it; the next line may be a good request.
                replies.Add(QmpReply.Generic($"JSON parse error: {e.Message}").ToJson(default));
                _skippingLine = true;
                continue;
            }

            using (request)
            {
                replies.Add(Handle(request!.RootElement));
            }
        }

        return buffer.Length <= MaxRequestBytes;
    }

    private byte[] Handle(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("execute", out JsonElement execute) || execute.ValueKind != JsonValueKind.String)
        {
            return QmpReply.Generic("expected {\"execute\": COMMAND, \"arguments\": {...}}").ToJson(default);
        }

        JsonElement id = root.TryGetProperty("id", out JsonElement given) ? given : default;
        string command = execute.GetString()!;
        JsonElement arguments = root.TryGetProperty("arguments", out JsonElement a) ? a : default;
        QmpReply reply = command switch
        {
            "qmp_capabilities" => Negotiate(),
            _ when !_negotiated => QmpReply.Error("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'"),
            "query-commands" => QmpReply.Return(ListCommands),
            _ => commands.Execute(command, arguments),
        };
        return reply.ToJson(id);
    }

    private QmpReply Negotiate()
    {
        _negotiated = true;
        return QmpReply.Empty;
    }

    private void ListCommands(Utf8JsonWriter w)
    {
        w.WriteStartArray();
        foreach (string name in (string[])["qmp_capabilities", "query-commands", .. commands.Names])
        {
            w.WriteStartObject();
            w.WriteString("name", name);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private async Task PumpEventsAsync(SemaphoreSlim writing, DaemonEvents.Subscriber subscription, CancellationToken leaving)
    {
        try
        {
            while (true)
            {
                byte[] json = await subscription.ReadAsync(leaving).ConfigureAwait(false);
                await WriteAsync(writing, json, leaving).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The client left (or the daemon is stopping): the request loop ends the connection.
        }
    }

    /// <summary>One JSON line; replies and events take turns so lines never interleave.</summary>
    private async Task WriteAsync(SemaphoreSlim writing, byte[] json, CancellationToken cancellationToken)
    {
        byte[] line = new byte[json.Length + 2];
        json.CopyTo(line, 0);
        line[^2] = (byte)'\r';
        line[^1] = (byte)'\n';
        await writing.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await stream.WriteAsync(line, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            writing.Release();
        }
    }

    private static byte[] Greeting()
    {
        Version version = typeof(QmpServerConnection).Assembly.GetName().Version ?? new Version(0, 0, 0);
        return QmpReply.Json(w =>
        {
            w.WriteStartObject("QMP");
            w.WriteStartObject("version");
            w.WriteStartObject("qemu"); // QMP's shape, so QMP clients accept the greeting; the numbers are ours
            w.WriteNumber("major", version.Major);
            w.WriteNumber("minor", version.Minor);
            w.WriteNumber("micro", Math.Max(0, version.Build));
            w.WriteEndObject();
            w.WriteString("package", "colo-compare");
            w.WriteEndObject();
            w.WriteStartArray("capabilities");
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }
}
