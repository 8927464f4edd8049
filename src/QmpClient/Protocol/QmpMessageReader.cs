using System.Buffers;
using System.Text.Json;

namespace ColoChardev.Qmp;

/// <summary>
/// Finds whole JSON messages in the received bytes. QEMU ends every message with CRLF, and a message may span
/// several lines (<c>pretty=on</c>), so a parse is attempted only when a newline has arrived, and stops at the end
/// of one JSON value. No line-length limit beyond the caller's maximum message size. Public for QMP servers too
/// (the daemon's control socket frames its requests with it).
/// </summary>
public static class QmpMessageReader
{
    /// <summary>
    /// Reads one message from the front of <paramref name="buffer"/> (advancing it) or returns false when the bytes
    /// so far hold no complete message.
    /// </summary>
    /// <exception cref="JsonException">The bytes are not JSON.</exception>
    public static bool TryRead(ref ReadOnlySequence<byte> buffer, out JsonDocument? message)
    {
        message = null;
        buffer = SkipWhitespace(buffer);
        if (buffer.IsEmpty)
        {
            return false;
        }

        SequencePosition searchFrom = buffer.Start;
        while (true)
        {
            SequencePosition? newline = buffer.Slice(searchFrom).PositionOf((byte)'\n');
            if (newline is null)
            {
                return false;
            }

            SequencePosition end = buffer.GetPosition(1, newline.Value);
            var reader = new Utf8JsonReader(buffer.Slice(buffer.Start, end), isFinalBlock: false, state: default);
            if (JsonDocument.TryParseValue(ref reader, out message))
            {
                buffer = buffer.Slice(reader.Position);
                return true;
            }

            searchFrom = end;
        }
    }

    private static ReadOnlySequence<byte> SkipWhitespace(ReadOnlySequence<byte> buffer)
    {
        var reader = new SequenceReader<byte>(buffer);
        reader.AdvancePastAny((byte)' ', (byte)'\t', (byte)'\r', (byte)'\n');
        return buffer.Slice(reader.Position);
    }
}
