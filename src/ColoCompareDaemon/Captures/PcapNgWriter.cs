using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace ColoChardev.Daemon.Captures;

/// <summary>
/// Builds pcapng blocks (IETF draft-ietf-opsawg-pcapng, the format Wireshark and tshark write by default) into a
/// buffer: a section header, interface descriptions and enhanced packet blocks, each with optional UTF-8 comments.
/// Little-endian, microsecond timestamps (the format's default resolution). Why pcapng and not pcap: only pcapng
/// carries a comment per packet, which is where a divergence's reason goes.
/// </summary>
internal sealed class PcapNgWriter(IBufferWriter<byte> output)
{
    /// <summary>LINKTYPE_ETHERNET: what the chardevs carry (after the vnet header).</summary>
    public const ushort LinkTypeEthernet = 1;

    private const uint SectionHeaderBlock = 0x0A0D0D0A;
    private const uint InterfaceDescriptionBlock = 1;
    private const uint EnhancedPacketBlock = 6;
    private const uint ByteOrderMagic = 0x1A2B3C4D;
    private const ushort OptionEnd = 0;
    private const ushort OptionComment = 1;
    private const ushort OptionInterfaceName = 2;
    private const ushort OptionInterfaceDescription = 3;
    private const ushort OptionUserApplication = 4;

    /// <summary>Starts a section; every file begins with one, followed by its interfaces.</summary>
    public void WriteSectionHeader(string application, string? comment)
    {
        var options = new List<(ushort, string)> { (OptionUserApplication, application) };
        if (comment is not null)
        {
            options.Add((OptionComment, comment));
        }

        int body = 4 + 2 + 2 + 8;
        WriteBlock(SectionHeaderBlock, body, options, span =>
        {
            BinaryPrimitives.WriteUInt32LittleEndian(span, ByteOrderMagic);
            BinaryPrimitives.WriteUInt16LittleEndian(span[4..], 1); // major version
            BinaryPrimitives.WriteUInt16LittleEndian(span[6..], 0); // minor version
            BinaryPrimitives.WriteInt64LittleEndian(span[8..], -1); // section length: not given
        }, ReadOnlySpan<byte>.Empty);
    }

    /// <summary>Declares an interface; packets name interfaces by their order of declaration (0, 1, ...).</summary>
    public void WriteInterface(string name, string description, ushort linkType = LinkTypeEthernet)
    {
        WriteBlock(InterfaceDescriptionBlock, 8, [(OptionInterfaceName, name), (OptionInterfaceDescription, description)], span =>
        {
            BinaryPrimitives.WriteUInt16LittleEndian(span, linkType);
            BinaryPrimitives.WriteUInt16LittleEndian(span[2..], 0);
            BinaryPrimitives.WriteUInt32LittleEndian(span[4..], 0); // snap length: no limit
        }, ReadOnlySpan<byte>.Empty);
    }

    /// <summary>One packet, captured whole, on interface <paramref name="interfaceId"/>.</summary>
    public void WritePacket(int interfaceId, long unixMicroseconds, ReadOnlySpan<byte> packet, string? comment)
    {
        (ushort, string)[] options = comment is null ? [] : [(OptionComment, comment)];
        ulong timestamp = (ulong)unixMicroseconds;
        int length = packet.Length;
        WriteBlock(EnhancedPacketBlock, 20, options, span =>
        {
            BinaryPrimitives.WriteUInt32LittleEndian(span, (uint)interfaceId);
            BinaryPrimitives.WriteUInt32LittleEndian(span[4..], (uint)(timestamp >> 32));
            BinaryPrimitives.WriteUInt32LittleEndian(span[8..], (uint)timestamp);
            BinaryPrimitives.WriteUInt32LittleEndian(span[12..], (uint)length); // captured
            BinaryPrimitives.WriteUInt32LittleEndian(span[16..], (uint)length); // on the wire
        }, packet);
    }

    private delegate void FixedFields(Span<byte> span);

    private void WriteBlock(uint type, int fixedLength, IReadOnlyList<(ushort Code, string Value)> options, FixedFields writeFixed, ReadOnlySpan<byte> data)
    {
        var encoded = new List<(ushort Code, byte[] Value)>(options.Count);
        int optionsLength = 0;
        foreach ((ushort code, string value) in options)
        {
            byte[] bytes = Truncate(value);
            encoded.Add((code, bytes));
            optionsLength += 4 + Pad(bytes.Length);
        }

        if (encoded.Count > 0)
        {
            optionsLength += 4; // opt_endofopt
        }

        int total = 8 + fixedLength + Pad(data.Length) + optionsLength + 4;
        Span<byte> block = output.GetSpan(total)[..total];
        block.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(block, type);
        BinaryPrimitives.WriteUInt32LittleEndian(block[4..], (uint)total);
        writeFixed(block.Slice(8, fixedLength));
        int at = 8 + fixedLength;
        data.CopyTo(block[at..]);
        at += Pad(data.Length);
        foreach ((ushort code, byte[] value) in encoded)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(block[at..], code);
            BinaryPrimitives.WriteUInt16LittleEndian(block[(at + 2)..], (ushort)value.Length);
            value.CopyTo(block[(at + 4)..]);
            at += 4 + Pad(value.Length);
        }

        if (encoded.Count > 0)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(block[at..], OptionEnd);
            at += 4;
        }

        BinaryPrimitives.WriteUInt32LittleEndian(block[at..], (uint)total);
        output.Advance(total);
    }

    private static int Pad(int length) => (length + 3) & ~3;

    /// <summary>An option's value is at most 65,535 bytes; a longer text is cut at a character boundary.</summary>
    private static byte[] Truncate(string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        if (bytes.Length <= ushort.MaxValue)
        {
            return bytes;
        }

        int end = ushort.MaxValue;
        while (end > 0 && (bytes[end] & 0xC0) == 0x80)
        {
            end--;
        }

        return bytes[..end];
    }
}
