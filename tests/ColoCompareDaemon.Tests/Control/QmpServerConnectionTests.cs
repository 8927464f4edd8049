using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using ColoChardev.Daemon.Control;
using ColoChardev.Daemon.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;

namespace ColoChardev.ColoCompareDaemon.Tests.Control;

/// <summary>
/// The control socket's QMP server on its own, over a real Unix socket pair, with a two-command table: negotiation,
/// framing (messages over several lines, several in one write, blank lines), malformed requests answered and
/// survived, requests too long in bytes cut off, events only after negotiation.
/// </summary>
public sealed class QmpServerConnectionTests : IAsyncDisposable
{
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(30));
    private readonly DaemonEvents _events = new();
    private readonly Socket _client;
    private readonly Socket _server;
    private readonly Task _serving;
    private readonly StreamReader _replies;

    public QmpServerConnectionTests()
    {
        (_client, _server) = SocketPair();
        _serving = Task.Run(async () =>
        {
            // As the control server: the connection is closed once the QMP conversation ends.
            await using var stream = new NetworkStream(_server, ownsSocket: true);
            await new QmpServerConnection(stream, new EchoCommands(), _events, NullLogger.Instance).RunAsync(_timeout.Token);
        });
        _replies = new StreamReader(new NetworkStream(_client, ownsSocket: false), Encoding.UTF8);
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _serving.WaitAsync(TimeSpan.FromSeconds(10));
        _replies.Dispose();
        _timeout.Dispose();
    }

    [Fact]
    public async Task Negotiation_comes_first_and_query_commands_lists_the_table_after_qmp_capabilities()
    {
        Assert.Equal("colo-compare", (await NextAsync()).GetProperty("QMP").GetProperty("version").GetProperty("package").GetString());
        await SendAsync("""{"execute": "echo", "id": 1}""" + "\n");
        JsonElement refused = await NextAsync();
        Assert.Equal("CommandNotFound", refused.GetProperty("error").GetProperty("class").GetString());
        Assert.Equal(1, refused.GetProperty("id").GetInt32());
        await SendAsync("""{"execute": "qmp_capabilities"}""" + "\r\n" + """{"execute": "query-commands", "id": "q"}""" + "\r\n");
        Assert.Equal(JsonValueKind.Object, (await NextAsync()).GetProperty("return").ValueKind);
        JsonElement commands = await NextAsync();
        Assert.Equal(["qmp_capabilities", "query-commands", "echo", "fail"], commands.GetProperty("return").EnumerateArray().Select(c => c.GetProperty("name").GetString()));
        Assert.Equal("q", commands.GetProperty("id").GetString());
    }

    [Fact]
    public async Task A_request_over_several_lines_and_blank_lines_between_requests_are_one_request_each()
    {
        await NegotiateAsync();
        await SendAsync("\n\n{\"execute\":\n \"echo\",\n \"arguments\": {\"say\": \"ünïcödé\"}, \"id\": 2}\n   \n");
        JsonElement reply = await NextAsync();
        Assert.Equal("ünïcödé", reply.GetProperty("return").GetProperty("said").GetString());
        Assert.Equal(2, reply.GetProperty("id").GetInt32());
    }

    [Theory]
    [InlineData("this is not json\n", "JSON parse error")]
    [InlineData("{not json at all\n", "JSON parse error")]
    [InlineData("[1, 2, 3]\n", "expected {\"execute\"")]
    [InlineData("{\"execute\": 42}\n", "expected {\"execute\"")]
    [InlineData("{\"arguments\": {}}\n", "expected {\"execute\"")]
    public async Task A_malformed_request_is_answered_with_an_error_and_the_next_request_is_served(string bad, string error)
    {
        await NegotiateAsync();
        await SendAsync(bad + """{"execute": "echo", "arguments": {"say": "still here"}, "id": 9}""" + "\n");
        Assert.Contains(error, (await NextAsync()).GetProperty("error").GetProperty("desc").GetString(), StringComparison.Ordinal);
        JsonElement next = await NextAsync();
        Assert.Equal("still here", next.GetProperty("return").GetProperty("said").GetString());
        Assert.Equal(9, next.GetProperty("id").GetInt32());
    }

    [Fact]
    public async Task A_line_that_is_not_json_is_answered_once_however_it_arrives()
    {
        await NegotiateAsync();
        await SendAsync("this is ");
        JsonElement error = await NextAsync();
        Assert.Contains("JSON parse error", error.GetProperty("error").GetProperty("desc").GetString(), StringComparison.Ordinal);
        await SendAsync("not json { either\n");
        await SendAsync("""{"execute": "echo", "arguments": {"say": "next"}, "id": 3}""" + "\n");
        JsonElement next = await NextAsync();
        Assert.Equal("next", next.GetProperty("return").GetProperty("said").GetString());
        Assert.Equal(3, next.GetProperty("id").GetInt32());
    }

    [Fact]
    public async Task Commands_errors_keep_their_class_and_the_request_id()
    {
        await NegotiateAsync();
        await SendAsync("""{"execute": "fail", "id": {"any": ["json"]}}""" + "\n" + """{"execute": "nothere"}""" + "\n");
        JsonElement failed = await NextAsync();
        Assert.Equal("DeviceNotFound", failed.GetProperty("error").GetProperty("class").GetString());
        Assert.Equal("json", failed.GetProperty("id").GetProperty("any")[0].GetString());
        Assert.Equal("CommandNotFound", (await NextAsync()).GetProperty("error").GetProperty("class").GetString());
    }

    [Fact]
    public async Task A_request_longer_than_the_limit_in_bytes_cuts_the_client_off_though_it_has_fewer_characters()
    {
        await NegotiateAsync();

        // 40,000 characters of two bytes each: 80,000 bytes, over the 65,536-byte limit though under it in characters.
        string text = new('é', 40_000);
        Assert.True(Encoding.UTF8.GetByteCount(text) > QmpServerConnection.MaxRequestBytes && text.Length < QmpServerConnection.MaxRequestBytes);
        try
        {
            await SendAsync("{\"execute\": \"echo\", \"arguments\": {\"say\": \"" + text);
        }
        catch (SocketException)
        {
            // Cut off while we were still sending: the expected end.
        }

        // Closed: an end of stream, or a reset since our bytes were left unread; no reply came first.
        string? reply;
        try
        {
            reply = await _replies.ReadLineAsync(_timeout.Token);
        }
        catch (IOException)
        {
            reply = null;
        }

        Assert.Null(reply);
        await _serving.WaitAsync(_timeout.Token);
    }

    [Fact]
    public async Task Requests_before_an_over_long_one_are_answered_before_the_client_is_cut_off()
    {
        await NegotiateAsync();
        try
        {
            await SendAsync("""{"execute": "echo", "arguments": {"say": "first"}, "id": 1}""" + "\n{\"execute\": \"echo\", \"arguments\": {\"say\": \"" + new string('x', 2 * QmpServerConnection.MaxRequestBytes));
        }
        catch (SocketException)
        {
            // Cut off while we were still sending.
        }

        JsonElement first = await NextAsync();
        Assert.Equal("first", first.GetProperty("return").GetProperty("said").GetString());
        await _serving.WaitAsync(_timeout.Token);
    }

    [Fact]
    public async Task A_line_that_is_not_json_and_longer_than_the_limit_is_answered_then_cut_off()
    {
        await NegotiateAsync();
        try
        {
            await SendAsync(new string('x', 4 * QmpServerConnection.MaxRequestBytes));
        }
        catch (SocketException)
        {
            // Cut off while we were still sending.
        }

        Assert.Contains("JSON parse error", (await NextAsync()).GetProperty("error").GetProperty("desc").GetString(), StringComparison.Ordinal);
        await _serving.WaitAsync(_timeout.Token);
    }

    [Fact]
    public async Task A_request_just_under_the_limit_in_bytes_is_served()
    {
        await NegotiateAsync();
        string prefix = "{\"execute\": \"echo\", \"arguments\": {\"say\": \"";
        string suffix = "\"}}\n";
        string text = new('x', QmpServerConnection.MaxRequestBytes - prefix.Length - suffix.Length);
        await SendAsync(prefix + text + suffix);
        Assert.Equal(text.Length, (await NextAsync()).GetProperty("return").GetProperty("said").GetString()!.Length);
    }

    [Fact]
    public async Task Events_arrive_only_after_negotiation_and_between_whole_replies()
    {
        Assert.True((await NextAsync()).TryGetProperty("QMP", out _));
        _events.Publish(DaemonEvents.Checkpoint, w => w.WriteString("before", "negotiation"));
        await SendAsync("""{"execute": "qmp_capabilities"}""" + "\n");
        Assert.True((await NextAsync()).TryGetProperty("return", out _));
        await WaitForSubscriberAsync();
        _events.Publish(DaemonEvents.Checkpoint, w => w.WriteString("after", "negotiation"));
        JsonElement e = await NextAsync();
        Assert.Equal(DaemonEvents.Checkpoint, e.GetProperty("event").GetString());
        Assert.Equal("negotiation", e.GetProperty("data").GetProperty("after").GetString());
    }

    [Fact]
    public async Task The_client_leaving_ends_the_connection_without_an_error()
    {
        await NegotiateAsync();
        await SendAsync("""{"execute": "echo", "arguments": {"say": "bye"}}""");
        _client.Shutdown(SocketShutdown.Send);
        await _serving.WaitAsync(_timeout.Token);
        Assert.True(_serving.IsCompletedSuccessfully);
    }

    private static (Socket Client, Socket Server) SocketPair()
    {
        string path = Path.Combine(Path.GetTempPath(), $"qmp-server-test-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        Socket server = listener.Accept();
        File.Delete(path);
        return (client, server);
    }

    private async Task WaitForSubscriberAsync()
    {
        while (!_events.HasSubscribers)
        {
            await Task.Delay(10, _timeout.Token);
        }
    }

    private async Task NegotiateAsync()
    {
        Assert.True((await NextAsync()).TryGetProperty("QMP", out _));
        await SendAsync("""{"execute": "qmp_capabilities"}""" + "\n");
        Assert.True((await NextAsync()).TryGetProperty("return", out _));
    }

    private Task SendAsync(string text) => _client.SendAsync(Encoding.UTF8.GetBytes(text), SocketFlags.None, _timeout.Token).AsTask();

    private async Task<JsonElement> NextAsync()
    {
        string line = await _replies.ReadLineAsync(_timeout.Token) ?? throw new EndOfStreamException("the server closed the connection");
        using JsonDocument reply = JsonDocument.Parse(line);
        return reply.RootElement.Clone();
    }

    /// <summary>Two commands: echo (returns its "say" argument) and fail (a DeviceNotFound).</summary>
    private sealed class EchoCommands : IQmpCommands
    {
        public IReadOnlyList<string> Names { get; } = ["echo", "fail"];

        public QmpReply Execute(string command, JsonElement arguments) => command switch
        {
            "echo" => QmpReply.Return(w =>
            {
                w.WriteStartObject();
                w.WriteString("said", arguments.ValueKind == JsonValueKind.Object && arguments.TryGetProperty("say", out JsonElement say) ? say.GetString() : null);
                w.WriteEndObject();
            }),
            "fail" => QmpReply.Error("DeviceNotFound", "no such thing"),
            _ => QmpReply.Error("CommandNotFound", $"The command {command} has not been found"),
        };
    }
}
