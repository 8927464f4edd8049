using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>TCP: payload bytes compared by sequence number (QEMU commit f449c9e549, spec §2.5), alignment checked.</summary>
public sealed partial class CompareEngine
{
    /// <summary>
    /// A secondary TCP segment arrived: its control bits and ACK are noted. Segments with nothing to compare (no
    /// payload, or bytes already compared) are dropped at once (QEMU queues them, and fully compared ones linger until
    /// they time out into a spurious checkpoint); false then. True when the segment is to be queued.
    /// </summary>
    private bool SecondaryTcpArrived(Flow flow, ChardevFrame frame, in ParsedPacket packet)
    {
        NoteClose(flow, packet.TcpFlags, PacketSide.Secondary);
        flow.SecondaryControl |= packet.TcpFlags & (TcpControlBits.Syn | TcpControlBits.Fin | TcpControlBits.Rst);
        if ((packet.TcpFlags & TcpControlBits.Ack) != 0)
        {
            flow.SecondaryAck = flow.HasSecondaryAck ? SeqNumber.Max(flow.SecondaryAck, packet.TcpAck) : packet.TcpAck;
            flow.HasSecondaryAck = true;
        }

        DropReason? nothingToCompare = packet.PayloadLength == 0 ? DropReason.ZeroPayload
            : flow.HasComparedSeq && SeqNumber.LessOrEqual(packet.TcpSeq + (uint)packet.PayloadLength, flow.ComparedSeq) ? DropReason.AlreadyCompared
            : null;
        if (nothingToCompare is DropReason reason)
        {
            Drop(frame, PacketSide.Secondary, reason);
            Process(flow);
            return false;
        }

        return true;
    }

    /// <summary>
    /// Walks the flow's primary segments in sequence order against the secondary's, releasing what is proven.
    /// Differences from QEMU 7.2: segments are compared only where both sides cover the same sequence position
    /// (QEMU assumes alignment and can read past a buffer); a partly compared primary segment waits for the
    /// secondary's ACK instead of requesting a checkpoint; a fully matched secondary segment is dropped at once;
    /// a retransmission of compared bytes is released without waiting; sequence 0 is an ordinary number.
    /// </summary>
    private void ProcessTcp(Flow flow)
    {
        while (!flow.Diverged && flow.Primary.Count > 0 && PrimaryHeadMoved(flow))
        {
        }
    }

    /// <summary>One step on the first primary segment in sequence order: true when something moved and the walk goes on.</summary>
    private bool PrimaryHeadMoved(Flow flow)
    {
        ref QueuedPacket p = ref flow.Primary.Head;
        if (p.DataLength == 0)
        {
            // Pure ACK, SYN, FIN or RST: nothing to compare. As QEMU, wait until the secondary is talking on the
            // flow: a secondary packet is queued, or one arrived after this one. Unlike QEMU, also go when the
            // secondary sent this segment's twin first (see SecondaryIsAsFar).
            return (flow.Secondary.Count > 0 || flow.LastSecondaryOrder > p.Order || SecondaryIsAsFar(flow, p))
                && ReleasedHead(flow, ReleaseReason.ZeroPayload);
        }

        if (p.Compared == p.DataLength)
        {
            // Fully matched, waiting for the secondary to acknowledge as much as this segment does.
            return AckAllows(flow, p) && ReleasedHead(flow, ReleaseReason.Matched);
        }

        if (flow.HasCompareStart && SeqNumber.LessThan(p.Seq, flow.CompareStartSeq))
        {
            // Bytes from before where this flow's comparison began: the secondary's copy was skipped, so
            // they cannot be compared, and sending them unverified would be unsafe for a failover. Hold the flow
            // (sequence order is kept) until a checkpoint makes them the secondary's state too.
            Unverifiable(flow);
            return false;
        }

        if (flow.HasComparedSeq)
        {
            if (SeqNumber.LessOrEqual(p.SeqEnd, flow.ComparedSeq))
            {
                // Every byte was compared already: a retransmission, safe to send as is.
                return ReleasedHead(flow, ReleaseReason.Retransmission);
            }

            if (SeqNumber.LessThan(p.Seq + (uint)p.Compared, flow.ComparedSeq))
            {
                // Overlaps the compared point: compare only the new part (QEMU compares from its start).
                p.Compared = (int)(flow.ComparedSeq - p.Seq);
                p.Partial = true;
            }
        }

        return NextSecondary(flow) && ComparedHeads(flow, ref p);
    }

