using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ColoChardev.Testbed;

/// <summary>
/// A client of the daemon's control socket (<c>--control</c>) that keeps replies and events apart, as a QMP client
/// does: negotiates capabilities on connect, then runs commands and waits for named events.
/// </summary>
public sealed class ControlSocketClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly StreamReader _reader;
    private readonly CancellationToken _token;

    private ControlSocketClient(Socket socket, CancellationToken token)
    {
        _socket = socket;
        _stream = new NetworkStream(socket);
        _reader = new StreamReader(_stream);
        _token = token;
    }

    /// <summary>Longest wait for one line from the daemon.</summary>
    public TimeSpan LineTimeout { get; init; } = TimeSpan.FromSeconds(20);

    public static async Task<ControlSocketClient> ConnectAsync(string path, CancellationToken token, TimeSpan? lineTimeout = null)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), token);
        var client = new ControlSocketClient(socket, token) { LineTimeout = lineTimeout ?? TimeSpan.FromSeconds(20) };
        if (!(await client.NextAsync()).TryGetProperty("QMP", out _))
        {
            throw new InvalidDataException("the control socket did not greet as QMP does");
        }

        await client.ExecuteAsync("qmp_capabilities");
        return client;
    }

    /// <summary>Runs a command (no arguments) and returns its <c>return</c> value; events on the way are skipped.</summary>
    public async Task<JsonElement> ExecuteAsync(string command)
    {
        await _stream.WriteAsync(Encoding.UTF8.GetBytes($"{{\"execute\":\"{command}\"}}\n"), _token);
        while (true)
        {
            JsonElement message = await NextAsync();
            if (message.TryGetProperty("return", out JsonElement value))
            {
                return value;
            }

            if (message.TryGetProperty("error", out JsonElement error))
            {
                throw new InvalidOperationException($"{command}: {error}");
            }
        }
    }

    /// <summary>
    /// The data of the next event named <paramref name="name"/>. Events named in <paramref name="skip"/> may come first;
    /// any other event is an error (so a test states every event it expects).
    /// </summary>
    public async Task<JsonElement> NextEventAsync(string name, params string[] skip)
    {
        while (true)
        {
            JsonElement message = await NextAsync();
            string? e = message.GetProperty("event").GetString();
            if (message.GetProperty("timestamp").GetProperty("seconds").GetInt64() < 1_700_000_000)
            {
                throw new InvalidDataException($"event {e} has no plausible timestamp: {message}");
            }

            if (e == name)
            {
                return message.GetProperty("data");
            }

            if (!skip.Contains(e))
            {
                throw new InvalidDataException($"expected event {name}, got {message}");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _reader.Dispose();
        await _stream.DisposeAsync();
        _socket.Dispose();
    }

    private async Task<JsonElement> NextAsync()
    {
        string line = await _reader.ReadLineAsync(_token).AsTask().WaitAsync(LineTimeout, _token) ?? throw new EndOfStreamException("the control socket closed");
        return JsonDocument.Parse(line).RootElement.Clone();
    }
}
