using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>A frame's way in: parsed and classified (or passed uncompared: bypass, link control, malformed, IPv6/VLAN when off), admitted against the flow's queue and the queue budget, described in its queue slot.</summary>
public sealed partial class CompareEngine
{
    private bool Bypassed(in FlowKey flow)
    {
        IReadOnlyList<BypassRule> rules = _options.Bypass;
        for (int i = 0; i < rules.Count; i++)
        {
            if (rules[i].Matches(flow))
            {
                return true;
            }
        }

        return false;
    }

    private bool Classify(ChardevFrame frame, PacketSide side, out ParsedPacket packet, out CompareProtocol protocol)
    {
        protocol = CompareProtocol.Other;
        uint vnetHdrLen = _options.VnetHdrSupport ? frame.VnetHdrLen : 0;
        bool wellFormed = PacketParser.TryParse(frame.Payload, vnetHdrLen, out packet);
        if (frame.Length == 0)
        {
            // Never forwarded: a zero-length frame would abort QEMU 7.2 and our writer refuses it.
            Drop(frame, side, DropReason.ZeroLength);
            return false;
        }

        if (!wellFormed)
        {
            return PassUncompared(frame, side, ReleaseReason.Malformed, DropReason.Malformed);
        }

        if (!packet.IsIp)
        {
            return PassUncompared(frame, side, ReleaseReason.NonIp, DropReason.NonIp);
        }

        if (packet.IpVersion == 6 && !_options.CompareIpv6)
        {
            return PassUncompared(frame, side, ReleaseReason.Ipv6Uncompared, DropReason.Ipv6Uncompared);
        }

        if (packet.VlanCount > 0 && !_options.CompareVlan)
        {
            return PassUncompared(frame, side, ReleaseReason.VlanUncompared, DropReason.VlanUncompared);
        }

        if (IsLinkControl(packet))
        {
            return PassUncompared(frame, side, ReleaseReason.LinkControl, DropReason.LinkControl);
        }

        if (_options.Bypass.Count > 0 && Bypassed(packet.Flow))
        {
            return PassUncompared(frame, side, ReleaseReason.Bypass, DropReason.Bypass);
        }

        // IP fragments are compared as bytes in a flow keyed without ports (see GetFlow).
        protocol = packet.IsFragment ? CompareProtocol.Other : packet.Protocol switch
        {
            IpProtocol.Tcp => CompareProtocol.Tcp,
            IpProtocol.Udp or IpProtocol.UdpLite => CompareProtocol.Udp,
            IpProtocol.Icmp or IpProtocol.Icmpv6 => CompareProtocol.Icmp,
            _ => CompareProtocol.Other,
        };
        return true;
    }

    /// <summary>
    /// ICMPv6 neighbour discovery and MLD (types 130-137 and 143) and IGMP: what ARP is to IPv4, passed like ARP.
    /// A secondary that has just loaded a checkpoint announces itself (unsolicited neighbour advertisements, MLD
    /// reports) while the primary does not; compared, that would request a checkpoint, whose load announces again.
    /// </summary>
    private static bool IsLinkControl(in ParsedPacket packet)
    {
        if (packet.IsFragment)
        {
            return false;
        }

        if (packet.Protocol == IpProtocol.Igmp)
        {
            return true;
        }

        return packet.Protocol == IpProtocol.Icmpv6 && packet.IcmpType is (>= 130 and <= 137) or 143;
    }

    private bool PassUncompared(ChardevFrame frame, PacketSide side, ReleaseReason release, DropReason drop)
    {
        if (side == PacketSide.Primary)
        {
            Release(frame, release);
        }
        else
        {
            Drop(frame, side, drop);
        }

        return false;
    }

    /// <summary>Keeps total queued bytes within the budget; a frame that does not fit is dropped, counted, and a checkpoint requested.</summary>
    private bool Admit(ChardevFrame frame, PacketSide side, Flow flow)
    {
        if (Counters.QueuedBytes + Held(frame) + FlowStateBytes <= _options.QueueBudgetBytes)
        {
            return true;
        }

        if (EvictIdleFlows(flow) && Counters.QueuedBytes + Held(frame) + FlowStateBytes <= _options.QueueBudgetBytes)
        {
            return true;
        }

        Drop(frame, side, DropReason.QueueBudget);
        RequestCheckpoint(CheckpointReason.QueueBudget, flow);
        return false;
    }

    private void Describe(ref QueuedPacket queued, ChardevFrame frame, in ParsedPacket packet, CompareProtocol protocol, long nowMs)
    {
        queued.Frame = frame;
        queued.ArrivalMs = nowMs;
        queued.Order = _order++;
        queued.ChecksumAt = -1;
        if (protocol == CompareProtocol.Tcp)
        {
            queued.DataOffset = packet.PayloadOffset;
            queued.DataLength = packet.PayloadLength;
            queued.Seq = packet.TcpSeq;
            queued.Ack = packet.TcpAck;
            queued.HasAck = (packet.TcpFlags & TcpControlBits.Ack) != 0;
            queued.Flags = packet.TcpFlags;
            return;
        }

        // From the L4 header on (spec §2.6). QEMU compares "other" protocols from the Ethernet header on, MACs and
        // IP ID included (spec §2.7); the bytes after the IP header are what the two guests must agree on. The
        // UDP and ICMP checksums are skipped: they only restate the compared bytes, except under checksum offload.
        queued.DataOffset = packet.L4Offset;
        queued.DataLength = packet.L3End - packet.L4Offset;
        queued.ChecksumAt = protocol switch
        {
            CompareProtocol.Udp => 6,
            CompareProtocol.Icmp => 2,
            _ => -1,
        };
    }

    /// <summary>What a queued frame holds in memory: its pooled buffer and its queue slot.</summary>
    private static int Held(ChardevFrame frame) => frame.Capacity + QueueSlotBytes;

    private static readonly int QueueSlotBytes = System.Runtime.CompilerServices.Unsafe.SizeOf<QueuedPacket>();
}
