using System.Buffers;
using System.Buffers.Binary;

namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>
/// The pure framing reader: no sockets, no state, no allocation. The socket loop around it only moves bytes.
/// </summary>
public static class FrameDecoder
{
    /// <summary>
    /// Reads one frame from the front of <paramref name="buffer"/>, a contiguous span (the fast path). On
    /// <see cref="FrameReadStatus.Complete"/>, <paramref name="frameLength"/> is the header plus payload length and the
    /// payload is <c>buffer.Slice(headerLength, header.Length)</c>; otherwise nothing is consumed.
    /// </summary>
    /// <remarks>
    /// QEMU detects an oversized frame lazily, after consuming 69,632 payload bytes; we reject it as soon as
    /// the length word is seen, which loses nothing more because the stream is unusable either way.
    /// A zero-length frame is a complete frame with an empty payload (QEMU 7.2 aborts on it).
    /// </remarks>
    public static FrameReadStatus TryReadFrame(ReadOnlySpan<byte> buffer, bool vnetHdrSupport, out FrameHeader header, out int frameLength)
    {
        int headerLength = ChardevFraming.HeaderLength(vnetHdrSupport);
        header = default;
        frameLength = 0;
        if (buffer.Length < headerLength)
        {
            return FrameReadStatus.Incomplete;
        }

        uint length = BinaryPrimitives.ReadUInt32BigEndian(buffer);
        header = new FrameHeader(length, vnetHdrSupport ? BinaryPrimitives.ReadUInt32BigEndian(buffer[4..]) : 0);
        if (length > ChardevFraming.MaxPayloadLength)
        {
            return FrameReadStatus.Oversized;
        }

        if (buffer.Length - headerLength < length)
        {
            return FrameReadStatus.Incomplete;
        }

        frameLength = headerLength + (int)length;
        return FrameReadStatus.Complete;
    }

    /// <summary>
    /// Reads one frame from the front of a sequence (which may split it across segments).
    /// On <see cref="FrameReadStatus.Complete"/> the buffer is advanced past the frame and
    /// <paramref name="payload"/> is a slice of the original buffer (copy it before the pipe is advanced).
    /// Otherwise the buffer is left as it was.
    /// </summary>
    public static FrameReadStatus TryReadFrame(
        ref ReadOnlySequence<byte> buffer,
        bool vnetHdrSupport,
        out FrameHeader header,
        out ReadOnlySequence<byte> payload)
    {
        int headerLength = ChardevFraming.HeaderLength(vnetHdrSupport);
        payload = default;
        header = default;
        if (buffer.Length < headerLength)
        {
            return FrameReadStatus.Incomplete;
        }

        uint length;
        uint vnetHdrLen = 0;
        ReadOnlySpan<byte> first = buffer.FirstSpan;
        if (first.Length >= headerLength)
        {
            length = BinaryPrimitives.ReadUInt32BigEndian(first);
            if (vnetHdrSupport)
            {
                vnetHdrLen = BinaryPrimitives.ReadUInt32BigEndian(first[4..]);
            }
        }
        else
        {
            Span<byte> scratch = stackalloc byte[8];
            buffer.Slice(0, headerLength).CopyTo(scratch);
            length = BinaryPrimitives.ReadUInt32BigEndian(scratch);
            if (vnetHdrSupport)
            {
                vnetHdrLen = BinaryPrimitives.ReadUInt32BigEndian(scratch[4..]);
            }
        }

        header = new FrameHeader(length, vnetHdrLen);
        if (length > ChardevFraming.MaxPayloadLength)
        {
            return FrameReadStatus.Oversized;
        }

        long frameLength = headerLength + (long)length;
        if (buffer.Length < frameLength)
        {
            return FrameReadStatus.Incomplete;
        }

        payload = buffer.Slice(headerLength, length);
        buffer = buffer.Slice(frameLength);
        return FrameReadStatus.Complete;
    }
}
