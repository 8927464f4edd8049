using System.Buffers.Binary;
using System.Net;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Testbed;

/// <summary>
/// Builds Ethernet frames for tests, benchmarks and the demo: optional virtio-net header, VLAN tags, IPv4 or
/// IPv6 (with extension headers and fragments), and TCP, UDP, ICMP or raw L4 bytes. Lengths and the IPv4
/// header checksum are filled in.
/// </summary>
public sealed class FrameBuilder
{
    private readonly List<(ushort Tpid, ushort Tci)> _vlans = [];
    private readonly List<(byte Type, int Length)> _extensions = [];
    private int _vnetHdrLen;
    private byte[] _sourceMac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    private byte[] _destinationMac = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
    private ushort _etherType = EtherTypes.Ipv4;
    private byte[]? _l3Raw;
    private byte _ipVersion;
    private byte[] _source = [];
    private byte[] _destination = [];
    private ushort _ipId = 1;
    private byte _ttl = 64;
    private byte _protocol;
    private byte[] _l4 = [];
    private int? _fragmentOffset;
    private bool _moreFragments;
    private int _padTo;

    /// <summary>Prepends a virtio-net header of this many bytes (filled with 0xEE so it is visible).</summary>
    public FrameBuilder Vnet(int length)
    {
        _vnetHdrLen = length;
        return this;
    }

    /// <summary>Sets the source MAC's last byte (to make two guests' frames differ in L2 only).</summary>
    public FrameBuilder SourceMac(byte last)
    {
        _sourceMac = [.. _sourceMac[..5], last];
        return this;
    }

    /// <summary>Adds a VLAN tag (outermost first).</summary>
    public FrameBuilder Vlan(ushort tpid, ushort tci)
    {
        _vlans.Add((tpid, tci));
        return this;
    }

    /// <summary>A non-IP frame: this ethertype and these bytes after the Ethernet header.</summary>
    public FrameBuilder NonIp(ushort etherType, byte[] body)
    {
        _etherType = etherType;
        _l3Raw = body;
        return this;
    }

    /// <summary>An IPv4 packet between these addresses.</summary>
    public FrameBuilder Ipv4(string source, string destination, ushort id = 1, byte ttl = 64)
    {
        _etherType = EtherTypes.Ipv4;
        _ipVersion = 4;
        _source = IPAddress.Parse(source).GetAddressBytes();
        _destination = IPAddress.Parse(destination).GetAddressBytes();
        _ipId = id;
        _ttl = ttl;
        return this;
    }

    /// <summary>An IPv6 packet between these addresses.</summary>
    public FrameBuilder Ipv6(string source, string destination, byte hopLimit = 64)
    {
        _etherType = EtherTypes.Ipv6;
        _ipVersion = 6;
        _source = IPAddress.Parse(source).GetAddressBytes();
        _destination = IPAddress.Parse(destination).GetAddressBytes();
        _ttl = hopLimit;
        return this;
    }

    /// <summary>Adds an IPv6 extension header (hop-by-hop 0, routing 43, destination options 60, AH 51) of this many bytes.</summary>
    public FrameBuilder Ipv6Extension(byte type, int length)
    {
        _extensions.Add((type, length));
        return this;
    }

    /// <summary>Makes the packet a fragment: byte offset (multiple of 8) and the more-fragments flag.</summary>
    public FrameBuilder Fragment(int offset, bool moreFragments)
    {
        _fragmentOffset = offset;
        _moreFragments = moreFragments;
        return this;
    }

