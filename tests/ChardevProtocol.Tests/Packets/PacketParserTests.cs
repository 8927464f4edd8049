using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;

namespace ColoChardev.ChardevProtocol.Tests.Packets;

public class PacketParserTests
{
    private static readonly byte[] Data = "0123456789"u8.ToArray();

    private static ParsedPacket Parse(byte[] frame, uint vnet = 0)
    {
        bool ok = PacketParser.TryParse(frame, vnet, out ParsedPacket packet);
        Assert.True(ok, $"malformed: {packet.Malformed}");
        Assert.Equal(MalformedReason.None, packet.Malformed);
        return packet;
    }

    private static MalformedReason ParseMalformed(byte[] frame, uint vnet = 0)
    {
        Assert.False(PacketParser.TryParse(frame, vnet, out ParsedPacket packet));
        return packet.Malformed;
    }

    [Fact]
    public void Ipv4_tcp_with_options_gives_seq_ack_flags_options_and_payload()
    {
        byte[] options = [0x01, 0x01, 0x08, 0x0a, 0, 0, 0, 1, 0, 0, 0, 2]; // NOP NOP timestamp
        byte[] frame = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Tcp(80, 4242, 1000, 2000, TcpControlBits.Ack | TcpControlBits.Psh, Data, options).Build();
        ParsedPacket p = Parse(frame);
        Assert.Equal(4, p.IpVersion);
        Assert.Equal(14, p.L3Offset);
        Assert.Equal(20, p.IpHeaderLength);
        Assert.Equal(IpProtocol.Tcp, p.Protocol);
        Assert.Equal(34, p.L4Offset);
        Assert.Equal(80, p.SourcePort);
        Assert.Equal(4242, p.DestinationPort);
        Assert.Equal(1000u, p.TcpSeq);
        Assert.Equal(2000u, p.TcpAck);
        Assert.Equal(TcpControlBits.Ack | TcpControlBits.Psh, p.TcpFlags);
        Assert.Equal(32, p.TcpHeaderLength);
        Assert.Equal(54, p.TcpOptionsOffset);
        Assert.Equal(12, p.TcpOptionsLength);
        Assert.Equal(66, p.PayloadOffset);
        Assert.Equal(10, p.PayloadLength);
        Assert.Equal(Data, frame.AsSpan(p.PayloadOffset, p.PayloadLength).ToArray());
        Assert.Equal("tcp 10.0.0.1:80 > 10.0.0.2:4242", p.Flow.ToString());
        Assert.True(p.IsIp);
    }

    [Fact]
    public void Tcp_payload_ends_at_the_ip_length_so_ethernet_padding_is_never_payload()
    {
        // A pure ACK is 54 bytes and padded to 60 on the wire; QEMU 7.2 counts the 6 pad bytes as payload.
        byte[] frame = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Tcp(80, 4242, 5, 6, TcpControlBits.Ack, []).PadTo(60).Build();
        ParsedPacket p = Parse(frame);
        Assert.Equal(60, p.FrameLength);
        Assert.Equal(54, p.L3End);
        Assert.Equal(0, p.PayloadLength);
    }

    [Fact]
    public void Udp_gives_ports_and_payload_from_the_udp_length()
    {
        byte[] frame = new FrameBuilder().Ipv4("192.168.0.1", "192.168.0.2").Udp(53, 5353, [1, 2, 3]).PadTo(60).Build();
        ParsedPacket p = Parse(frame);
        Assert.Equal(IpProtocol.Udp, p.Protocol);
        Assert.Equal(53, p.SourcePort);
        Assert.Equal(5353, p.DestinationPort);
        Assert.Equal(42, p.PayloadOffset);
        Assert.Equal(3, p.PayloadLength);
    }

    [Fact]
    public void Icmp_gives_type_code_and_a_flow_without_ports()
    {
        byte[] frame = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Icmp(8, 0, 77, 1, Data).Build();
        ParsedPacket p = Parse(frame);
        Assert.Equal(IpProtocol.Icmp, p.Protocol);
        Assert.Equal(8, p.IcmpType);
        Assert.Equal(0, p.IcmpCode);
        Assert.Equal(10, p.PayloadLength);
        Assert.Equal(0, p.Flow.SourcePort);
        Assert.Equal("icmp 10.0.0.1 > 10.0.0.2", p.Flow.ToString());
    }

