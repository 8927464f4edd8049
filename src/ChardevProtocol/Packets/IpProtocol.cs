namespace ColoChardev.ChardevProtocol.Packets;

/// <summary>IP protocol numbers the parser knows.</summary>
public static class IpProtocol
{
    public const byte HopByHop = 0;
    public const byte Icmp = 1;
    public const byte Igmp = 2;
    public const byte Tcp = 6;
    public const byte Udp = 17;
    public const byte Dccp = 33;
    public const byte Ipv6Routing = 43;
    public const byte Ipv6Fragment = 44;
    public const byte Gre = 47;
    public const byte Esp = 50;
    public const byte Ah = 51;
    public const byte Icmpv6 = 58;
    public const byte Ipv6NoNext = 59;
    public const byte Ipv6DestinationOptions = 60;
    public const byte Sctp = 132;
    public const byte UdpLite = 136;
}

/// <summary>Ethertypes the parser knows.</summary>
public static class EtherTypes
{
    public const ushort Ipv4 = 0x0800;
    public const ushort Arp = 0x0806;
    public const ushort Vlan8021Q = 0x8100;
    public const ushort Ipv6 = 0x86DD;
    public const ushort Vlan8021ad = 0x88A8;
    public const ushort VlanQinQLegacy = 0x9100;
}