    /// <summary>A TCP segment.</summary>
    public FrameBuilder Tcp(ushort sourcePort, ushort destinationPort, uint seq, uint ack, TcpControlBits flags, ReadOnlySpan<byte> payload, byte[]? options = null, ushort window = 64240)
    {
        options ??= [];
        if (options.Length % 4 != 0)
        {
            throw new ArgumentException("TCP options must be a multiple of 4 bytes", nameof(options));
        }

        var tcp = new byte[20 + options.Length + payload.Length];
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(2), destinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp.AsSpan(4), seq);
        BinaryPrimitives.WriteUInt32BigEndian(tcp.AsSpan(8), ack);
        tcp[12] = (byte)(((20 + options.Length) / 4) << 4);
        tcp[13] = (byte)flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(14), window);
        options.CopyTo(tcp, 20);
        payload.CopyTo(tcp.AsSpan(20 + options.Length));
        _protocol = IpProtocol.Tcp;
        _l4 = tcp;
        return this;
    }

    /// <summary>A UDP datagram.</summary>
    public FrameBuilder Udp(ushort sourcePort, ushort destinationPort, ReadOnlySpan<byte> payload)
    {
        var udp = new byte[8 + payload.Length];
        BinaryPrimitives.WriteUInt16BigEndian(udp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(2), destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(4), (ushort)udp.Length);
        payload.CopyTo(udp.AsSpan(8));
        _protocol = IpProtocol.Udp;
        _l4 = udp;
        return this;
    }

    /// <summary>An ICMP (IPv4) or ICMPv6 (IPv6) message with an echo-style header.</summary>
    public FrameBuilder Icmp(byte type, byte code, ushort id, ushort sequence, ReadOnlySpan<byte> payload)
    {
        var icmp = new byte[8 + payload.Length];
        icmp[0] = type;
        icmp[1] = code;
        BinaryPrimitives.WriteUInt16BigEndian(icmp.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16BigEndian(icmp.AsSpan(6), sequence);
        payload.CopyTo(icmp.AsSpan(8));
        _protocol = _ipVersion == 6 ? IpProtocol.Icmpv6 : IpProtocol.Icmp;
        _l4 = icmp;
        return this;
    }

    /// <summary>Any other protocol, with these bytes as its L4 part.</summary>
    public FrameBuilder RawL4(byte protocol, byte[] bytes)
    {
        _protocol = protocol;
        _l4 = bytes;
        return this;
    }

    /// <summary>Pads the frame with zero bytes up to this length (as Ethernet does to 60 bytes).</summary>
    public FrameBuilder PadTo(int frameLength)
    {
        _padTo = frameLength;
        return this;
    }

    /// <summary>Builds the frame bytes.</summary>
    public byte[] Build()
    {
        var frame = new List<byte>(128);
        for (int i = 0; i < _vnetHdrLen; i++)
        {
            frame.Add(0xEE);
        }

        frame.AddRange(_destinationMac);
        frame.AddRange(_sourceMac);
        foreach ((ushort tpid, ushort tci) in _vlans)
        {
            AddUInt16(frame, tpid);
            AddUInt16(frame, tci);
        }

        AddUInt16(frame, _etherType);
        if (_l3Raw is not null)
        {
            frame.AddRange(_l3Raw);
        }
        else if (_ipVersion == 4)
        {
            frame.AddRange(BuildIpv4());
        }
        else if (_ipVersion == 6)
        {
            frame.AddRange(BuildIpv6());
        }

        while (frame.Count < _padTo)
        {
            frame.Add(0);
        }

        return [.. frame];
    }

    private byte[] BuildIpv4()
    {
        var ip = new byte[20 + _l4.Length];
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(2), (ushort)ip.Length);
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(4), _ipId);
        ushort fragment = (ushort)(((_fragmentOffset ?? 0) / 8) | (_moreFragments ? 0x2000 : 0));
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(6), fragment);
        ip[8] = _ttl;
        ip[9] = _protocol;
        _source.CopyTo(ip, 12);
        _destination.CopyTo(ip, 16);
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(10), Checksum(ip.AsSpan(0, 20)));
        _l4.CopyTo(ip, 20);
        return ip;
    }

    private byte[] BuildIpv6()
    {
        var headers = new List<(byte Type, int Length)>(_extensions);
        if (_fragmentOffset is not null)
        {
            headers.Add((IpProtocol.Ipv6Fragment, 8));
        }

        int extensionLength = 0;
        foreach ((_, int length) in headers)
        {
            extensionLength += length;
        }

        var ip = new byte[40 + extensionLength + _l4.Length];
        ip[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(4), (ushort)(extensionLength + _l4.Length));
        ip[6] = headers.Count > 0 ? headers[0].Type : _protocol;
        ip[7] = _ttl;
        _source.CopyTo(ip, 8);
        _destination.CopyTo(ip, 24);
        int offset = 40;
        for (int i = 0; i < headers.Count; i++)
        {
            (byte type, int length) = headers[i];
            ip[offset] = i + 1 < headers.Count ? headers[i + 1].Type : _protocol;
            if (type == IpProtocol.Ipv6Fragment)
            {
                ushort offsetAndFlags = (ushort)(((_fragmentOffset ?? 0) / 8) << 3 | (_moreFragments ? 1 : 0));
                BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(offset + 2), offsetAndFlags);
            }
            else if (type == IpProtocol.Ah)
            {
                ip[offset + 1] = (byte)((length / 4) - 2);
            }
            else
            {
                ip[offset + 1] = (byte)((length / 8) - 1);
            }

            offset += length;
        }

        _l4.CopyTo(ip, offset);
        return ip;
    }

    private static void AddUInt16(List<byte> frame, ushort value)
    {
        frame.Add((byte)(value >> 8));
        frame.Add((byte)value);
    }

    private static ushort Checksum(ReadOnlySpan<byte> header)
    {
        uint sum = 0;
        for (int i = 0; i + 1 < header.Length; i += 2)
        {
            sum += BinaryPrimitives.ReadUInt16BigEndian(header[i..]);
        }

        while (sum > 0xFFFF)
        {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }

        return (ushort)~sum;
    }
}