    [Fact]
    public void Other_ipv4_protocols_are_parsed_to_l4_with_the_rest_as_payload()
    {
        byte[] frame = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").RawL4(IpProtocol.Gre, [0, 0, 0x08, 0, 9, 9]).Build();
        ParsedPacket p = Parse(frame);
        Assert.Equal(IpProtocol.Gre, p.Protocol);
        Assert.Equal(p.L4Offset, p.PayloadOffset);
        Assert.Equal(6, p.PayloadLength);
    }

    [Fact]
    public void Sctp_ports_are_part_of_the_flow()
    {
        byte[] frame = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").RawL4(IpProtocol.Sctp, [0x0b, 0xb8, 0x0b, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0]).Build();
        ParsedPacket p = Parse(frame);
        Assert.Equal(3000, p.SourcePort);
        Assert.Equal(3001, p.DestinationPort);
    }

    [Fact]
    public void Arp_is_well_formed_and_not_ip()
    {
        byte[] frame = new FrameBuilder().NonIp(EtherTypes.Arp, new byte[28]).Build();
        ParsedPacket p = Parse(frame);
        Assert.Equal(EtherTypes.Arp, p.EtherType);
        Assert.Equal(0, p.IpVersion);
        Assert.False(p.IsIp);
        Assert.Equal(14, p.L3Offset);
    }

    [Theory]
    [InlineData(10)]
    [InlineData(12)]
    [InlineData(20)]
    public void A_virtio_net_header_of_the_given_length_is_skipped_first(int vnet)
    {
        byte[] frame = new FrameBuilder().Vnet(vnet).Ipv4("10.0.0.1", "10.0.0.2").Udp(1, 2, Data).Build();
        ParsedPacket p = Parse(frame, (uint)vnet);
        Assert.Equal(vnet, p.VnetHdrLen);
        Assert.Equal(vnet + 14, p.L3Offset);
        Assert.Equal(vnet + 42, p.PayloadOffset);
        Assert.Equal(Data, frame.AsSpan(p.PayloadOffset, p.PayloadLength).ToArray());
    }

    [Fact]
    public void A_vnet_header_longer_than_the_frame_is_malformed()
    {
        Assert.Equal(MalformedReason.VnetHeaderBeyondFrame, ParseMalformed(new byte[20], 21));
        Assert.Equal(MalformedReason.VnetHeaderBeyondFrame, ParseMalformed(new byte[20], uint.MaxValue));
    }

    [Fact]
    public void An_8021q_tag_is_read_and_the_inner_ipv4_parsed()
    {
        byte[] frame = new FrameBuilder().Vlan(EtherTypes.Vlan8021Q, 0x2064).Ipv4("10.0.0.1", "10.0.0.2").Udp(1, 2, Data).Build();
        ParsedPacket p = Parse(frame);
        Assert.Equal(1, p.VlanCount);
        Assert.Equal(EtherTypes.Vlan8021Q, p.OuterVlanTpid);
        Assert.Equal(0x2064, p.OuterVlanTci);
        Assert.Equal(18, p.L3Offset);
        Assert.Equal(46, p.PayloadOffset);
        Assert.Equal((uint)0x064 << 12, p.Flow.VlanIds);
    }

    [Fact]
    public void An_8021ad_qinq_pair_of_tags_is_read_and_the_inner_ipv6_parsed()
    {
        byte[] frame = new FrameBuilder().Vlan(EtherTypes.Vlan8021ad, 100).Vlan(EtherTypes.Vlan8021Q, 200).Ipv6("fd00::1", "fd00::2").Tcp(1, 2, 3, 4, TcpControlBits.Ack, Data).Build();
        ParsedPacket p = Parse(frame);
        Assert.Equal(2, p.VlanCount);
        Assert.Equal(EtherTypes.Vlan8021ad, p.OuterVlanTpid);
        Assert.Equal(100, p.OuterVlanTci);
        Assert.Equal(200, p.InnerVlanTci);
        Assert.Equal(22, p.L3Offset);
        Assert.Equal(6, p.IpVersion);
        Assert.Equal(10, p.PayloadLength);
        Assert.Equal("tcp [fd00::1]:1 > [fd00::2]:2 vlan 100/200", p.Flow.ToString());
    }

