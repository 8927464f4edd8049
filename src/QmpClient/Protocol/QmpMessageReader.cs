using System.Buffers;
using System.Text.Json;

namespace ColoChardev.Qmp;

/// <summary>
/// Finds whole JSON messages in the bytes received on one QMP connection. A message ends with its last token (QEMU
/// also ends each with CRLF, and a message may span several lines with <c>pretty=on</c>), so it is found however it
/// is split across reads. The bytes of an unfinished message are tokenised once: each call resumes where the last
/// one stopped, so a message that arrives in many small pieces, or over many lines, costs time linear in its size.
/// One reader per connection; the caller keeps unconsumed bytes at the front of the buffer it passes next time (as
/// <c>PipeReader.AdvanceTo(buffer.Start, buffer.End)</c> does). No length limit beyond the caller's own. Public for QMP
/// servers too (the daemon's control socket frames its requests with it).
/// </summary>
public sealed class QmpMessageReader
{
    private JsonReaderState _state;
    private long _scanned;

    /// <summary>
    /// Reads one message from the front of <paramref name="buffer"/> (advancing it past the message and the
    /// whitespace before it) or returns false when the bytes so far hold no complete message.
    /// </summary>
    /// <exception cref="JsonException">The bytes are not JSON; the reader starts afresh at the next call.</exception>
    public bool TryRead(ref ReadOnlySequence<byte> buffer, out JsonDocument? message)
    {
        message = null;
        if (_scanned == 0)
        {
            buffer = SkipWhitespace(buffer);
        }

        if (buffer.IsEmpty)
        {
            return false;
        }

        var reader = new Utf8JsonReader(buffer.Slice(_scanned), isFinalBlock: false, _state);
        try
        {
            while (reader.Read())
            {
                if (reader.CurrentDepth == 0 && reader.TokenType is not (JsonTokenType.StartObject or JsonTokenType.StartArray))
                {
                    // The top-level value's last token: the message is whole.
                    long end = _scanned + reader.BytesConsumed;
                    Reset();
                    message = JsonDocument.Parse(buffer.Slice(0, end));
                    buffer = buffer.Slice(end);
                    return true;
                }
            }
        }
        catch (JsonException)
        {
            Reset();
            throw;
        }

        _scanned += reader.BytesConsumed;
        _state = reader.CurrentState;
        return false;
    }

    /// <summary>Forgets an unfinished message (after the caller skipped bytes itself).</summary>
    public void Reset()
    {
        _state = default;
        _scanned = 0;
    }

    private static ReadOnlySequence<byte> SkipWhitespace(ReadOnlySequence<byte> buffer)
    {
        var reader = new SequenceReader<byte>(buffer);
        reader.AdvancePastAny((byte)' ', (byte)'\t', (byte)'\r', (byte)'\n');
        return buffer.Slice(reader.Position);
    }
}
