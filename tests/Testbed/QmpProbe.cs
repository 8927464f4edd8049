using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ColoChardev.Testbed;

/// <summary>
/// A minimal one-shot QMP exchange for test setup (greeting, qmp_capabilities, one command). The product's QMP
/// client is src/QmpClient; this only asks QEMU whether its chardevs have peers.
/// </summary>
public static class QmpProbe
{
    /// <summary>True when every chardev in <paramref name="ids"/> has a connected peer.</summary>
    public static async Task<bool> AllChardevsConnectedAsync(string qmpPath, IReadOnlyCollection<string> ids, CancellationToken cancellationToken)
    {
        using JsonDocument reply = await ExecuteAsync(qmpPath, "query-chardev", cancellationToken).ConfigureAwait(false);
        int connected = 0;
        foreach (JsonElement chardev in reply.RootElement.GetProperty("return").EnumerateArray())
        {
            string label = chardev.GetProperty("label").GetString() ?? string.Empty;
            string filename = chardev.GetProperty("filename").GetString() ?? string.Empty;
            if (ids.Contains(label) && !filename.StartsWith("disconnected:", StringComparison.Ordinal))
            {
                connected++;
            }
        }

        return connected == ids.Count;
    }

    /// <summary>Runs one QMP command on a fresh connection and returns its reply.</summary>
    public static async Task<JsonDocument> ExecuteAsync(string qmpPath, string command, CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(qmpPath), cancellationToken).ConfigureAwait(false);
        await using var stream = new NetworkStream(socket);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
        await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false); // greeting
        await writer.WriteLineAsync("{\"execute\":\"qmp_capabilities\"}").ConfigureAwait(false);
        await ReadReplyAsync(reader, cancellationToken).ConfigureAwait(false);
        await writer.WriteLineAsync($"{{\"execute\":\"{command}\"}}").ConfigureAwait(false);
        return await ReadReplyAsync(reader, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<JsonDocument> ReadReplyAsync(StreamReader reader, CancellationToken cancellationToken)
    {
        while (true)
        {
            string line = await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false)
                ?? throw new EndOfStreamException("QMP closed the connection");
            JsonDocument document = JsonDocument.Parse(line);
            if (document.RootElement.TryGetProperty("return", out _) || document.RootElement.TryGetProperty("error", out _))
            {
                return document;
            }

            document.Dispose(); // an event
        }
    }
}