    [Fact]
    public void Three_stacked_vlan_tags_are_malformed()
    {
        byte[] frame = new FrameBuilder().Vlan(EtherTypes.Vlan8021ad, 1).Vlan(EtherTypes.Vlan8021Q, 2).Vlan(EtherTypes.Vlan8021Q, 3).Ipv4("10.0.0.1", "10.0.0.2").Udp(1, 2, Data).Build();
        Assert.Equal(MalformedReason.TooManyVlanTags, ParseMalformed(frame));
    }

    [Fact]
    public void Ipv6_udp_and_icmpv6_parse()
    {
        ParsedPacket udp = Parse(new FrameBuilder().Ipv6("2001:db8::1", "2001:db8::2").Udp(546, 547, Data).Build());
        Assert.Equal(6, udp.IpVersion);
        Assert.Equal(40, udp.IpHeaderLength);
        Assert.Equal(IpProtocol.Udp, udp.Protocol);
        Assert.Equal(546, udp.SourcePort);
        Assert.Equal(10, udp.PayloadLength);

        ParsedPacket icmp = Parse(new FrameBuilder().Ipv6("2001:db8::1", "2001:db8::2").Icmp(128, 0, 1, 1, Data).Build());
        Assert.Equal(IpProtocol.Icmpv6, icmp.Protocol);
        Assert.Equal(128, icmp.IcmpType);
    }

    [Fact]
    public void Ipv6_extension_headers_are_walked_to_the_transport_header()
    {
        byte[] frame = new FrameBuilder()
            .Ipv6("2001:db8::1", "2001:db8::2")
            .Ipv6Extension(IpProtocol.HopByHop, 8)
            .Ipv6Extension(IpProtocol.Ipv6Routing, 24)
            .Ipv6Extension(IpProtocol.Ipv6DestinationOptions, 16)
            .Ipv6Extension(IpProtocol.Ah, 24)
            .Tcp(1, 2, 3, 4, TcpControlBits.Ack, Data)
            .Build();
        ParsedPacket p = Parse(frame);
        Assert.Equal(IpProtocol.Tcp, p.Protocol);
        Assert.Equal(40 + 8 + 24 + 16 + 24, p.IpHeaderLength);
        Assert.Equal(14 + 40 + 72, p.L4Offset);
        Assert.Equal(Data, frame.AsSpan(p.PayloadOffset, p.PayloadLength).ToArray());
    }

    [Fact]
    public void Ipv6_first_fragment_keeps_its_transport_header_and_later_fragments_have_none()
    {
        ParsedPacket first = Parse(new FrameBuilder().Ipv6("2001:db8::1", "2001:db8::2").Fragment(0, moreFragments: true).Udp(7, 8, Data).Build());
        Assert.True(first.IsFragment);
        Assert.False(first.IsNonFirstFragment);
        Assert.Equal(IpProtocol.Udp, first.Protocol);
        Assert.Equal(7, first.SourcePort);

        ParsedPacket later = Parse(new FrameBuilder().Ipv6("2001:db8::1", "2001:db8::2").Fragment(1232, moreFragments: false).RawL4(IpProtocol.Udp, Data).Build());
        Assert.True(later.IsNonFirstFragment);
        Assert.Equal(IpProtocol.Udp, later.Protocol);
        Assert.Equal(0, later.SourcePort);
        Assert.Equal(10, later.PayloadLength);
    }

    [Fact]
    public void Ipv4_fragments_are_flagged_and_later_fragments_are_not_read_as_transport_headers()
    {
        ParsedPacket first = Parse(new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Fragment(0, true).Udp(7, 8, Data).Build());
        Assert.True(first.IsFragment);
        Assert.False(first.IsNonFirstFragment);
        Assert.Equal(7, first.SourcePort);

        ParsedPacket later = Parse(new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Fragment(1480, false).RawL4(IpProtocol.Tcp, [1, 2, 3]).Build());
        Assert.True(later.IsNonFirstFragment);
        Assert.Equal(0, later.SourcePort);
        Assert.Equal(0u, later.TcpSeq);
        Assert.Equal(3, later.PayloadLength);
    }

