using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Checkpoints;
using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Hosting;

/// <summary>
/// The control socket (<c>--control PATH</c>): a Unix socket, only for the daemon's own user (mode 0600), speaking
/// QMP's shape in JSON lines, so any QMP client (ours: <c>colo-compare status|stats|qmp</c>) works: a greeting,
/// <c>qmp_capabilities</c>, then <c>{"execute": ..., "arguments": ..., "id": ...}</c> answered by <c>return</c> or
/// <c>error</c>. Commands: <c>query-status</c> (endpoints, options, failover, last checkpoints),
/// <c>query-stats</c> (every counter), <c>qom-set</c> of compare_timeout, expired_scan_cycle and max_queue_size
/// (path: the colo-compare object's id), <c>query-commands</c>, bypass rules. A bad line gets an error and the
/// connection stays. After negotiation, events arrive as QMP's do (<see cref="DaemonEvents"/>): divergences,
/// checkpoint requests, checkpoints, failover, chardev connections.
/// </summary>
internal sealed class ControlServer : IAsyncDisposable
{
    /// <summary>Longest request line accepted; a longer one closes the connection.</summary>
    private const int MaxLineBytes = 64 * 1024;
    private static readonly string[] Commands = ["qmp_capabilities", "query-commands", "query-status", "query-stats", "qom-set", "query-bypass", "bypass-add", "bypass-del", "chardev-drop-peer"];
    private readonly string _path;
    private readonly IReadOnlyList<ComparedNic> _nics;
    private readonly CheckpointCoordinator _coordinator;
    private readonly DaemonEvents _events;
    private readonly ILogger _logger;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _clients = [];
    private Task _accepting = Task.CompletedTask;

    public ControlServer(string path, IReadOnlyList<ComparedNic> nics, CheckpointCoordinator coordinator, DaemonEvents events, ILogger logger)
    {
        _path = path;
        _nics = nics;
        _coordinator = coordinator;
        _events = events;
        _logger = logger;
        if (UnixSocketFile.Exists(path))
        {
            File.Delete(path); // a socket left by an earlier daemon; any other file makes Bind below fail
        }

        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            _listener.Bind(new UnixDomainSocketEndPoint(path));
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }

