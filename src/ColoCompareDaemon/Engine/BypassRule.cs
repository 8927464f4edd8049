using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>
/// A bypass rule: packets of matching flows are released without comparison and never cause a checkpoint (the
/// feature QEMU's unmerged colo-passthrough-add proposed). Written <c>proto=tcp,host=10.0.0.0/24,port=3389</c>: every
/// part optional, at least one given; <c>host</c> and <c>port</c> match either end of the flow (so a rule for a
/// server's port matches both directions); <c>port</c> may be a range <c>N-M</c> and only matches TCP, UDP, UDP-Lite,
/// SCTP and DCCP packets that carry ports (IP fragments after the first carry none). Matching reads the packet's
/// flow key only: no allocation.
/// </summary>
public sealed record BypassRule
{
    private BypassRule(string text, byte? protocol, byte ipVersion, UInt128 network, UInt128 mask, ushort portLow, ushort portHigh)
    {
        Text = text;
        Protocol = protocol;
        IpVersion = ipVersion;
        Network = network;
        Mask = mask;
        PortLow = portLow;
        PortHigh = portHigh;
    }

    /// <summary>The rule in its canonical form (what <c>query-bypass</c> shows and <c>bypass-del</c> matches).</summary>
    public string Text { get; }

    public byte? Protocol { get; }

    /// <summary>4 or 6 when the rule names a host, else 0.</summary>
    public byte IpVersion { get; }

    public UInt128 Network { get; }

    public UInt128 Mask { get; }

    /// <summary>Port range; 0-0 when the rule names no port.</summary>
    public ushort PortLow { get; }

    public ushort PortHigh { get; }

    /// <summary>Parses a rule; a <see cref="FormatException"/> names what is wrong.</summary>
    public static BypassRule Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        byte? protocol = null;
        (byte version, UInt128 network, UInt128 mask, string shown)? host = null;
        (ushort Low, ushort High)? ports = null;
        foreach (string part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            string[] pair = part.Split('=', 2);
            if (pair.Length != 2 || pair[1].Length == 0)
            {
                throw Bad(text, $"'{part}' is not KEY=VALUE");
            }

            switch (pair[0])
            {
                case "proto" when protocol is null:
                    protocol = pair[1] switch
                    {
                        "tcp" => IpProtocol.Tcp,
                        "udp" => IpProtocol.Udp,
                        "icmp" => IpProtocol.Icmp,
                        "icmpv6" => IpProtocol.Icmpv6,
                        _ when byte.TryParse(pair[1], NumberStyles.None, CultureInfo.InvariantCulture, out byte number) => number,
                        _ => throw Bad(text, $"proto '{pair[1]}' is not tcp, udp, icmp, icmpv6 or a protocol number"),
                    };
                    break;
                case "host" when host is null:
                    host = ParseHost(text, pair[1]);
                    break;
                case "port" when ports is null:
                    ports = ParsePorts(text, pair[1]);
                    break;
                default:
                    throw Bad(text, $"'{pair[0]}' is unknown or given twice (proto, host, port)");
            }
        }

        if (protocol is null && host is null && ports is null)
        {
            throw Bad(text, "it names nothing to match");
        }

        if (ports is not null && protocol is byte p && !CarriesPorts(p))
        {
            throw Bad(text, $"protocol {p} has no ports");
        }

        var canonical = new List<string>();
        if (protocol is byte named)
        {
            canonical.Add("proto=" + named switch { IpProtocol.Tcp => "tcp", IpProtocol.Udp => "udp", IpProtocol.Icmp => "icmp", IpProtocol.Icmpv6 => "icmpv6", _ => named.ToString(CultureInfo.InvariantCulture) });
        }

        if (host is not null)
        {
            canonical.Add("host=" + host.Value.shown);
        }

        if (ports is (ushort low, ushort high))
        {
            canonical.Add("port=" + (low == high ? low.ToString(CultureInfo.InvariantCulture) : $"{low}-{high}"));
        }

        return new BypassRule(string.Join(',', canonical), protocol, host?.version ?? 0, host?.network ?? 0, host?.mask ?? 0, ports?.Low ?? 0, ports?.High ?? 0);
    }

    /// <summary>Whether a packet of <paramref name="flow"/> is to pass uncompared.</summary>
    public bool Matches(in FlowKey flow)
    {
        if (Protocol is byte protocol && flow.Protocol != protocol)
        {
            return false;
        }

        if (IpVersion != 0 && (flow.IpVersion != IpVersion || ((flow.Source & Mask) != Network && (flow.Destination & Mask) != Network)))
        {
            return false;
        }

        if (PortHigh != 0)
        {
            bool carries = CarriesPorts(flow.Protocol) && (flow.SourcePort != 0 || flow.DestinationPort != 0);
            if (!carries || !((flow.SourcePort >= PortLow && flow.SourcePort <= PortHigh) || (flow.DestinationPort >= PortLow && flow.DestinationPort <= PortHigh)))
            {
                return false;
            }
        }

        return true;
    }

    public override string ToString() => Text;

    private static bool CarriesPorts(byte protocol) => protocol is IpProtocol.Tcp or IpProtocol.Udp or IpProtocol.UdpLite or IpProtocol.Sctp or IpProtocol.Dccp;

    private static (byte, UInt128, UInt128, string) ParseHost(string text, string value)
    {
        string[] parts = value.Split('/', 2);
        if (!IPAddress.TryParse(parts[0].Trim('[', ']'), out IPAddress? address))
        {
            throw Bad(text, $"host '{value}' is not an IP address or ADDRESS/PREFIX");
        }

        bool v4 = address.AddressFamily == AddressFamily.InterNetwork;
        int bits = v4 ? 32 : 128;
        int prefix = bits;
        if (parts.Length == 2 && (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out prefix) || prefix > bits))
        {
            throw Bad(text, $"host '{value}': the prefix must be 0 to {bits}");
        }

        UInt128 number = 0;
        foreach (byte b in address.GetAddressBytes())
        {
            number = (number << 8) | b;
        }

        UInt128 all = v4 ? uint.MaxValue : UInt128.MaxValue;
        UInt128 mask = prefix == 0 ? 0 : all & ~((UInt128.One << (bits - prefix)) - 1);
        return (v4 ? (byte)4 : (byte)6, number & mask, mask, $"{(v4 ? address.ToString() : "[" + address + "]")}/{prefix}");
    }

    private static (ushort, ushort) ParsePorts(string text, string value)
    {
        string[] range = value.Split('-', 2);
        if (!ushort.TryParse(range[0], NumberStyles.None, CultureInfo.InvariantCulture, out ushort low) || low == 0
            || !ushort.TryParse(range[^1], NumberStyles.None, CultureInfo.InvariantCulture, out ushort high) || high < low)
        {
            throw Bad(text, $"port '{value}' is not PORT or LOW-HIGH within 1-65535");
        }

        return (low, high);
    }

    private static FormatException Bad(string text, string why) =>
        new($"bypass rule '{text}': {why}; write e.g. proto=tcp,host=10.0.0.0/24,port=3389");
}