    [Fact]
    public void The_two_guests_copies_of_a_packet_share_a_flow_key_despite_mac_ttl_and_ip_id()
    {
        byte[] primary = new FrameBuilder().SourceMac(1).Ipv4("10.0.0.1", "10.0.0.2", id: 1, ttl: 64).Udp(1000, 53, Data).Build();
        byte[] secondary = new FrameBuilder().SourceMac(2).Ipv4("10.0.0.1", "10.0.0.2", id: 999, ttl: 63).Udp(1000, 53, Data).Build();
        byte[] otherFlow = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Udp(1001, 53, Data).Build();
        FlowKey a = Parse(primary).Flow;
        FlowKey b = Parse(secondary).Flow;
        Assert.Equal(a, b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.NotEqual(a, Parse(otherFlow).Flow);
    }

    [Fact]
    public void Ipv4_and_ipv6_flows_never_collide()
    {
        FlowKey v4 = Parse(new FrameBuilder().Ipv4("0.0.0.1", "0.0.0.2").Udp(1, 2, Data).Build()).Flow;
        FlowKey v6 = Parse(new FrameBuilder().Ipv6("::1", "::2").Udp(1, 2, Data).Build()).Flow;
        Assert.Equal(v4.Source, v6.Source);
        Assert.NotEqual(v4, v6);
    }

    [Fact]
    public void Each_header_field_inconsistency_has_its_own_reason()
    {
        byte[] tcp = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Tcp(1, 2, 3, 4, TcpControlBits.Ack, Data).Build();

        byte[] badVersion = (byte[])tcp.Clone();
        badVersion[14] = 0x65;
        Assert.Equal(MalformedReason.BadIpVersion, ParseMalformed(badVersion));

        byte[] badIhl = (byte[])tcp.Clone();
        badIhl[14] = 0x44;
        Assert.Equal(MalformedReason.BadIpv4HeaderLength, ParseMalformed(badIhl));

        byte[] hugeIhl = (byte[])tcp.Clone();
        hugeIhl[14] = 0x4F;
        Assert.Equal(MalformedReason.TruncatedIpv4Header, ParseMalformed(hugeIhl));

        byte[] longTotal = (byte[])tcp.Clone();
        longTotal[16] = 0x05;
        Assert.Equal(MalformedReason.Ipv4TotalLengthBeyondFrame, ParseMalformed(longTotal));

        byte[] shortTotal = (byte[])tcp.Clone();
        shortTotal[16] = 0;
        shortTotal[17] = 10;
        Assert.Equal(MalformedReason.Ipv4TotalLengthTooSmall, ParseMalformed(shortTotal));

        byte[] badOffset = (byte[])tcp.Clone();
        badOffset[34 + 12] = 0x40;
        Assert.Equal(MalformedReason.BadTcpDataOffset, ParseMalformed(badOffset));

        byte[] offsetBeyond = (byte[])tcp.Clone();
        offsetBeyond[34 + 12] = 0xF0;
        Assert.Equal(MalformedReason.TruncatedTcpHeader, ParseMalformed(offsetBeyond));

        byte[] udp = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Udp(1, 2, Data).Build();
        byte[] udpShort = (byte[])udp.Clone();
        udpShort[34 + 5] = 7;
        Assert.Equal(MalformedReason.BadUdpLength, ParseMalformed(udpShort));
        byte[] udpLong = (byte[])udp.Clone();
        udpLong[34 + 5] = 19;
        Assert.Equal(MalformedReason.BadUdpLength, ParseMalformed(udpLong));

        byte[] v6 = new FrameBuilder().Ipv6("::1", "::2").Udp(1, 2, Data).Build();
        byte[] v6Long = (byte[])v6.Clone();
        v6Long[14 + 4] = 0x10;
        Assert.Equal(MalformedReason.Ipv6PayloadLengthBeyondFrame, ParseMalformed(v6Long));
        byte[] v6Version = (byte[])v6.Clone();
        v6Version[14] = 0x40;
        Assert.Equal(MalformedReason.BadIpVersion, ParseMalformed(v6Version));

        byte[] ext = new FrameBuilder().Ipv6("::1", "::2").Ipv6Extension(IpProtocol.HopByHop, 8).Udp(1, 2, Data).Build();
        ext[14 + 40 + 1] = 200; // claims 1608 bytes
        Assert.Equal(MalformedReason.TruncatedExtensionHeader, ParseMalformed(ext));
    }

    [Fact]
    public void A_loop_of_extension_headers_stops_at_the_limit()
    {
        var builder = new FrameBuilder().Ipv6("::1", "::2");
        for (int i = 0; i < 20; i++)
        {
            builder.Ipv6Extension(IpProtocol.Ipv6DestinationOptions, 8);
        }

        Assert.Equal(MalformedReason.TooManyExtensionHeaders, ParseMalformed(builder.Udp(1, 2, Data).Build()));
    }

    public static TheoryData<string, byte[]> ValidFrames() => new()
    {
        { "ipv4 tcp", new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Tcp(80, 1, 1, 1, TcpControlBits.Ack, Data, [1, 1, 1, 1]).Build() },
        { "ipv4 udp", new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Udp(1, 2, Data).Build() },
        { "ipv4 icmp", new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Icmp(0, 0, 1, 1, Data).Build() },
        { "ipv4 sctp", new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").RawL4(IpProtocol.Sctp, new byte[12]).Build() },
        { "vlan ipv4 udp", new FrameBuilder().Vnet(12).Vlan(EtherTypes.Vlan8021Q, 5).Ipv4("10.0.0.1", "10.0.0.2").Udp(1, 2, Data).Build() },
        { "qinq ipv6 tcp", new FrameBuilder().Vlan(EtherTypes.Vlan8021ad, 5).Vlan(EtherTypes.Vlan8021Q, 6).Ipv6("::1", "::2").Tcp(1, 2, 3, 4, TcpControlBits.Syn, Data).Build() },
        { "ipv6 ext icmpv6", new FrameBuilder().Ipv6("::1", "::2").Ipv6Extension(IpProtocol.HopByHop, 8).Ipv6Extension(IpProtocol.Ah, 16).Icmp(128, 0, 1, 1, Data).Build() },
        { "ipv6 fragment", new FrameBuilder().Ipv6("::1", "::2").Fragment(0, true).Udp(1, 2, Data).Build() },
    };

    [Theory]
    [MemberData(nameof(ValidFrames))]
    public void Every_truncation_of_a_valid_frame_is_classified_malformed(string name, byte[] frame)
    {
        uint vnet = name.StartsWith("vlan", StringComparison.Ordinal) ? 12u : 0u;
        Parse(frame, vnet);
        for (int length = 0; length < frame.Length; length++)
        {
            bool ok = PacketParser.TryParse(frame.AsSpan(0, length), vnet, out ParsedPacket packet);
            Assert.False(ok, $"{name} cut to {length} bytes parsed as well-formed");
            Assert.NotEqual(MalformedReason.None, packet.Malformed);
        }
    }

    [Fact]
    public void Truncated_headers_name_the_layer_that_is_cut()
    {
        byte[] tcp = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Tcp(1, 2, 3, 4, TcpControlBits.Ack, []).Build();
        Assert.Equal(MalformedReason.TruncatedEthernetHeader, ParseMalformed(tcp[..13]));
        Assert.Equal(MalformedReason.TruncatedIpv4Header, ParseMalformed(tcp[..33]));
        Assert.Equal(MalformedReason.Ipv4TotalLengthBeyondFrame, ParseMalformed(tcp[..53]));
        byte[] vlan = new FrameBuilder().Vlan(EtherTypes.Vlan8021Q, 1).NonIp(EtherTypes.Arp, []).Build();
        Assert.Equal(MalformedReason.TruncatedVlanTag, ParseMalformed(vlan[..17]));
        byte[] v6 = new FrameBuilder().Ipv6("::1", "::2").Udp(1, 2, []).Build();
        Assert.Equal(MalformedReason.TruncatedIpv6Header, ParseMalformed(v6[..53]));
    }

    [Fact]
    public void Transport_headers_cut_by_the_ip_length_are_malformed()
    {
        // The frame is long enough but the IP length ends inside the L4 header.
        static byte[] Shorten(byte[] frame, int ipTotal)
        {
            byte[] copy = (byte[])frame.Clone();
            copy[16] = (byte)(ipTotal >> 8);
            copy[17] = (byte)ipTotal;
            return copy;
        }

        byte[] tcp = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Tcp(1, 2, 3, 4, TcpControlBits.Ack, Data).Build();
        Assert.Equal(MalformedReason.TruncatedTcpHeader, ParseMalformed(Shorten(tcp, 30)));
        byte[] udp = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Udp(1, 2, Data).Build();
        Assert.Equal(MalformedReason.TruncatedUdpHeader, ParseMalformed(Shorten(udp, 27)));
        byte[] icmp = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Icmp(8, 0, 1, 1, Data).Build();
        Assert.Equal(MalformedReason.TruncatedIcmpHeader, ParseMalformed(Shorten(icmp, 27)));
        byte[] sctp = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").RawL4(IpProtocol.Sctp, new byte[12]).Build();
        Assert.Equal(MalformedReason.TruncatedPorts, ParseMalformed(Shorten(sctp, 23)));
    }

    [Fact]
    public void A_million_random_byte_strings_never_throw_and_never_read_out_of_bounds()
    {
        // Plain random bytes rarely get past Ethernet, so half the inputs are valid frames with random bytes flipped.
        (byte[] Frame, uint Vnet)[] seeds = ValidFrames().Select(row => ((byte[])row[1], ((string)row[0]).StartsWith("vlan", StringComparison.Ordinal) ? 12u : 0u)).ToArray();
        var random = new Random(20261125);
        var buffer = new byte[256];
        int wellFormed = 0;
        int ip = 0;
        for (int i = 0; i < 1_000_000; i++)
        {
            int length;
            uint vnet;
            if ((i & 1) == 0)
            {
                length = random.Next(0, buffer.Length + 1);
                random.NextBytes(buffer.AsSpan(0, length));
                if (length > 13 && (i & 2) == 0)
                {
                    // Make it claim IPv4 or IPv6 more often.
                    buffer[12] = (i & 4) == 0 ? (byte)0x08 : (byte)0x86;
                    buffer[13] = (i & 4) == 0 ? (byte)0x00 : (byte)0xDD;
                }

                vnet = (uint)random.Next(0, 3) switch { 0 => 0, 1 => 12, _ => (uint)random.Next(0, 300) };
            }
            else
            {
                (byte[] seed, vnet) = seeds[random.Next(seeds.Length)];
                length = random.Next(4) == 0 ? random.Next(0, seed.Length + 1) : seed.Length;
                seed.AsSpan(0, length).CopyTo(buffer);
                for (int flips = random.Next(0, 3); flips > 0 && length > 0; flips--)
                {
                    buffer[random.Next(length)] = (byte)random.Next(256);
                }
            }

            // An exactly sized array: any read past the frame throws IndexOutOfRangeException.
            byte[] frame = buffer.AsSpan(0, length).ToArray();
            if (PacketParser.TryParse(frame, vnet, out ParsedPacket packet))
            {
                wellFormed++;
                Assert.InRange(packet.PayloadOffset, 0, frame.Length);
                Assert.InRange(packet.PayloadLength, 0, frame.Length - packet.PayloadOffset);
                if (packet.IsIp)
                {
                    ip++;
                    Assert.InRange(packet.L3End, packet.L4Offset, frame.Length);
                }
            }
            else
            {
                Assert.NotEqual(MalformedReason.None, packet.Malformed);
            }
        }

        // The generator must reach deep: a good share of inputs parse as IP packets.
        Assert.True(ip > 100_000, $"only {ip} of {wellFormed} well-formed inputs were IP");
    }
}