    private bool ReleasedHead(Flow flow, ReleaseReason reason)
    {
        ReleasePrimaryAt(flow, 0, reason);
        return true;
    }

    /// <summary>
    /// Compares the first primary and secondary segments where both cover the same sequence position. True when
    /// bytes were compared (and what is fully compared released or dropped) or skipped; false to wait, or on a
    /// mismatch.
    /// </summary>
    private bool ComparedHeads(Flow flow, ref QueuedPacket p)
    {
        ref QueuedPacket s = ref flow.Secondary.Head;
        uint pStart = p.Seq + (uint)p.Compared;
        uint sStart = s.Seq + (uint)s.Compared;
        if (pStart != sStart)
        {
            // One side lacks bytes the other has at this position: wait for them (a timeout ends the wait), unless
            // this is where a flow seen mid-stream starts.
            return SkippedBeforeFirstCompared(flow, p, ref s, pStart, sStart);
        }

        int length = Math.Min(p.DataLength - p.Compared, s.DataLength - s.Compared);
        if (!PayloadComparer.Equal(p.Data.Slice(p.Compared, length), s.Data.Slice(s.Compared, length)))
        {
            Mismatch(flow);
            return false;
        }

        bool exact = p.Compared == 0 && s.Compared == 0 && p.Seq == s.Seq && p.DataLength == s.DataLength;
        p.Compared += length;
        s.Compared += length;
        p.Partial |= !exact;
        if (!flow.HasComparedSeq)
        {
            flow.CompareStartSeq = pStart;
            flow.HasCompareStart = true;
        }

        flow.ComparedSeq = pStart + (uint)length;
        flow.HasComparedSeq = true;
        if (flow.HasCompareStart && flow.ComparedSeq - flow.CompareStartSeq > MaxTcpWindow)
        {
            // More than any TCP window (2^30 bytes, RFC 7323) compared since the start: nothing from before it can
            // still come, and past 2^31 bytes the wrap-safe comparison would take every new byte for one from before.
            flow.HasCompareStart = false;
        }

        if (s.Compared == s.DataLength)
        {
            DropSecondaryAt(flow, 0, DropReason.Matched);
        }

        if (p.Compared == p.DataLength && AckAllows(flow, p))
        {
            ReleasePrimaryAt(flow, 0, ReleaseReason.Matched);
        }

        return true;
    }

    /// <summary>
    /// The first comparison of a flow seen mid-stream: the secondary has bytes from before the first primary byte we
    /// saw, with nothing of the primary's to compare them with; they are skipped (true). Not before the primary's
    /// earlier bytes had <see cref="MidStreamGraceMs"/> to arrive out of order (OnTick tries again), and never once
    /// the flow has compared bytes: then a gap means waiting (false).
    /// </summary>
    private bool SkippedBeforeFirstCompared(Flow flow, in QueuedPacket p, ref QueuedPacket s, uint pStart, uint sStart)
    {
        if (flow.HasComparedSeq || !SeqNumber.LessThan(sStart, pStart) || _nowMs - p.ArrivalMs < MidStreamGraceMs)
        {
            return false;
        }

        if (SeqNumber.LessOrEqual(s.SeqEnd, pStart))
        {
            DropSecondaryAt(flow, 0, DropReason.BeforeFirstCompared);
        }
        else
        {
            s.Compared = (int)(pStart - s.Seq);
        }

        return true;
    }

