using System.Globalization;
using System.Net;
using System.Numerics;

namespace ColoChardev.ChardevProtocol.Packets;

/// <summary>
/// Identifies a flow in the packet's own direction: addresses (IPv4 or IPv6), ports, protocol and VLAN ids.
/// Both guests' copies of one outbound packet give the same key, which is all the comparator needs.
/// </summary>
public readonly struct FlowKey : IEquatable<FlowKey>
{
    public FlowKey(byte ipVersion, UInt128 source, UInt128 destination, byte protocol, ushort sourcePort, ushort destinationPort, uint vlanIds)
    {
        IpVersion = ipVersion;
        Source = source;
        Destination = destination;
        Protocol = protocol;
        SourcePort = sourcePort;
        DestinationPort = destinationPort;
        VlanIds = vlanIds;
    }

    /// <summary>4 or 6.</summary>
    public byte IpVersion { get; }

    /// <summary>Source address, big-endian value (an IPv4 address uses the low 32 bits).</summary>
    public UInt128 Source { get; }

    /// <summary>Destination address, big-endian value (an IPv4 address uses the low 32 bits).</summary>
    public UInt128 Destination { get; }

    /// <summary>IP protocol number (after IPv6 extension headers).</summary>
    public byte Protocol { get; }

    /// <summary>Source port for TCP, UDP, UDP-Lite, SCTP and DCCP; otherwise 0.</summary>
    public ushort SourcePort { get; }

    /// <summary>Destination port for TCP, UDP, UDP-Lite, SCTP and DCCP; otherwise 0.</summary>
    public ushort DestinationPort { get; }

    /// <summary>Outer VLAN id in bits 12-23, inner VLAN id in bits 0-11; 0 when untagged.</summary>
    public uint VlanIds { get; }

    public static bool operator ==(FlowKey left, FlowKey right) => left.Equals(right);

    public static bool operator !=(FlowKey left, FlowKey right) => !left.Equals(right);

    public bool Equals(FlowKey other) =>
        Source == other.Source
        && Destination == other.Destination
        && SourcePort == other.SourcePort
        && DestinationPort == other.DestinationPort
        && Protocol == other.Protocol
        && IpVersion == other.IpVersion
        && VlanIds == other.VlanIds;

    public override bool Equals(object? obj) => obj is FlowKey other && Equals(other);

    public override int GetHashCode()
    {
        // Fold the 128-bit addresses first: hashing UInt128 values one by one costs several times more.
        ulong addresses = (ulong)Source ^ (ulong)(Source >> 64) ^ BitOperations.RotateLeft((ulong)Destination ^ (ulong)(Destination >> 64), 29);
        ulong rest = SourcePort | ((ulong)DestinationPort << 16) | ((ulong)Protocol << 32) | ((ulong)IpVersion << 40) | ((ulong)VlanIds << 48);
        return HashCode.Combine(addresses, rest, VlanIds >> 16);
    }

    /// <summary>For logs: <c>tcp 10.0.0.1:80 &gt; 10.0.0.2:4242</c>.</summary>
    public override string ToString()
    {
        string protocol = Protocol switch
        {
            IpProtocol.Tcp => "tcp",
            IpProtocol.Udp => "udp",
            IpProtocol.Icmp => "icmp",
            IpProtocol.Icmpv6 => "icmpv6",
            _ => "proto-" + Protocol.ToString(CultureInfo.InvariantCulture),
        };
        string vlan = VlanIds == 0 ? string.Empty : $" vlan {VlanIds >> 12}/{VlanIds & 0xFFF}";
        return $"{protocol} {Format(Source, SourcePort)} > {Format(Destination, DestinationPort)}{vlan}";
    }

    private string Format(UInt128 address, ushort port)
    {
        string text;
        if (IpVersion == 4)
        {
            text = new IPAddress(new[] { (byte)(address >> 24), (byte)(address >> 16), (byte)(address >> 8), (byte)address }).ToString();
        }
        else
        {
            var bytes = new byte[16];
            for (int i = 0; i < 16; i++)
            {
                bytes[i] = (byte)(address >> (8 * (15 - i)));
            }

            text = "[" + new IPAddress(bytes) + "]";
        }

        return port == 0 && SourcePort == 0 && DestinationPort == 0 ? text : text + ":" + port.ToString(CultureInfo.InvariantCulture);
    }
}
