namespace ColoChardev.ChardevProtocol.Packets;

/// <summary>
/// The description of one frame produced by <see cref="PacketParser"/>. All offsets are from the start of the
/// frame payload (vnet header included), so they index the received buffer directly.
/// Fields after the point where parsing stopped are zero.
/// </summary>
public struct ParsedPacket
{
    /// <summary>Why the frame is malformed, or <see cref="MalformedReason.None"/>.</summary>
    public MalformedReason Malformed { get; internal set; }

    /// <summary>Length of the whole frame payload.</summary>
    public int FrameLength { get; internal set; }

    /// <summary>Bytes of virtio-net header skipped before the Ethernet header (= the Ethernet header's offset).</summary>
    public int VnetHdrLen { get; internal set; }

    /// <summary>Ethertype after any VLAN tags.</summary>
    public ushort EtherType { get; internal set; }

    /// <summary>Number of VLAN tags (0, 1 or 2).</summary>
    public byte VlanCount { get; internal set; }

    /// <summary>TPID of the outer tag (0x8100, 0x88a8 or 0x9100) when tagged.</summary>
    public ushort OuterVlanTpid { get; internal set; }

    /// <summary>Tag control information of the outer tag.</summary>
    public ushort OuterVlanTci { get; internal set; }

    /// <summary>Tag control information of the inner tag (QinQ).</summary>
    public ushort InnerVlanTci { get; internal set; }

    /// <summary>Offset of the network (IP) header.</summary>
    public int L3Offset { get; internal set; }

    /// <summary>4, 6, or 0 for a frame that is not IP (ARP, LLC, ...).</summary>
    public byte IpVersion { get; internal set; }

    /// <summary>IPv4 header length, or 40 plus the IPv6 extension headers.</summary>
    public int IpHeaderLength { get; internal set; }

    /// <summary>End of the IP packet according to its own length field; bytes after it are Ethernet padding.</summary>
    public int L3End { get; internal set; }

    /// <summary>The packet is an IP fragment (IPv4 MF or offset, or an IPv6 fragment header).</summary>
    public bool IsFragment { get; internal set; }

    /// <summary>The packet is a fragment other than the first: it has no L4 header.</summary>
    public bool IsNonFirstFragment { get; internal set; }

    /// <summary>The L4 protocol number (after IPv6 extension headers).</summary>
    public byte Protocol { get; internal set; }

    /// <summary>Offset of the L4 header.</summary>
    public int L4Offset { get; internal set; }

    /// <summary>L4 source port (TCP, UDP, UDP-Lite, SCTP, DCCP).</summary>
    public ushort SourcePort { get; internal set; }

    /// <summary>L4 destination port (TCP, UDP, UDP-Lite, SCTP, DCCP).</summary>
    public ushort DestinationPort { get; internal set; }

    /// <summary>TCP sequence number.</summary>
    public uint TcpSeq { get; internal set; }

    /// <summary>TCP acknowledgement number.</summary>
    public uint TcpAck { get; internal set; }

    /// <summary>TCP flags.</summary>
    public TcpControlBits TcpFlags { get; internal set; }

    /// <summary>TCP window field.</summary>
    public ushort TcpWindow { get; internal set; }

    /// <summary>TCP header length (data offset × 4).</summary>
    public int TcpHeaderLength { get; internal set; }

    /// <summary>Offset of the TCP options (always L4Offset + 20).</summary>
    public int TcpOptionsOffset { get; internal set; }

    /// <summary>Bytes of TCP options.</summary>
    public int TcpOptionsLength { get; internal set; }

    /// <summary>ICMP or ICMPv6 type.</summary>
    public byte IcmpType { get; internal set; }

    /// <summary>ICMP or ICMPv6 code.</summary>
    public byte IcmpCode { get; internal set; }

    /// <summary>
    /// Offset of the L4 payload: TCP data, UDP data, the ICMP body after its 8-byte header; for other
    /// protocols and non-first fragments, the L4 header's offset.
    /// </summary>
    public int PayloadOffset { get; internal set; }

    /// <summary>Length of the L4 payload, from the IP length (never counting Ethernet padding).</summary>
    public int PayloadLength { get; internal set; }

    /// <summary>The flow this packet belongs to (IP packets only).</summary>
    public FlowKey Flow { get; internal set; }

    /// <summary>True when the frame is malformed.</summary>
    public readonly bool IsMalformed => Malformed != MalformedReason.None;

    /// <summary>True for a well-formed IPv4 or IPv6 packet.</summary>
    public readonly bool IsIp => IpVersion != 0 && !IsMalformed;
}
