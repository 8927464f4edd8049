using System.Text;
using System.Text.Json;
using Nerdbank.Streams;

namespace ColoChardev.QmpClient.Tests.Protocol;

/// <summary>
/// A scripted QMP server over an in-memory duplex stream, for what real QEMU cannot be made to do (garbage,
/// huge replies, unknown ids, stalls). Everything else is tested against real QEMU in tests/Integration.
/// </summary>
internal sealed class FakeQmpServer : IAsyncDisposable
{
    public const string Greeting = """{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "fake"}, "capabilities": ["oob"]}}""";

    private readonly Stream _server;
    private readonly StreamReader _reader;

    private FakeQmpServer(Stream client, Stream server)
    {
        ClientStream = client;
        _server = server;
        _reader = new StreamReader(server, Encoding.UTF8);
    }

    public Stream ClientStream { get; }

    public static FakeQmpServer Create()
    {
        (Stream a, Stream b) = FullDuplexStream.CreatePair();
        return new FakeQmpServer(a, b);
    }

    public async Task SendAsync(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        await _server.WriteAsync(bytes);
        await _server.FlushAsync();
    }

    public Task SendLineAsync(string json) => SendAsync(json + "\r\n");

    /// <summary>Reads the client's next command.</summary>
    public async Task<JsonElement> ReadCommandAsync()
    {
        string line = await _reader.ReadLineAsync() ?? throw new EndOfStreamException();
        using var document = JsonDocument.Parse(line);
        return document.RootElement.Clone();
    }

    /// <summary>Greeting, then answers qmp_capabilities.</summary>
    public async Task<JsonElement> HandshakeAsync()
    {
        await SendLineAsync(Greeting);
        JsonElement negotiate = await ReadCommandAsync();
        await SendLineAsync($$"""{"return": {}, "id": "{{negotiate.GetProperty("id").GetString()}}"}""");
        return negotiate;
    }

    public static string Id(JsonElement command) => command.GetProperty("id").GetString()!;

    public Task CloseAsync() => _server.DisposeAsync().AsTask();

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await ClientStream.DisposeAsync();
    }
}