            // Room for a burst of clients (a monitoring fleet polling at once); a full backlog refuses Unix connects with EAGAIN.
            _listener.Listen(128);
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            _listener.Dispose();
            throw new InvalidOperationException($"--control {path}: cannot listen there ({e.Message})", e);
        }
    }

    /// <summary>Refuses, before anything starts, a path where no socket can be made: a file in the way or no directory.</summary>
    /// <exception cref="InvalidOperationException">The path is unusable (the message starts with --control).</exception>
    public static void EnsureUsable(string path)
    {
        string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
        string? problem = File.Exists(path) && !UnixSocketFile.Exists(path) ? "a file that is not a socket is in the way"
            : System.IO.Directory.Exists(path) ? "it is a directory"
            : directory is not null && !System.IO.Directory.Exists(directory) ? $"no directory {directory}"
            : null;
        if (problem is not null)
        {
            throw new InvalidOperationException($"--control {path}: cannot listen there ({problem})");
        }
    }

    public void Start() => _accepting = AcceptAsync(_stopping.Token);

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        try
        {
            await _accepting.ConfigureAwait(false);
            Task[] clients;
            lock (_clients)
            {
                clients = [.. _clients];
            }

            await Task.WhenAll(clients).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException or SocketException or ObjectDisposedException)
        {
        }

        if (UnixSocketFile.Exists(_path))
        {
            File.Delete(_path);
        }

        _stopping.Dispose();
    }

    private async Task AcceptAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(stopping).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            Task serving = Task.Run(() => ServeAsync(client, stopping), CancellationToken.None);
            lock (_clients)
            {
                _clients.RemoveAll(t => t.IsCompleted);
                _clients.Add(serving);
            }
        }
    }

    private async Task ServeAsync(Socket socket, CancellationToken stopping)
    {
        using (socket)
        await using (var stream = new NetworkStream(socket, ownsSocket: false))
        {
            var reader = new StreamReader(stream, Encoding.UTF8);
            using var writing = new SemaphoreSlim(1, 1);
            using var leaving = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            DaemonEvents.Subscriber? events = null;
            Task pump = Task.CompletedTask;
            try
            {
                await WriteAsync(stream, writing, Greeting(), stopping).ConfigureAwait(false);
                bool negotiated = false;
                while (true)
                {
                    string? line = await ReadLineAsync(reader, stopping).ConfigureAwait(false);
                    if (line is null)
                    {
                        return;
                    }

                    if (line.Length == 0)
                    {
                        continue;
                    }

                    byte[] reply = Handle(line, ref negotiated);
                    await WriteAsync(stream, writing, reply, stopping).ConfigureAwait(false);
                    if (negotiated && events is null)
                    {
                        // As QMP: events flow once capabilities are negotiated, after the reply that ends negotiation.
                        events = _events.Subscribe();
                        pump = PumpEventsAsync(stream, writing, events, leaving.Token);
                    }
                }
            }
            catch (InvalidDataException e)
            {
                // Not a client's ordinary leaving: something sent what no QMP client sends.
                DaemonLog.ControlClientCutOff(_logger, e.Message);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                DaemonLog.ControlClientClosed(_logger, e.Message);
            }
            finally
            {
                events?.Dispose();
                await leaving.CancelAsync().ConfigureAwait(false);
                await pump.ConfigureAwait(false);
            }
        }
    }

    private static async Task PumpEventsAsync(NetworkStream stream, SemaphoreSlim writing, DaemonEvents.Subscriber events, CancellationToken leaving)
    {
        try
        {
            while (true)
            {
                byte[] json = await events.ReadAsync(leaving).ConfigureAwait(false);
                await WriteAsync(stream, writing, json, leaving).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The client left (or the daemon is stopping): the request loop ends the connection.
        }
    }

    private static async Task<string?> ReadLineAsync(StreamReader reader, CancellationToken stopping)
    {
        var line = new StringBuilder();
        char[] one = new char[1];
        while (true)
        {
            int read = await reader.ReadAsync(one.AsMemory(), stopping).ConfigureAwait(false);
            if (read == 0)
            {
                return line.Length > 0 ? line.ToString() : null;
            }

            if (one[0] == '\n')
            {
                return line.ToString().TrimEnd('\r');
            }

            if (line.Length >= MaxLineBytes)
            {
                throw new InvalidDataException($"a request line longer than {MaxLineBytes} bytes");
            }

            line.Append(one[0]);
        }
    }

    /// <summary>One JSON line; replies and events take turns (<paramref name="writing"/>) so lines never interleave.</summary>
    private static async Task WriteAsync(NetworkStream stream, SemaphoreSlim writing, byte[] json, CancellationToken cancellationToken)
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
        Version version = typeof(ControlServer).Assembly.GetName().Version ?? new Version(0, 0, 0);
        return Json(w =>
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

    private byte[] Handle(string line, ref bool negotiated)
    {
        JsonElement id = default;
        try
        {
            using JsonDocument request = JsonDocument.Parse(line);
            JsonElement root = request.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("execute", out JsonElement execute) || execute.ValueKind != JsonValueKind.String)
            {
                return Error(default, "GenericError", "expected {\"execute\": COMMAND, \"arguments\": {...}}");
            }

            if (root.TryGetProperty("id", out JsonElement given))
            {
                id = given.Clone();
            }

            string command = execute.GetString()!;
            JsonElement arguments = root.TryGetProperty("arguments", out JsonElement a) ? a : default;
            if (!negotiated && command != "qmp_capabilities")
            {
                return Error(id, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
            }

            switch (command)
            {
                case "qmp_capabilities":
                    negotiated = true;
                    return Return(id, EmptyObject);
                case "query-commands":
                    return Return(id, w =>
                    {
                        w.WriteStartArray();
                        foreach (string name in Commands)
                        {
                            w.WriteStartObject();
                            w.WriteString("name", name);
                            w.WriteEndObject();
                        }

                        w.WriteEndArray();
                    });
                case "query-status":
                    return Return(id, WriteStatus);
                case "query-stats":
                    return Return(id, WriteStats);
                case "qom-set":
                    return QomSet(id, arguments);
                case "query-bypass":
                    return Return(id, w =>
                    {
                        w.WriteStartArray();
                        foreach (ComparedNic nic in _nics)
                        {
                            w.WriteStartObject();
                            w.WriteString("id", nic.Id);
                            WriteRules(w, "rules", nic.Options);
                            w.WriteEndObject();
                        }

                        w.WriteEndArray();
                    });
                case "bypass-add" or "bypass-del":
                    return ChangeBypass(id, arguments, add: command == "bypass-add");
                case "chardev-drop-peer":
                    return DropPeer(id, arguments);
                default:
                    return Error(id, "CommandNotFound", $"The command {command} has not been found");
            }
        }
        catch (JsonException e)
        {
            return Error(id, "GenericError", $"JSON parse error: {e.Message}");
        }
    }

    private byte[] ChangeBypass(JsonElement id, JsonElement arguments, bool add)
    {
        if (arguments.ValueKind != JsonValueKind.Object
            || !arguments.TryGetProperty("path", out JsonElement path) || path.ValueKind != JsonValueKind.String
            || !arguments.TryGetProperty("rule", out JsonElement text) || text.ValueKind != JsonValueKind.String)
        {
            return Error(id, "GenericError", "bypass-add and bypass-del need arguments {\"path\": OBJECT-ID, \"rule\": \"proto=tcp,host=...,port=...\"}");
        }

        ComparedNic? nic = FindNic(path.GetString()!);
        if (nic is null)
        {
            return NotFound(id, path.GetString()!);
        }

        BypassRule rule;
        try
        {
            rule = BypassRule.Parse(text.GetString()!);
        }
        catch (FormatException e)
        {
            return Error(id, "GenericError", e.Message);
        }

        if (add ? !nic.AddBypass(rule) : !nic.RemoveBypass(rule))
        {
            return Error(id, "GenericError", add ? $"bypass rule '{rule.Text}' is already there" : $"no bypass rule '{rule.Text}' on '{nic.Id}'");
        }

        DaemonLog.BypassChanged(_logger, nic.Id, add ? "added" : "removed", rule.Text);
        return Return(id, EmptyObject);
    }

    private static void WriteRules(Utf8JsonWriter w, string name, Engine.CompareOptions options)
    {
        w.WriteStartArray(name);
        foreach (BypassRule rule in options.Bypass)
        {
            w.WriteStringValue(rule.Text);
        }

        w.WriteEndArray();
    }

    private byte[] NotFound(JsonElement id, string path) =>
        Error(id, "DeviceNotFound", $"Device '{path}' not found (colo-compare objects: {string.Join(", ", _nics.Select(n => n.Id))})");

    private ComparedNic? FindNic(string path)
    {
        string target = path.TrimStart('/');
        target = target.StartsWith("objects/", StringComparison.Ordinal) ? target["objects/".Length..] : target;
        return _nics.FirstOrDefault(n => n.Id == target);
    }

    /// <summary>
    /// Drops one chardev's current peer (with a TCP reset), as if it had left: for an operator who wants a stuck
    /// peer to reconnect, and for drills. The chardev is named by role (primary_in, secondary_in, outdev, notify_dev).
    /// </summary>
    private byte[] DropPeer(JsonElement id, JsonElement arguments)
    {
        if (arguments.ValueKind != JsonValueKind.Object
            || !arguments.TryGetProperty("path", out JsonElement path) || path.ValueKind != JsonValueKind.String
            || !arguments.TryGetProperty("chardev", out JsonElement chardev) || chardev.ValueKind != JsonValueKind.String)
        {
            return Error(id, "GenericError", "chardev-drop-peer needs arguments {\"path\": OBJECT-ID, \"chardev\": \"primary_in\"|\"secondary_in\"|\"outdev\"|\"notify_dev\"}");
        }

        ComparedNic? nic = FindNic(path.GetString()!);
        if (nic is null)
        {
            return NotFound(id, path.GetString()!);
        }

        string role = chardev.GetString()!;
        ChardevEndpoint? endpoint = nic.Endpoints.Where(e => e.Name == role).Select(e => e.Endpoint).FirstOrDefault();
        if (endpoint is null)
        {
            return Error(id, "GenericError", $"'{nic.Id}' has no chardev '{role}' (primary_in, secondary_in, outdev or notify_dev)");
        }

        bool dropped = endpoint.DropPeer();
        DaemonLog.PeerDropped(_logger, nic.Id, role, dropped);
        return Return(id, w =>
        {
            w.WriteStartObject();
            w.WriteBoolean("dropped", dropped);
            w.WriteEndObject();
        });
    }

    private byte[] QomSet(JsonElement id, JsonElement arguments)
    {
        if (arguments.ValueKind != JsonValueKind.Object
            || !arguments.TryGetProperty("path", out JsonElement path) || path.ValueKind != JsonValueKind.String
            || !arguments.TryGetProperty("property", out JsonElement property) || property.ValueKind != JsonValueKind.String
            || !arguments.TryGetProperty("value", out JsonElement value))
        {
            return Error(id, "GenericError", "qom-set needs arguments {\"path\": OBJECT-ID, \"property\": NAME, \"value\": NUMBER}");
        }

        ComparedNic? nic = FindNic(path.GetString()!);
        if (nic is null)
        {
            return NotFound(id, path.GetString()!);
        }

        long number;
        if (value.ValueKind == JsonValueKind.Number ? !value.TryGetInt64(out number)
            : value.ValueKind != JsonValueKind.String || !long.TryParse(value.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out number))
        {
            return Error(id, "GenericError", $"Parameter 'value' expects a whole number, got {value.GetRawText()}");
        }

        if (nic.SetProperty(property.GetString()!, number) is string problem)
        {
            return Error(id, "GenericError", problem);
        }

        string name = property.GetString()!;
        DaemonLog.PropertySet(_logger, nic.Id, name, number);
        return Return(id, EmptyObject);
    }

    private static void EmptyObject(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteEndObject();
    }

    private void WriteStatus(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteBoolean("failed-over", _coordinator.FailedOver);
        w.WriteStartArray("nics");
        foreach (ComparedNic nic in _nics)
        {
            Engine.CompareOptions options = nic.Options;
            w.WriteStartObject();
            w.WriteString("id", nic.Id);
            w.WriteBoolean("passing-through", nic.FailedOver);
            w.WriteNumber("compare_timeout", options.CompareTimeoutMs);
            w.WriteNumber("expired_scan_cycle", options.ExpiredScanCycleMs);
            w.WriteNumber("max_queue_size", options.MaxQueueSize);
            w.WriteBoolean("vnet_hdr_support", options.VnetHdrSupport);
            WriteRules(w, "bypass", options);
            w.WriteStartObject("endpoints");
            foreach ((string name, ChardevEndpoint endpoint) in nic.Endpoints)
            {
                w.WriteStartObject(name);
                w.WriteString("address", endpoint.Spec.Address);
                w.WriteBoolean("server", endpoint.Spec.Server);
                w.WriteBoolean("connected", endpoint.IsConnected);
                w.WriteNumber("connections", endpoint.Statistics.Connections);
                w.WriteEndObject();
            }

            w.WriteEndObject();
            CompareCounters c = nic.Counters;
            w.WriteStartObject("queued");
            w.WriteNumber("primary", c.PrimaryQueued);
            w.WriteNumber("secondary", c.SecondaryQueued);
            w.WriteNumber("bytes", c.QueuedBytes);
            w.WriteNumber("flows", c.Flows);
            w.WriteNumber("outdev-backlog-bytes", nic.BacklogBytes);
            w.WriteNumber("outdev-backlog-frames", nic.Outdev.BacklogFrames);
            w.WriteEndObject();
            w.WriteString("outdev", nic.Outdev.IsStalled ? "stalled" : nic.Outdev.IsPaused ? "back-pressure" : nic.OutDev.IsConnected ? "writing" : "no peer");
            w.WriteNumber("divergences", nic.Divergences);
            if (nic.Capture is Captures.DivergenceCapture capture)
            {
                w.WriteStartObject("captures");
                w.WriteString("directory", capture.Directory);
                w.WriteString("file", capture.CurrentFile);
                w.WriteNumber("written", capture.Written);
                w.WriteNumber("skipped-busy", capture.SkippedBusy);
                w.WriteNumber("failed", capture.Failed);
                w.WriteEndObject();
            }

            w.WriteStartArray("checkpoint-requests");
            foreach ((DateTimeOffset at, CheckpointReason reason, string flow, bool sent) in nic.RecentCheckpointRequests)
            {
                w.WriteStartObject();
                w.WriteString("at", at);
                w.WriteString("reason", reason.ToString());
                w.WriteString("flow", flow);
                w.WriteBoolean("sent", sent);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("checkpoints");
        foreach ((DateTimeOffset at, bool requested, string flushed, double milliseconds) in _coordinator.RecentCheckpoints)
        {
            w.WriteStartObject();
            w.WriteString("at", at);
            w.WriteBoolean("requested", requested);
            w.WriteString("flushed", flushed);
            w.WriteNumber("stopped-ms", Math.Round(milliseconds, 1));
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private void WriteStats(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteStartArray("nics");
        foreach (ComparedNic nic in _nics)
        {
            CompareCounters c = nic.Counters;
            w.WriteStartObject();
            w.WriteString("id", nic.Id);
            w.WriteNumber("primary-in", c.PrimaryAccepted);
            w.WriteNumber("secondary-in", c.SecondaryAccepted);
            w.WriteNumber("released", c.PrimaryReleased);
            w.WriteNumber("outdev-written", nic.OutdevWritten);
            w.WriteNumber("outdev-dropped", nic.OutdevDropped);
            w.WriteNumber("outdev-lost", nic.OutdevLost);
            Map(w, "outdev-dropped-by", Enum.GetValues<OutdevDropReason>().Select(r => (r.ToString(), nic.Outdev.DroppedBy(r))));
            w.WriteNumber("outdev-backlog-frames", nic.Outdev.BacklogFrames);
            w.WriteNumber("outdev-pauses", nic.Outdev.Pauses);
            w.WriteNumber("outdev-paused-ms", nic.Outdev.PausedMs);
            w.WriteNumber("outdev-stalls", nic.Outdev.Stalls);
            w.WriteNumber("primary-dropped", c.PrimaryDropped);
            w.WriteNumber("primary-queued", c.PrimaryQueued);
            w.WriteNumber("secondary-queued", c.SecondaryQueued);
            w.WriteNumber("queued-bytes", c.QueuedBytes);
            Map(w, "released-by", Enum.GetValues<ReleaseReason>().Select(r => (r.ToString(), c.ReleasedBy(r))));
            Map(w, "primary-dropped-by", Enum.GetValues<DropReason>().Select(r => (r.ToString(), c.PrimaryDroppedBy(r))));
            Map(w, "secondary-dropped-by", Enum.GetValues<DropReason>().Select(r => (r.ToString(), c.SecondaryDroppedBy(r))));
            Map(w, "mismatches", Enum.GetValues<CompareProtocol>().Select(p => (p.ToString(), c.MismatchesBy(p))));
            Map(w, "checkpoint-requests", Enum.GetValues<CheckpointReason>().Select(r => (r.ToString(), c.CheckpointRequestsBy(r))));
            w.WriteNumber("checkpoint-requests-unsent", nic.CheckpointsUnsent);
            w.WriteNumber("checkpoints", c.CheckpointsCompleted);
            w.WriteNumber("divergences", nic.Divergences);
            w.WriteNumber("captures-written", nic.Capture?.Written ?? 0);
            w.WriteNumber("captures-skipped", (nic.Capture?.SkippedBusy ?? 0) + (nic.Capture?.Failed ?? 0));
            w.WriteNumber("flows", c.Flows);
            w.WriteNumber("flows-expired", c.FlowsExpired);
            w.WriteNumber("connections-reused", c.ConnectionsReused);
            w.WriteNumber("flows-evicted", c.FlowsEvicted);
            w.WriteStartObject("chardevs");
            foreach ((string name, ChardevEndpoint endpoint) in nic.Endpoints)
            {
                // Framing-level faults never become packets: counted here, per chardev.
                ChardevProtocol.Framing.ChardevStatistics e = endpoint.Statistics;
                w.WriteStartObject(name);
                w.WriteNumber("connections", e.Connections);
                w.WriteNumber("frames-read", e.FramesRead);
                w.WriteNumber("bytes-read", e.BytesRead);
                w.WriteNumber("zero-length", e.ZeroLengthFrames);
                w.WriteNumber("truncated", e.TruncatedFrames);
                w.WriteNumber("oversized", e.OversizedFrames);
                w.WriteNumber("frames-written", e.FramesWritten);
                w.WriteNumber("bytes-ignored", e.BytesIgnored);
                w.WriteNumber("refused-peers", e.RefusedPeers);
                w.WriteEndObject();
            }

            w.WriteEndObject();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void Map(Utf8JsonWriter w, string name, IEnumerable<(string Key, long Value)> values)
    {
        w.WriteStartObject(name);
        foreach ((string key, long value) in values)
        {
            w.WriteNumber(key, value);
        }

        w.WriteEndObject();
    }

    private static byte[] Return(JsonElement id, Action<Utf8JsonWriter> value) => Json(w =>
    {
        w.WritePropertyName("return");
        value(w);
        WriteId(w, id);
    });

    private static byte[] Error(JsonElement id, string errorClass, string description) => Json(w =>
    {
        w.WriteStartObject("error");
        w.WriteString("class", errorClass);
        w.WriteString("desc", description);
        w.WriteEndObject();
        WriteId(w, id);
    });

    private static void WriteId(Utf8JsonWriter w, JsonElement id)
    {
        if (id.ValueKind != JsonValueKind.Undefined)
        {
            w.WritePropertyName("id");
            id.WriteTo(w);
        }
    }

    private static byte[] Json(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }
}
