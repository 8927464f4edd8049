using System.Buffers;
using System.Buffers.Binary;

namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>The pure framing writer: appends one frame to any <see cref="IBufferWriter{T}"/>.</summary>
public static class FrameEncoder
{
    /// <summary>
    /// Appends <c>be32 len [be32 vnet_hdr_len] payload</c>. The vnet word is written only when
    /// <paramref name="vnetHdrSupport"/> is on, as QEMU's filters and colo-compare do.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// The payload is empty (QEMU 7.2's colo-compare aborts on a zero-length frame) or larger than
    /// <see cref="ChardevFraming.MaxPayloadLength"/> (every QEMU reader would drop the connection for good).
    /// </exception>
    public static void WriteFrame(IBufferWriter<byte> writer, ReadOnlySpan<byte> payload, bool vnetHdrSupport, uint vnetHdrLen)
    {
        ArgumentNullException.ThrowIfNull(writer);
        EnsureWritable(payload.Length);
        int headerLength = ChardevFraming.HeaderLength(vnetHdrSupport);
        int total = headerLength + payload.Length;
        Span<byte> span = writer.GetSpan(total);
        if (span.Length >= total)
        {
            WriteHeader(span, payload.Length, vnetHdrSupport, vnetHdrLen);
            payload.CopyTo(span[headerLength..]);
            writer.Advance(total);
            return;
        }

        // The writer gave a smaller span than asked for (allowed by IBufferWriter): write in pieces.
        Span<byte> head = stackalloc byte[8];
        WriteHeader(head, payload.Length, vnetHdrSupport, vnetHdrLen);
        writer.Write(head[..headerLength]);
        writer.Write(payload);
    }

    /// <summary>Throws when a payload of this length must not be sent to QEMU.</summary>
    public static void EnsureWritable(int payloadLength)
    {
        if (payloadLength == 0)
        {
            throw new ArgumentException("refusing to write a zero-length frame: QEMU 7.2's colo-compare aborts on one", nameof(payloadLength));
        }

        if (payloadLength > ChardevFraming.MaxPayloadLength)
        {
            throw new ArgumentException(
                $"refusing to write a {payloadLength}-byte frame: QEMU accepts at most {ChardevFraming.MaxPayloadLength} bytes",
                nameof(payloadLength));
        }
    }

    private static void WriteHeader(Span<byte> destination, int length, bool vnetHdrSupport, uint vnetHdrLen)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)length);
        if (vnetHdrSupport)
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination[4..], vnetHdrLen);
        }
    }
}
