using System.Buffers.Binary;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Testbed;

/// <summary>What a <see cref="SyntheticTraffic"/> stream carries.</summary>
/// <param name="Protocol">IpProtocol.Tcp or IpProtocol.Udp (over IPv4).</param>
/// <param name="FrameBytes">Length of each Ethernet frame (without any virtio-net header), at least 64.</param>
/// <param name="Flows">Flows the frames rotate over (frame i belongs to flow i mod Flows).</param>
/// <param name="Vnet">Frames carry a 12-byte virtio-net header and the vnet_hdr_len word (vnet_hdr_support=on).</param>
/// <param name="DivergeEvery">Every this-many-th frame differs on the secondary (0: never).</param>
public sealed record TrafficShape(byte Protocol, int FrameBytes, int Flows, bool Vnet = false, int DivergeEvery = 0)
{
    /// <summary>The virtio-net header length used when <see cref="Vnet"/> is on.</summary>
    public const int VnetHeaderLength = 12;
}

/// <summary>
/// Framed frames for load tests and benchmarks, generated on the fly: frame <c>i</c> is a copy of its flow's template
/// with the frame number in the first 8 payload bytes and, for TCP, the flow's sequence number advanced by one
/// payload per frame, so a comparator sees a well-formed byte stream per flow. The same bytes go to primary_in and
/// secondary_in, except for diverging frames, whose last payload byte is flipped on the secondary.
/// Checksums are those of the template (neither QEMU's colo-compare nor ours verifies them).
/// </summary>
public sealed class SyntheticTraffic
{
    private const uint FirstSequence = 1_000_000;
    private readonly byte[][] _templates;
    private readonly int _payloadOffset;
    private readonly int _sequenceOffset;

    public SyntheticTraffic(TrafficShape shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentOutOfRangeException.ThrowIfLessThan(shape.FrameBytes, 64);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(shape.Flows);
        if (shape.Protocol is not (IpProtocol.Tcp or IpProtocol.Udp))
        {
            throw new ArgumentException("TCP or UDP only", nameof(shape));
        }

        Shape = shape;
        int vnet = shape.Vnet ? TrafficShape.VnetHeaderLength : 0;
        int headers = 14 + 20 + (shape.Protocol == IpProtocol.Tcp ? 20 : 8);
        PayloadLength = shape.FrameBytes - headers;
        HeaderLength = shape.Vnet ? 8 : 4;
        FramedLength = HeaderLength + vnet + shape.FrameBytes;
        _payloadOffset = HeaderLength + vnet + headers;
        _sequenceOffset = HeaderLength + vnet + 14 + 20 + 4;
        _templates = new byte[shape.Flows][];
        byte[] payload = new byte[PayloadLength];
        for (int i = 0; i < payload.Length; i++)
        {
            payload[i] = (byte)('a' + (i % 26));
        }

        for (int flow = 0; flow < shape.Flows; flow++)
        {
            var builder = new FrameBuilder().Vnet(vnet).Ipv4("10.0.0.2", "10.0.0.1", (ushort)flow);
            ushort clientPort = (ushort)(40000 + flow);
            builder = shape.Protocol == IpProtocol.Tcp
                ? builder.Tcp(80, clientPort, FirstSequence, 5000, TcpControlBits.Ack | TcpControlBits.Psh, payload)
                : builder.Udp(5001, clientPort, payload);
            byte[] frame = builder.Build();
            byte[] framed = new byte[FramedLength];
            BinaryPrimitives.WriteUInt32BigEndian(framed, (uint)frame.Length);
            if (shape.Vnet)
            {
                BinaryPrimitives.WriteUInt32BigEndian(framed.AsSpan(4), (uint)vnet);
            }

            frame.CopyTo(framed, HeaderLength);
            _templates[flow] = framed;
        }
    }

    public TrafficShape Shape { get; }

    /// <summary>Bytes of one frame on the wire: the chardev header, any virtio-net header, the Ethernet frame.</summary>
    public int FramedLength { get; }

    /// <summary>The chardev header: be32 length, and be32 vnet_hdr_len when vnet headers are on.</summary>
    public int HeaderLength { get; }

    /// <summary>L4 payload bytes per frame (the first 8 are the frame number).</summary>
    public int PayloadLength { get; }

    /// <summary>Whether frame <paramref name="id"/> differs between primary and secondary.</summary>
    public bool Diverges(long id) => Shape.DivergeEvery > 0 && id % Shape.DivergeEvery == Shape.DivergeEvery - 1;

    /// <summary>Writes framed frame <paramref name="id"/> (as the primary sends it) into <paramref name="destination"/>.</summary>
    public void Write(long id, Span<byte> destination)
    {
        int flow = (int)(id % Shape.Flows);
        _templates[flow].CopyTo(destination);
        BinaryPrimitives.WriteInt64LittleEndian(destination[_payloadOffset..], id);
        if (Shape.Protocol == IpProtocol.Tcp)
        {
            uint sequence = unchecked(FirstSequence + (uint)(id / Shape.Flows * PayloadLength));
            BinaryPrimitives.WriteUInt32BigEndian(destination[_sequenceOffset..], sequence);
        }
    }

    /// <summary>Turns a framed frame written by <see cref="Write"/> into the secondary's diverging version of it.</summary>
    public void MakeDiverge(Span<byte> framed) => framed[FramedLength - 1] ^= 0xFF;

    /// <summary>The frame number carried by a framed frame (its chardev header included).</summary>
    public long ReadId(ReadOnlySpan<byte> framed) => BinaryPrimitives.ReadInt64LittleEndian(framed[_payloadOffset..]);
}
