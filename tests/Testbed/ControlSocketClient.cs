using System.Text.Json;
using ColoChardev.Qmp;

namespace ColoChardev.Testbed;

/// <summary>
/// The daemon's control socket (<c>--control</c>) through our own <see cref="QmpClient"/>, subscribed to every event
/// from the start, with a stricter wait than <see cref="QmpEventSubscription.ReadAsync(string, CancellationToken)"/>:
/// an event the test did not name is an error, so a test states every event it expects.
/// </summary>
public sealed class ControlSocketClient : IAsyncDisposable
{
    private readonly QmpClient _client;
    private readonly QmpEventSubscription _events;
    private readonly CancellationToken _token;
    private readonly TimeSpan _eventTimeout;

    private ControlSocketClient(QmpClient client, TimeSpan eventTimeout, CancellationToken token)
    {
        _client = client;
        _events = client.Subscribe();
        _token = token;
        _eventTimeout = eventTimeout;
    }

    public static async Task<ControlSocketClient> ConnectAsync(string path, CancellationToken token, TimeSpan? eventTimeout = null)
    {
        QmpClient client = await QmpClient.ConnectAsync(QmpEndpoint.Parse("unix:" + path), cancellationToken: token);
        return new ControlSocketClient(client, eventTimeout ?? TimeSpan.FromSeconds(20), token);
    }

    /// <summary>Runs a command (no arguments) and returns its <c>return</c> value.</summary>
    public Task<JsonElement> ExecuteAsync(string command) => _client.ExecuteAsync(command, cancellationToken: _token);

    /// <summary>Runs a command with arguments and returns its <c>return</c> value.</summary>
    public Task<JsonElement> ExecuteAsync(string command, System.Text.Json.Nodes.JsonObject arguments) => _client.ExecuteAsync(command, arguments, _token);

    /// <summary>The data of the next event named <paramref name="name"/>; events named in <paramref name="skip"/> may come first.</summary>
    public async Task<JsonElement> NextEventAsync(string name, params string[] skip)
    {
        while (true)
        {
            QmpEvent e = await _events.ReadAsync(_token).AsTask().WaitAsync(_eventTimeout, _token);
            if (e.Seconds < 1_700_000_000)
            {
                throw new InvalidDataException($"event {e.Name} has no plausible timestamp: {e.ToJson()}");
            }

            if (e.Name == name)
            {
                return e.Data;
            }

            if (!skip.Contains(e.Name))
            {
                throw new InvalidDataException($"expected event {name}, got {e.ToJson()}");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _events.Dispose();
        await _client.DisposeAsync();
    }
}
