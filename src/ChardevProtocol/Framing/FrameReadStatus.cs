namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>Outcome of <see cref="FrameDecoder.TryReadFrame"/>.</summary>
public enum FrameReadStatus
{
    /// <summary>Not enough bytes for a whole frame yet; the buffer is unchanged.</summary>
    Incomplete,

    /// <summary>A whole frame was read and the buffer advanced past it.</summary>
    Complete,

    /// <summary>
    /// The header announces a payload above <see cref="ChardevFraming.MaxPayloadLength"/>. The stream
    /// cannot be resynchronised after this; the buffer is unchanged.
    /// </summary>
    Oversized,
}
