using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;

namespace ColoChardev.Qmp;

/// <summary>
/// A client for one QMP monitor. Connects (or takes a stream), reads the greeting, negotiates capabilities
/// (enabling <c>oob</c> when offered and wanted), then runs commands concurrently: each carries a generated id and
/// its reply is routed by that id. Events go to every <see cref="QmpEventSubscription"/>, each with its own queue.
/// </summary>
/// <remarks>
/// Lessons taken from other clients (spec field.md §4): replies are matched by id, never by "the next line";
/// events arriving at any moment, even before the negotiation reply, are dispatched, not mistaken for replies;
/// no line-length limit; timeouts on connect, greeting, negotiation and every command; a lost connection fails
/// every pending command with its cause.
/// </remarks>
public sealed class QmpClient : IAsyncDisposable
{
    private readonly QmpMessageReader _messages = new();
    private readonly Stream _stream;
    private readonly PipeReader _input;
    private readonly QmpClientOptions _options;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<string, PendingCommand> _pending = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _abandoned = new(StringComparer.Ordinal);
    private readonly Lock _subscriptionsLock = new();
    private readonly TaskCompletionSource<QmpGreeting> _greeting = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _closing = new();
    private QmpEventSubscription[] _subscriptions = [];
    private Task _readLoop = Task.CompletedTask;
    private volatile QmpException? _failure;
    private long _nextId;
    private int _disposed;