    /// <summary>
    /// How long the first primary segment of a fresh flow waits for out-of-order primary bytes before it when the
    /// secondary has bytes from before it; after that the flow counts as seen mid-stream and the secondary's earlier
    /// bytes are skipped.
    /// </summary>
    public const long MidStreamGraceMs = 100;

    /// <summary>The largest window a TCP sender may use (RFC 7323: 2^30 bytes): how far back a retransmission can reach.</summary>
    private const uint MaxTcpWindow = 1u << 30;

    private void Unverifiable(Flow flow)
    {
        flow.Diverged = true;
        flow.DivergedReason = CheckpointReason.Uncomparable;
        RequestCheckpoint(CheckpointReason.Uncomparable, flow);
    }

    /// <summary>
    /// Moves the secondary queue's head to the first byte not yet compared, dropping segments that are all behind
    /// the compared point. False when no secondary data is queued.
    /// </summary>
    private bool NextSecondary(Flow flow)
    {
        while (flow.Secondary.Count > 0)
        {
            ref QueuedPacket s = ref flow.Secondary.Head;
            if (flow.HasComparedSeq)
            {
                if (SeqNumber.LessOrEqual(s.SeqEnd, flow.ComparedSeq))
                {
                    DropSecondaryAt(flow, 0, DropReason.AlreadyCompared);
                    continue;
                }

                if (SeqNumber.LessThan(s.Seq + (uint)s.Compared, flow.ComparedSeq))
                {
                    s.Compared = (int)(flow.ComparedSeq - s.Seq);
                }
            }

            return true;
        }

        return false;
    }

    /// <summary>
    /// A control segment whose twin the secondary already sent: it carries no control bit (SYN, FIN, RST) the
    /// secondary has not sent on the flow, and it acknowledges no more of the client's data than the secondary has.
    /// QEMU's rule ("a secondary packet is queued, or comes later") relies on QEMU keeping zero-payload secondary
    /// segments queued; we drop them at once (they would linger into timeouts), so without this a primary SYN-ACK,
    /// FIN or final ACK that came after the secondary's waited for a secondary packet that never comes. Found on a
    /// real pair: the client's SYN retransmitted after 1 s, closes held for compare_timeout, and checkpoints.
    /// </summary>
    private static bool SecondaryIsAsFar(Flow flow, in QueuedPacket p)
    {
        TcpControlBits control = p.Flags & (TcpControlBits.Syn | TcpControlBits.Fin | TcpControlBits.Rst);
        if ((control & ~flow.SecondaryControl) != 0)
        {
            return false;
        }

        if (!p.HasAck)
        {
            // A bare SYN or RST the secondary sent too.
            return control != TcpControlBits.None;
        }

        return flow.HasSecondaryAck && SeqNumber.LessOrEqual(p.Ack, flow.SecondaryAck);
    }

    /// <summary>
    /// The ACK gate (spec §2.5.2): a primary segment matched in pieces may leave only once the secondary has
    /// acknowledged as much as it does, so that a failover never loses client data the primary acknowledged.
    /// Wrap-safe, unlike QEMU 7.2's "min_ack".
    /// </summary>
    private static bool AckAllows(Flow flow, in QueuedPacket p) =>
        !p.Partial || !p.HasAck || (flow.HasSecondaryAck && SeqNumber.LessOrEqual(p.Ack, flow.SecondaryAck));

    /// <summary>Notes a FIN or RST from one side: a flow closed on both sides (or reset) may be forgotten once empty.</summary>
    private static void NoteClose(Flow flow, TcpControlBits flags, PacketSide side)
    {
        if ((flags & (TcpControlBits.Fin | TcpControlBits.Rst)) == 0)
        {
            return;
        }

        if (side == PacketSide.Primary)
        {
            flow.PrimaryClosed = true;
        }
        else
        {
            flow.SecondaryClosed = true;
        }

        if ((flags & TcpControlBits.Rst) != 0)
        {
            flow.Reset = true;
        }
    }
}
