using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>A frame waiting in a flow's queue, with what comparing it needs.</summary>
internal struct QueuedPacket
{
    public ChardevFrame Frame;

    /// <summary>When it arrived (the caller's clock, ms).</summary>
    public long ArrivalMs;

    /// <summary>Engine-wide arrival number: orders packets of different queues.</summary>
    public long Order;

    /// <summary>Start of the compared bytes in the frame (TCP: payload; others: L4 header).</summary>
    public int DataOffset;

    /// <summary>Number of compared bytes (from the IP length, never Ethernet padding).</summary>
    public int DataLength;

    /// <summary>Offset, within the compared bytes, of a 2-byte checksum to skip; -1 for none.</summary>
    public int ChecksumAt;

    /// <summary>TCP: sequence number of the first payload byte.</summary>
    public uint Seq;

    /// <summary>TCP: acknowledgement number (valid when <see cref="HasAck"/>).</summary>
    public uint Ack;

    public bool HasAck;

    /// <summary>TCP: the segment's control bits.</summary>
    public TcpControlBits Flags;

    /// <summary>TCP: payload bytes already compared (QEMU's "offset").</summary>
    public int Compared;

    /// <summary>TCP: compared in pieces, or against a secondary segment of another range (the ACK gate applies).</summary>
    public bool Partial;

    public readonly uint SeqEnd => Seq + (uint)DataLength;

    public readonly ReadOnlySpan<byte> Data => Frame.Payload.Slice(DataOffset, DataLength);
}
