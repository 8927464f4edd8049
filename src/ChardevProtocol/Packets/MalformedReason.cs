namespace ColoChardev.ChardevProtocol.Packets;

/// <summary>Why a frame could not be parsed. <see cref="None"/> for a well-formed frame.</summary>
public enum MalformedReason : byte
{
    /// <summary>Well-formed.</summary>
    None,

    /// <summary>The vnet_hdr_len word is larger than the frame.</summary>
    VnetHeaderBeyondFrame,

    /// <summary>Fewer than 14 bytes of Ethernet header after the vnet header.</summary>
    TruncatedEthernetHeader,

    /// <summary>A VLAN tag (802.1Q or 802.1ad) is cut off.</summary>
    TruncatedVlanTag,

    /// <summary>More than two stacked VLAN tags.</summary>
    TooManyVlanTags,

    /// <summary>The IPv4 header is cut off.</summary>
    TruncatedIpv4Header,

    /// <summary>The IP version nibble does not match the ethertype.</summary>
    BadIpVersion,

    /// <summary>IPv4 IHL below 5.</summary>
    BadIpv4HeaderLength,

    /// <summary>IPv4 total length smaller than its own header.</summary>
    Ipv4TotalLengthTooSmall,

    /// <summary>IPv4 total length runs past the end of the frame.</summary>
    Ipv4TotalLengthBeyondFrame,

    /// <summary>The 40-byte IPv6 header is cut off.</summary>
    TruncatedIpv6Header,

    /// <summary>IPv6 payload length runs past the end of the frame.</summary>
    Ipv6PayloadLengthBeyondFrame,

    /// <summary>An IPv6 extension header runs past the end of the packet.</summary>
    TruncatedExtensionHeader,

    /// <summary>More IPv6 extension headers than any sane packet has.</summary>
    TooManyExtensionHeaders,

    /// <summary>The TCP header is cut off, or its data offset runs past the end of the packet.</summary>
    TruncatedTcpHeader,

    /// <summary>TCP data offset below 5 words.</summary>
    BadTcpDataOffset,

    /// <summary>The 8-byte UDP header is cut off.</summary>
    TruncatedUdpHeader,

    /// <summary>UDP length below 8 or past the end of the packet.</summary>
    BadUdpLength,

    /// <summary>The 8-byte ICMP or ICMPv6 header is cut off.</summary>
    TruncatedIcmpHeader,

    /// <summary>The port numbers of SCTP or DCCP are cut off.</summary>
    TruncatedPorts,
}
