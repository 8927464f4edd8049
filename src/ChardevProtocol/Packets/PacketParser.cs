using System.Buffers.Binary;

namespace ColoChardev.ChardevProtocol.Packets;

/// <summary>
/// Parses one frame (virtio-net header, Ethernet, VLAN tags, IPv4/IPv6 with extension headers, TCP/UDP/ICMP)
/// into a <see cref="ParsedPacket"/>. Allocation-free, never throws on data, never reads out of bounds:
/// anything truncated or inconsistent is classified malformed with a reason.
/// </summary>
/// <remarks>
/// QEMU 7.2 checks neither that the L4 header fits nor the IP version, and takes TCP payload length from the
/// frame length (so Ethernet padding becomes payload). Here every length is checked and payload ends at the
/// IP length.
/// </remarks>
public static class PacketParser
{
    private const int EthernetHeaderLength = 14;
    private const int MaxVlanTags = 2;
    private const int MaxExtensionHeaders = 16;

    /// <summary>Parses <paramref name="frame"/>, skipping <paramref name="vnetHdrLen"/> bytes of virtio-net header first.</summary>
    /// <returns>True when the frame is well-formed (IP or not); false when it is malformed (see <see cref="ParsedPacket.Malformed"/>).</returns>
    public static bool TryParse(ReadOnlySpan<byte> frame, uint vnetHdrLen, out ParsedPacket packet)
    {
        packet = default;
        packet.FrameLength = frame.Length;
        if (vnetHdrLen > (uint)frame.Length)
        {
            return Fail(ref packet, MalformedReason.VnetHeaderBeyondFrame);
        }

        int l2 = (int)vnetHdrLen;
        packet.VnetHdrLen = l2;
        if (frame.Length - l2 < EthernetHeaderLength)
        {
            return Fail(ref packet, MalformedReason.TruncatedEthernetHeader);
        }

        int offset = l2 + 12;
        ushort etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[offset..]);
        offset += 2;
        while (IsVlanTpid(etherType))
        {
            if (packet.VlanCount == MaxVlanTags)
            {
                return Fail(ref packet, MalformedReason.TooManyVlanTags);
            }

            if (frame.Length - offset < 4)
            {
                return Fail(ref packet, MalformedReason.TruncatedVlanTag);
            }

            ushort tci = BinaryPrimitives.ReadUInt16BigEndian(frame[offset..]);
            if (packet.VlanCount == 0)
            {
                packet.OuterVlanTpid = etherType;
                packet.OuterVlanTci = tci;
            }
            else
            {
                packet.InnerVlanTci = tci;
            }

            packet.VlanCount++;
            etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[(offset + 2)..]);
            offset += 4;
        }

        packet.EtherType = etherType;
        packet.L3Offset = offset;
        return etherType switch
        {
            EtherTypes.Ipv4 => ParseIpv4(frame, ref packet),
            EtherTypes.Ipv6 => ParseIpv6(frame, ref packet),
            _ => true,
        };
    }

    private static bool IsVlanTpid(ushort etherType) =>
        etherType is EtherTypes.Vlan8021Q or EtherTypes.Vlan8021ad or EtherTypes.VlanQinQLegacy;

    private static bool ParseIpv4(ReadOnlySpan<byte> frame, ref ParsedPacket packet)
    {
        int l3 = packet.L3Offset;
        int available = frame.Length - l3;
        if (available < 20)
        {
            return Fail(ref packet, MalformedReason.TruncatedIpv4Header);
        }

        ReadOnlySpan<byte> ip = frame[l3..];
        if (ip[0] >> 4 != 4)
        {
            return Fail(ref packet, MalformedReason.BadIpVersion);
        }

        int headerLength = (ip[0] & 0x0F) * 4;
        if (headerLength < 20)
        {
            return Fail(ref packet, MalformedReason.BadIpv4HeaderLength);
        }

        if (headerLength > available)
        {
            return Fail(ref packet, MalformedReason.TruncatedIpv4Header);
        }

        int totalLength = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
        if (totalLength < headerLength)
        {
            return Fail(ref packet, MalformedReason.Ipv4TotalLengthTooSmall);
        }

        if (totalLength > available)
        {
            return Fail(ref packet, MalformedReason.Ipv4TotalLengthBeyondFrame);
        }

        packet.IpVersion = 4;
        packet.IpHeaderLength = headerLength;
        packet.L3End = l3 + totalLength;
        ushort fragment = BinaryPrimitives.ReadUInt16BigEndian(ip[6..]);
        bool moreFragments = (fragment & 0x2000) != 0;
        int fragmentOffset = fragment & 0x1FFF;
        packet.IsFragment = moreFragments || fragmentOffset != 0;
        packet.IsNonFirstFragment = fragmentOffset != 0;
        packet.Protocol = ip[9];
        packet.L4Offset = l3 + headerLength;
        UInt128 source = BinaryPrimitives.ReadUInt32BigEndian(ip[12..]);
        UInt128 destination = BinaryPrimitives.ReadUInt32BigEndian(ip[16..]);
        return ParseL4(frame, ref packet, source, destination);
    }

    private static bool ParseIpv6(ReadOnlySpan<byte> frame, ref ParsedPacket packet)
    {
        int l3 = packet.L3Offset;
        int available = frame.Length - l3;
        if (available < 40)
        {
            return Fail(ref packet, MalformedReason.TruncatedIpv6Header);
        }

        ReadOnlySpan<byte> ip = frame[l3..];
        if (ip[0] >> 4 != 6)
        {
            return Fail(ref packet, MalformedReason.BadIpVersion);
        }

        int payloadLength = BinaryPrimitives.ReadUInt16BigEndian(ip[4..]);
        if (40 + payloadLength > available)
        {
            return Fail(ref packet, MalformedReason.Ipv6PayloadLengthBeyondFrame);
        }

        packet.IpVersion = 6;
        packet.L3End = l3 + 40 + payloadLength;
        byte next = ip[6];
        int offset = l3 + 40;
        for (int count = 0; ; count++)
        {
            if (next is not (IpProtocol.HopByHop or IpProtocol.Ipv6Routing or IpProtocol.Ipv6DestinationOptions or IpProtocol.Ipv6Fragment or IpProtocol.Ah))
            {
                break;
            }

            if (count == MaxExtensionHeaders)
            {
                return Fail(ref packet, MalformedReason.TooManyExtensionHeaders);
            }

            int remaining = packet.L3End - offset;
            int length;
            if (next == IpProtocol.Ipv6Fragment)
            {
                length = 8;
            }
            else if (remaining < 2)
            {
                return Fail(ref packet, MalformedReason.TruncatedExtensionHeader);
            }
            else
            {
                length = next == IpProtocol.Ah ? (frame[offset + 1] + 2) * 4 : (frame[offset + 1] + 1) * 8;
            }

            if (length > remaining)
            {
                return Fail(ref packet, MalformedReason.TruncatedExtensionHeader);
            }

            byte following = frame[offset];
            if (next == IpProtocol.Ipv6Fragment)
            {
                ushort offsetAndFlags = BinaryPrimitives.ReadUInt16BigEndian(frame[(offset + 2)..]);
                packet.IsFragment = true;
                if ((offsetAndFlags >> 3) != 0)
                {
                    packet.IsNonFirstFragment = true;
                }
            }

            next = following;
            offset += length;
            if (packet.IsNonFirstFragment)
            {
                // What follows is fragment data, not headers.
                break;
            }
        }

        packet.Protocol = next;
        packet.L4Offset = offset;
        packet.IpHeaderLength = offset - l3;
        UInt128 source = BinaryPrimitives.ReadUInt128BigEndian(ip[8..]);
        UInt128 destination = BinaryPrimitives.ReadUInt128BigEndian(ip[24..]);
        return ParseL4(frame, ref packet, source, destination);
    }

    private static bool ParseL4(ReadOnlySpan<byte> frame, ref ParsedPacket packet, UInt128 source, UInt128 destination)
    {
        int l4 = packet.L4Offset;
        int available = packet.L3End - l4;
        packet.PayloadOffset = l4;
        packet.PayloadLength = available;
        bool ok = true;
        if (!packet.IsNonFirstFragment)
        {
            ReadOnlySpan<byte> header = frame[l4..packet.L3End];
            ok = packet.Protocol switch
            {
                IpProtocol.Tcp => ParseTcp(header, ref packet),
                IpProtocol.Udp or IpProtocol.UdpLite => ParseUdp(header, ref packet),
                IpProtocol.Icmp when packet.IpVersion == 4 => ParseIcmp(header, ref packet),
                IpProtocol.Icmpv6 when packet.IpVersion == 6 => ParseIcmp(header, ref packet),
                IpProtocol.Sctp or IpProtocol.Dccp => ParsePorts(header, ref packet),
                _ => true,
            };
        }

        if (ok)
        {
            uint vlanIds = ((uint)(packet.OuterVlanTci & 0x0FFF) << 12) | (uint)(packet.InnerVlanTci & 0x0FFF);
            packet.Flow = new FlowKey(packet.IpVersion, source, destination, packet.Protocol, packet.SourcePort, packet.DestinationPort, vlanIds);
        }

        return ok;
    }

    private static bool ParseTcp(ReadOnlySpan<byte> tcp, ref ParsedPacket packet)
    {
        if (tcp.Length < 20)
        {
            return Fail(ref packet, MalformedReason.TruncatedTcpHeader);
        }

        int headerLength = (tcp[12] >> 4) * 4;
        if (headerLength < 20)
        {
            return Fail(ref packet, MalformedReason.BadTcpDataOffset);
        }

        if (headerLength > tcp.Length)
        {
            return Fail(ref packet, MalformedReason.TruncatedTcpHeader);
        }

        packet.SourcePort = BinaryPrimitives.ReadUInt16BigEndian(tcp);
        packet.DestinationPort = BinaryPrimitives.ReadUInt16BigEndian(tcp[2..]);
        packet.TcpSeq = BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]);
        packet.TcpAck = BinaryPrimitives.ReadUInt32BigEndian(tcp[8..]);
        packet.TcpFlags = (TcpControlBits)tcp[13];
        packet.TcpWindow = BinaryPrimitives.ReadUInt16BigEndian(tcp[14..]);
        packet.TcpHeaderLength = headerLength;
        packet.TcpOptionsOffset = packet.L4Offset + 20;
        packet.TcpOptionsLength = headerLength - 20;
        packet.PayloadOffset = packet.L4Offset + headerLength;
        packet.PayloadLength = tcp.Length - headerLength;
        return true;
    }

    private static bool ParseUdp(ReadOnlySpan<byte> udp, ref ParsedPacket packet)
    {
        if (udp.Length < 8)
        {
            return Fail(ref packet, MalformedReason.TruncatedUdpHeader);
        }

        packet.SourcePort = BinaryPrimitives.ReadUInt16BigEndian(udp);
        packet.DestinationPort = BinaryPrimitives.ReadUInt16BigEndian(udp[2..]);
        int end = udp.Length;
        if (packet.Protocol == IpProtocol.Udp && !packet.IsFragment)
        {
            // UDP-Lite's length field is its checksum coverage, and a first fragment's covers later fragments too.
            int udpLength = BinaryPrimitives.ReadUInt16BigEndian(udp[4..]);
            if (udpLength < 8 || udpLength > udp.Length)
            {
                return Fail(ref packet, MalformedReason.BadUdpLength);
            }

            end = udpLength;
        }

        packet.PayloadOffset = packet.L4Offset + 8;
        packet.PayloadLength = end - 8;
        return true;
    }

    private static bool ParseIcmp(ReadOnlySpan<byte> icmp, ref ParsedPacket packet)
    {
        if (icmp.Length < 8)
        {
            return Fail(ref packet, MalformedReason.TruncatedIcmpHeader);
        }

        packet.IcmpType = icmp[0];
        packet.IcmpCode = icmp[1];
        packet.PayloadOffset = packet.L4Offset + 8;
        packet.PayloadLength = icmp.Length - 8;
        return true;
    }

    private static bool ParsePorts(ReadOnlySpan<byte> l4, ref ParsedPacket packet)
    {
        if (l4.Length < 4)
        {
            return Fail(ref packet, MalformedReason.TruncatedPorts);
        }

        packet.SourcePort = BinaryPrimitives.ReadUInt16BigEndian(l4);
        packet.DestinationPort = BinaryPrimitives.ReadUInt16BigEndian(l4[2..]);
        return true;
    }

    private static bool Fail(ref ParsedPacket packet, MalformedReason reason)
    {
        packet.Malformed = reason;
        return false;
    }
}
