using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ColoChardev.Testbed;

/// <summary>
/// A scripted QMP monitor on a Unix socket, for what a standalone QEMU cannot produce: the STOP, MIGRATION_PASS,
/// RESUME and COLO_EXIT events of a running COLO pair, in the order and timing a test chooses. It answers
/// qmp_capabilities, query-status (status "colo"), query-migrate-parameters and migrate-set-parameters, and
/// records every command. The real thing is tested with a real COLO pair (tests/Integration, COLO pair tests).
/// <see cref="Misbehave"/> makes the next sessions fail as a broken or hung monitor would.
/// </summary>
public sealed class ScriptedQmpServer : IAsyncDisposable
{
    private readonly ConcurrentQueue<QmpMisbehaviour> _misbehaviours = new();
    private readonly ConcurrentQueue<(string Command, DateTime At)> _answered = new();
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentQueue<string> _commands = new();
    private readonly Task _accepting;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private NetworkStream? _stream;
    private uint _checkpointDelay = 20_000;

    private ScriptedQmpServer(string path)
    {
        Path = path;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(1);
        _accepting = Task.Run(ServeAsync);
    }

    public string Path { get; }

    public string Address => "unix:" + Path;

    /// <summary>Commands received, in order (execute names).</summary>
    public IReadOnlyList<string> Commands => [.. _commands];

    /// <summary>True once a client has negotiated capabilities.</summary>
    public bool Connected { get; private set; }

    /// <summary>Commands answered so far, with when (UTC).</summary>
    public IReadOnlyList<(string Command, DateTime At)> Answered => [.. _answered];

    /// <summary>How long object-add takes to be answered (a slow monitor).</summary>
    public TimeSpan ObjectAddDelay { get; set; }

    /// <summary>What query-status says (default "colo", as QEMU in a checkpoint; "running" once one is over).</summary>
    public string Status { get; set; } = "colo";

    /// <summary>Sessions accepted so far.</summary>
    public int Sessions { get; private set; }

    /// <summary>How the next sessions go wrong, one per connection, in order; then sessions behave.</summary>
    public void Misbehave(params QmpMisbehaviour[] sessions)
    {
        foreach (QmpMisbehaviour session in sessions)
        {
            _misbehaviours.Enqueue(session);
        }
    }

    public static ScriptedQmpServer Start(string path) => new(path);

    /// <summary>Sends an event to the connected client.</summary>
    public async Task SendEventAsync(string name, string? dataJson = null)
    {
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        string data = dataJson is null ? string.Empty : $", \"data\": {dataJson}";
        await WriteLineAsync($"{{\"timestamp\": {{\"seconds\": {now / 1000}, \"microseconds\": {now % 1000 * 1000}}}, \"event\": \"{name}\"{data}}}").ConfigureAwait(false);
    }

    /// <summary>Waits until a client has negotiated.</summary>
    public async Task WaitForClientAsync(TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!Connected)
        {
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException("no QMP client connected to the scripted server");
            }

            await Task.Delay(20).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        _stream?.Dispose();
        try
        {
            await _accepting.ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
        }

        _stop.Dispose();
        _writeLock.Dispose();
        File.Delete(Path);
    }

    private async Task ServeAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            using Socket client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            using var stream = new NetworkStream(client);
            _stream = stream;
            using var reader = new StreamReader(stream, Encoding.UTF8);
            Sessions++;
            QmpMisbehaviour misbehaviour = _misbehaviours.TryDequeue(out QmpMisbehaviour next) ? next : QmpMisbehaviour.None;
            await WriteLineAsync(misbehaviour == QmpMisbehaviour.GarbageGreeting
                ? "this is not QMP at all"
                : """{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "scripted"}, "capabilities": ["oob"]}}""").ConfigureAwait(false);
            try
            {
                while (await reader.ReadLineAsync(_stop.Token).ConfigureAwait(false) is string line)
                {
                    if (misbehaviour is QmpMisbehaviour.GarbageGreeting or QmpMisbehaviour.GreetingThenSilence)
                    {
                        continue; // never answers
                    }

                    using var command = JsonDocument.Parse(line);
                    string name = command.RootElement.GetProperty("execute").GetString()!;
                    string id = command.RootElement.GetProperty("id").GetRawText();
                    _commands.Enqueue(name);
                    if (misbehaviour == QmpMisbehaviour.CloseOnCheckpointRequest && name == "migrate-set-parameters")
                    {
                        break; // gone in the middle of the request, unanswered
                    }

                    string result = name switch
                    {
                        "query-status" => $$"""{"status": "{{Status}}", "running": {{(Status == "running" ? "true" : "false")}}}""",
                        "query-migrate-parameters" => $$"""{"x-checkpoint-delay": {{_checkpointDelay}}}""",
                        // A primary's filter-redirector redire0 reading compare_out, as --restore-redirector asks for it.
                        "qom-get" => command.RootElement.GetProperty("arguments").GetProperty("property").GetString() switch
                        {
                            "netdev" => "\"hn0\"",
                            "queue" => "\"rx\"",
                            "indev" => "\"compare_out\"",
                            "vnet_hdr_support" => "false",
                            _ => "null",
                        },
                        "query-chardev" => "[]",
                        _ => "{}",
                    };
                    if (name == "object-add" && ObjectAddDelay > TimeSpan.Zero)
                    {
                        await Task.Delay(ObjectAddDelay, _stop.Token).ConfigureAwait(false);
                    }

                    if (name == "migrate-set-parameters" && command.RootElement.GetProperty("arguments").TryGetProperty("x-checkpoint-delay", out JsonElement delay))
                    {
                        _checkpointDelay = delay.GetUInt32();
                    }

                    await WriteLineAsync($"{{\"return\": {result}, \"id\": {id}}}").ConfigureAwait(false);
                    _answered.Enqueue((name, DateTime.UtcNow));
                    Connected |= name == "qmp_capabilities";
                }
            }
            catch (IOException)
            {
            }

            Connected = false;
        }
    }

    private async Task WriteLineAsync(string json)
    {
        NetworkStream stream = _stream ?? throw new InvalidOperationException("no client");
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await stream.WriteAsync(Encoding.UTF8.GetBytes(json + "\r\n")).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }
}

/// <summary>How a scripted QMP session goes wrong.</summary>
public enum QmpMisbehaviour
{
    None,

    /// <summary>A greeting that is not JSON, then nothing.</summary>
    GarbageGreeting,

    /// <summary>A proper greeting, then no answer to anything.</summary>
    GreetingThenSilence,

    /// <summary>Answers as usual until a checkpoint request (migrate-set-parameters), then closes without answering it.</summary>
    CloseOnCheckpointRequest,
}
