using System.Buffers;
using System.Text;
using System.Text.Json;
using ColoChardev.Qmp;

namespace ColoChardev.QmpClient.Tests.Protocol;

/// <summary>
/// Framing of QMP messages however the bytes arrive: split at every byte, several in one read, over several lines,
/// with whitespace between them; bad bytes throw and the reader starts afresh.
/// </summary>
public class QmpMessageReaderTests
{
    private const string Stream =
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}}, \"capabilities\": [\"oob\"]}}\r\n"
        + "{\r\n    \"return\": {\r\n        \"status\": \"colo\",\r\n        \"running\": false\r\n    },\r\n    \"id\": \"a} b\\\"{\"\r\n}\r\n"
        + "\r\n\r\n   {\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n"
        + "[1, [2, {\"three\": [3]}]]\r\n"
        + "42\r\n";

    private static readonly string[] Expected =
    [
        "{\"QMP\":{\"version\":{\"qemu\":{\"micro\":22,\"minor\":2,\"major\":7}},\"capabilities\":[\"oob\"]}}",
        "{\"return\":{\"status\":\"colo\",\"running\":false},\"id\":\"a} b\\u0022{\"}",
        "{\"event\":\"STOP\",\"timestamp\":{\"seconds\":1,\"microseconds\":2}}",
        "[1,[2,{\"three\":[3]}]]",
        "42",
    ];

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(64)]
    [InlineData(100_000)]
    public void Messages_are_found_whole_however_the_bytes_are_split(int chunk)
    {
        Assert.Equal(Expected, Feed(Encoding.UTF8.GetBytes(Stream), chunk));
    }

    [Fact]
    public void A_message_is_whole_at_its_last_token_before_any_newline()
    {
        var reader = new QmpMessageReader();
        var buffer = new ReadOnlySequence<byte>("{\"return\": {}}"u8.ToArray());
        Assert.True(reader.TryRead(ref buffer, out JsonDocument? message));
        using (message)
        {
            Assert.Equal(JsonValueKind.Object, message!.RootElement.GetProperty("return").ValueKind);
        }

        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void Whitespace_alone_is_consumed_and_is_no_message()
    {
        var reader = new QmpMessageReader();
        var buffer = new ReadOnlySequence<byte>("\r\n \t\r\n"u8.ToArray());
        Assert.False(reader.TryRead(ref buffer, out _));
        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void Bytes_that_are_not_json_throw_even_in_an_unfinished_message_and_the_reader_starts_afresh()
    {
        var reader = new QmpMessageReader();
        var buffer = new ReadOnlySequence<byte>("{\"return\": {\r\n"u8.ToArray());
        Assert.False(reader.TryRead(ref buffer, out _));
        buffer = new ReadOnlySequence<byte>("{\"return\": {\r\n oops\r\n"u8.ToArray());
        Assert.ThrowsAny<JsonException>(() => reader.TryRead(ref buffer, out _));

        // The caller dropped those bytes; a fresh message is read from its own start.
        buffer = new ReadOnlySequence<byte>("{\"return\": 1}\r\n"u8.ToArray());
        Assert.True(reader.TryRead(ref buffer, out JsonDocument? message));
        message!.Dispose();
    }

    /// <summary>Delivers <paramref name="bytes"/> <paramref name="chunk"/> at a time, as a pipe would: unconsumed bytes stay in front.</summary>
    private static List<string> Feed(byte[] bytes, int chunk)
    {
        var reader = new QmpMessageReader();
        var found = new List<string>();
        int consumed = 0;
        for (int available = Math.Min(chunk, bytes.Length); ; available = Math.Min(available + chunk, bytes.Length))
        {
            var buffer = new ReadOnlySequence<byte>(bytes, consumed, available - consumed);
            long before = buffer.Length;
            while (reader.TryRead(ref buffer, out JsonDocument? message))
            {
                using (message)
                {
                    found.Add(JsonSerializer.Serialize(message!.RootElement));
                }
            }

            consumed += (int)(before - buffer.Length);
            if (available == bytes.Length)
            {
                return found;
            }
        }
    }
}