    private QmpClient(Stream stream, QmpClientOptions options)
    {
        _stream = stream;
        _options = options;
        _input = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, leaveOpen: true));
    }

    /// <summary>The server's greeting.</summary>
    public QmpGreeting Greeting { get; private set; } = null!;

    /// <summary>Whether out-of-band execution was negotiated.</summary>
    public bool OobEnabled { get; private set; }

    /// <summary>Completes when the connection ends: normally after <see cref="DisposeAsync"/>, faulted with the cause otherwise.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Connects to a monitor (<c>unix:/path</c>, a path, or <c>tcp:HOST:PORT</c>) and negotiates.</summary>
    public static Task<QmpClient> ConnectAsync(string address, QmpClientOptions? options = null, CancellationToken cancellationToken = default) =>
        ConnectAsync(QmpEndpoint.Parse(address), options, cancellationToken);

    /// <summary>Connects to a monitor and negotiates.</summary>
    public static async Task<QmpClient> ConnectAsync(QmpEndpoint endpoint, QmpClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        if (!endpoint.QemuIsServer)
        {
            throw new ArgumentException($"'{endpoint.Text}' says server=off: QEMU connects to us there; use QmpListener", nameof(endpoint));
        }

        options ??= new QmpClientOptions();
        Socket socket = await endpoint.ConnectAsync(options.ConnectTimeout, cancellationToken).ConfigureAwait(false);
        return await StartAsync(new NetworkStream(socket, ownsSocket: true), options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs the QMP handshake over an already connected stream (which the client then owns).</summary>
    public static async Task<QmpClient> StartAsync(Stream stream, QmpClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        options ??= new QmpClientOptions();
        var client = new QmpClient(stream, options);
        client._readLoop = Task.Run(client.ReadLoopAsync, CancellationToken.None);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(options.ConnectTimeout);
            try
            {
                client.Greeting = await client._greeting.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new QmpTimeoutException("greeting", options.ConnectTimeout);
            }

            bool oob = options.EnableOob && client.Greeting.Capabilities.Contains("oob");
            JsonObject? arguments = oob ? new JsonObject { ["enable"] = new JsonArray("oob") } : null;
            await client.SendAsync("qmp_capabilities", ArgumentsWriter(arguments), oob: false, options.ConnectTimeout, cancellationToken).ConfigureAwait(false);
            client.OobEnabled = oob;
            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Runs a command and returns its <c>return</c> value.</summary>
    /// <exception cref="QmpCommandException">QEMU answered with an error.</exception>
    /// <exception cref="QmpConnectionLostException">The connection ended before the reply.</exception>
    /// <exception cref="QmpTimeoutException">No reply within <see cref="QmpClientOptions.CommandTimeout"/>.</exception>
    public Task<JsonElement> ExecuteAsync(string command, JsonObject? arguments = null, CancellationToken cancellationToken = default) =>
        SendAsync(command, ArgumentsWriter(arguments), oob: false, _options.CommandTimeout, cancellationToken);

    /// <summary>Runs a command with typed arguments and a typed result (System.Text.Json source-generated metadata).</summary>
    public async Task<TResult> ExecuteAsync<TArguments, TResult>(string command, TArguments arguments, JsonTypeInfo<TArguments> argumentsInfo, JsonTypeInfo<TResult> resultInfo, CancellationToken cancellationToken = default)
    {
        JsonElement result = await SendAsync(command, writer => JsonSerializer.Serialize(writer, arguments, argumentsInfo), oob: false, _options.CommandTimeout, cancellationToken).ConfigureAwait(false);
        return Deserialize(command, result, resultInfo);
    }

    /// <summary>Runs a command without arguments and returns a typed result.</summary>
    public async Task<TResult> ExecuteAsync<TResult>(string command, JsonTypeInfo<TResult> resultInfo, CancellationToken cancellationToken = default)
    {
        JsonElement result = await ExecuteAsync(command, null, cancellationToken).ConfigureAwait(false);
        return Deserialize(command, result, resultInfo);
    }

    /// <summary>
    /// Runs a command out of band (<c>exec-oob</c>): it overtakes queued in-band commands. Only for commands that
    /// allow it (<c>yank</c>, <c>migrate-pause</c>, <c>migrate-recover</c>) and only when OOB was negotiated.
    /// </summary>
    public Task<JsonElement> ExecuteOobAsync(string command, JsonObject? arguments = null, CancellationToken cancellationToken = default)
    {
        if (!OobEnabled)
        {
            throw new InvalidOperationException($"cannot run '{command}' out of band: the server did not offer 'oob' or it was not enabled");
        }

        return SendAsync(command, ArgumentsWriter(arguments), oob: true, _options.CommandTimeout, cancellationToken);
    }

    /// <summary>
    /// Starts receiving events with these names (all events when none are given) into a queue of its own.
    /// Subscribe before running the command whose events you want.
    /// </summary>
    public QmpEventSubscription Subscribe(params string[] names) => Subscribe(names, _options.EventQueueCapacity, _options.EventOverflow);

    /// <summary>Starts receiving events, with an explicit queue length and overflow policy.</summary>
    public QmpEventSubscription Subscribe(IEnumerable<string>? names, int capacity, QmpEventOverflow overflow)
    {
        var subscription = new QmpEventSubscription(this, names, capacity, overflow);
        lock (_subscriptionsLock)
        {
            if (_failure is not null)
            {
                subscription.Complete(Lost(_failure));
                return subscription;
            }

            _subscriptions = [.. _subscriptions, subscription];
        }

        return subscription;
    }

    /// <summary>Closes the connection. Pending commands fail with <see cref="QmpConnectionLostException"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Fail(new QmpConnectionLostException("the QMP client was closed"), normal: true);
        await _closing.CancelAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
        try
        {
            await _readLoop.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException)
        {
        }

        _closing.Dispose();
    }

    internal void Unsubscribe(QmpEventSubscription subscription)
    {
        lock (_subscriptionsLock)
        {
            _subscriptions = Array.FindAll(_subscriptions, s => !ReferenceEquals(s, subscription));
        }
    }

    private static TResult Deserialize<TResult>(string command, JsonElement result, JsonTypeInfo<TResult> info)
    {
        try
        {
            return result.Deserialize(info) ?? throw new QmpProtocolException($"QMP command '{command}' returned null");
        }
        catch (JsonException e)
        {
            throw new QmpProtocolException($"QMP command '{command}' returned an unexpected result: {result.GetRawText()}", e);
        }
    }

    private static Action<Utf8JsonWriter>? ArgumentsWriter(JsonObject? arguments) =>
        arguments is null ? null : writer => arguments.WriteTo(writer);

    private static QmpConnectionLostException Lost(QmpException cause) =>
        cause as QmpConnectionLostException ?? new QmpConnectionLostException($"the QMP connection was lost: {cause.Message}", cause);

    private async Task<JsonElement> SendAsync(string command, Action<Utf8JsonWriter>? writeArguments, bool oob, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(command);
        if (_failure is QmpException failure)
        {
            throw Lost(failure);
        }

        string id = "cc-" + Interlocked.Increment(ref _nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var pending = new PendingCommand(command);
        _pending[id] = pending;
        if (_failure is QmpException raced && _pending.TryRemove(id, out _))
        {
            throw Lost(raced);
        }

        byte[] message = Serialize(command, writeArguments, id, oob);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (timeout != Timeout.InfiniteTimeSpan)
        {
            deadline.CancelAfter(timeout);
        }

        try
        {
            await WriteAsync(message, deadline.Token).ConfigureAwait(false);
            return await pending.Reply.Task.WaitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && deadline.IsCancellationRequested)
        {
            Abandon(id);
            throw new QmpTimeoutException(command, timeout);
        }
        catch (OperationCanceledException)
        {
            Abandon(id);
            throw;
        }
    }

    /// <summary>Forgets a command whose caller gave up; its reply, if it ever comes, is ignored.</summary>
    private void Abandon(string id)
    {
        if (_pending.TryRemove(id, out _))
        {
            _abandoned[id] = 0;
        }
    }

    private async Task WriteAsync(byte[] message, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await _stream.WriteAsync(message, cancellationToken).ConfigureAwait(false);
            await _stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Part of the message may have gone out: the stream can no longer be trusted.
            Fail(new QmpConnectionLostException("a command was cancelled while it was being sent; the connection was closed"), normal: false);
            throw;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
            var lost = new QmpConnectionLostException($"cannot send to the QMP server: {e.Message}", e);
            Fail(lost, normal: false);
            throw lost;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private static byte[] Serialize(string command, Action<Utf8JsonWriter>? writeArguments, string id, bool oob)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString(oob ? "exec-oob" : "execute", command);
            if (writeArguments is not null)
            {
                writer.WritePropertyName("arguments");
                writeArguments(writer);
            }

            writer.WriteString("id", id);
            writer.WriteEndObject();
        }

        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }

    private async Task ReadLoopAsync()
    {
        QmpException? failure = null;
        try
        {
            while (true)
            {
                ReadResult result = await _input.ReadAsync(_closing.Token).ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = result.Buffer;
                try
                {
                    while (_messages.TryRead(ref buffer, out JsonDocument? message))
                    {
                        using (message)
                        {
                            Dispatch(message!.RootElement);
                        }
                    }
                }
                catch (JsonException e)
                {
                    // The parser's message quotes what it read, newlines and all: keep it to one printable line.
                    throw new QmpProtocolException($"the QMP server sent something that is not JSON: {OneLine(e.Message)}", e);
                }

                if (buffer.Length > _options.MaxMessageBytes)
                {
                    throw new QmpProtocolException($"a QMP message exceeds {_options.MaxMessageBytes} bytes");
                }

                _input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted)
                {
                    failure = new QmpConnectionLostException(
                        buffer.IsEmpty ? "the QMP server closed the connection" : "the QMP server closed the connection in the middle of a message",
                        new EndOfStreamException("end of the QMP stream"));
                    break;
                }
            }
        }
        catch (QmpException e)
        {
            failure = e;
        }
        catch (OperationCanceledException) when (_closing.IsCancellationRequested)
        {
            failure = null;
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            failure = new QmpConnectionLostException($"the QMP connection failed: {e.Message}", e);
        }

        if (failure is not null)
        {
            Fail(failure, normal: false);
        }

        await _input.CompleteAsync().ConfigureAwait(false);
    }

    private void Dispatch(JsonElement message)
    {
        if (message.ValueKind != JsonValueKind.Object)
        {
            throw new QmpProtocolException($"a QMP message that is not an object: {message.GetRawText()}");
        }

        if (message.TryGetProperty("event", out JsonElement name) && name.ValueKind == JsonValueKind.String)
        {
            var qmpEvent = QmpEvent.Parse(message, name.GetString()!);
            foreach (QmpEventSubscription subscription in Volatile.Read(ref _subscriptions))
            {
                if (subscription.Wants(qmpEvent.Name))
                {
                    subscription.Post(qmpEvent);
                }
            }

            return;
        }

        bool isReturn = message.TryGetProperty("return", out JsonElement returned);
        bool isError = message.TryGetProperty("error", out JsonElement error);
        if (isReturn || isError)
        {
            if (!message.TryGetProperty("id", out JsonElement idElement) || idElement.ValueKind != JsonValueKind.String)
            {
                throw new QmpProtocolException($"a QMP reply without one of our ids: {Truncate(message)}");
            }

            string id = idElement.GetString()!;
            if (!_pending.TryRemove(id, out PendingCommand? pending))
            {
                if (_abandoned.TryRemove(id, out _))
                {
                    return;
                }

                throw new QmpProtocolException($"a QMP reply to an id we never sent ('{id}')");
            }

            if (isReturn)
            {
                pending.Reply.TrySetResult(returned.Clone());
            }
            else
            {
                string errorClass = error.TryGetProperty("class", out JsonElement c) ? c.GetString() ?? "?" : "?";
                string description = error.TryGetProperty("desc", out JsonElement d) ? d.GetString() ?? string.Empty : string.Empty;
                pending.Reply.TrySetException(new QmpCommandException(pending.Command, errorClass, description));
            }

            return;
        }

        if (message.TryGetProperty("QMP", out JsonElement greeting))
        {
            if (!_greeting.TrySetResult(QmpGreeting.Parse(greeting)))
            {
                throw new QmpProtocolException("a second QMP greeting");
            }

            return;
        }

        throw new QmpProtocolException($"an unrecognised QMP message: {Truncate(message)}");
    }

    private static string Truncate(JsonElement message)
    {
        string text = message.GetRawText();
        return text.Length <= 200 ? text : text[..200] + "...";
    }

    /// <summary>Ends the connection: every pending command fails, every subscription ends.</summary>
    private void Fail(QmpException cause, bool normal)
    {
        QmpEventSubscription[] subscriptions;
        lock (_subscriptionsLock)
        {
            if (_failure is not null)
            {
                return;
            }

            _failure = cause;
            subscriptions = _subscriptions;
            _subscriptions = [];
        }

        QmpConnectionLostException lost = Lost(cause);
        _greeting.TrySetException(cause is QmpProtocolException ? cause : lost);
        foreach ((string id, PendingCommand pending) in _pending)
        {
            if (_pending.TryRemove(id, out _))
            {
                pending.Reply.TrySetException(cause is QmpProtocolException ? cause : lost);
            }
        }

        foreach (QmpEventSubscription subscription in subscriptions)
        {
            subscription.Complete(normal ? null : lost);
        }

        if (normal)
        {
            _completion.TrySetResult();
        }
        else
        {
            _completion.TrySetException(cause);
            _stream.Dispose();
        }
    }

    private sealed class PendingCommand(string command)
    {
        public string Command { get; } = command;

        public TaskCompletionSource<JsonElement> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Control characters (a quoted newline, say) written as escapes, so that the text stays one log line.</summary>
    private static string OneLine(string text)
    {
        var line = new System.Text.StringBuilder(text.Length);
        foreach (char c in text)
        {
            line.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ when char.IsControl(c) => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }

        return line.ToString();
    }
}
