using System.Text.Json;
using System.Text.Json.Nodes;
using ColoChardev.Qmp;

namespace ColoChardev.Daemon.Tools;

/// <summary>
/// <c>colo-compare qmp ADDRESS COMMAND [JSON]</c> runs one command and prints its reply as one line of JSON;
/// <c>colo-compare qmp ADDRESS --events [NAME...]</c> prints events as JSON lines until interrupted.
/// </summary>
internal static class QmpTool
{
    public const int ExitFailed = 1;

    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        if (args.Count < 2)
        {
            error.WriteLine("colo-compare: qmp needs a monitor address and a command (or --events)");
            return Program.ExitUsage;
        }

        QmpEndpoint endpoint;
        try
        {
            endpoint = QmpEndpoint.Parse(args[0]);
        }
        catch (FormatException e)
        {
            error.WriteLine($"colo-compare: {e.Message}");
            return Program.ExitUsage;
        }

        bool watch = args[1] == "--events";
        JsonObject? arguments = null;
        if (!watch && args.Count > 2)
        {
            try
            {
                arguments = JsonNode.Parse(args[2]) as JsonObject ?? throw new JsonException("not a JSON object");
            }
            catch (JsonException e)
            {
                error.WriteLine($"colo-compare: arguments '{args[2]}' are not a JSON object: {e.Message}");
                return Program.ExitUsage;
            }
        }

        if (!watch && args.Count > 3)
        {
            error.WriteLine($"colo-compare: unexpected argument '{args[3]}' after the command's JSON arguments");
            return Program.ExitUsage;
        }

        try
        {
            await using QmpClient client = await QmpClient.ConnectAsync(endpoint, cancellationToken: cancellationToken).ConfigureAwait(false);
            return watch
                ? await WatchAsync(client, args.Skip(2).ToArray(), output, cancellationToken).ConfigureAwait(false)
                : await ExecuteAsync(client, args[1], arguments, output, error, cancellationToken).ConfigureAwait(false);
        }
        catch (QmpException e)
        {
            error.WriteLine($"colo-compare: {e.Message}");
            return ExitFailed;
        }
        catch (System.Net.Sockets.SocketException e)
        {
            error.WriteLine($"colo-compare: cannot connect to {endpoint.Text}: {e.Message}");
            return ExitFailed;
        }
    }

    /// <summary>
    /// <c>colo-compare status|stats PATH</c>: one query on the daemon's control socket (QMP's shape), its return value
    /// printed as indented JSON.
    /// </summary>
    public static async Task<int> QueryAsync(string address, string command, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        try
        {
            await using QmpClient client = await QmpClient.ConnectAsync(QmpEndpoint.Parse(address), cancellationToken: cancellationToken).ConfigureAwait(false);
            JsonElement result = await client.ExecuteAsync(command, cancellationToken: cancellationToken).ConfigureAwait(false);
            output.WriteLine(JsonSerializer.Serialize(result, Indented));
            return 0;
        }
        catch (FormatException e)
        {
            error.WriteLine($"colo-compare: {e.Message}");
            return Program.ExitUsage;
        }
        catch (QmpException e)
        {
            error.WriteLine($"colo-compare: {e.Message}");
            return ExitFailed;
        }
        catch (System.Net.Sockets.SocketException e)
        {
            error.WriteLine($"colo-compare: cannot connect to the control socket {address[5..]}: {e.Message} (is the daemon running with --control?)");
            return ExitFailed;
        }
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private static async Task<int> ExecuteAsync(QmpClient client, string command, JsonObject? arguments, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        try
        {
            JsonElement result = await client.ExecuteAsync(command, arguments, cancellationToken).ConfigureAwait(false);
            var reply = new JsonObject { ["return"] = JsonNode.Parse(result.GetRawText()) };
            output.WriteLine(reply.ToJsonString());
            return 0;
        }
        catch (QmpCommandException e)
        {
            var reply = new JsonObject { ["error"] = new JsonObject { ["class"] = e.ErrorClass, ["desc"] = e.Description } };
            output.WriteLine(reply.ToJsonString());
            error.WriteLine($"colo-compare: {e.Message}");
            return ExitFailed;
        }
    }

    private static async Task<int> WatchAsync(QmpClient client, string[] names, TextWriter output, CancellationToken cancellationToken)
    {
        using QmpEventSubscription events = client.Subscribe(names);
        try
        {
            await foreach (QmpEvent e in events.WithCancellation(cancellationToken).ConfigureAwait(false))
            {
                output.WriteLine(e.ToJson());
                output.Flush();
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Interrupted: the normal way to stop watching.
        }

        return 0;
    }
}
