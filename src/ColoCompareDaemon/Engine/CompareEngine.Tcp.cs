namespace ColoChardev.Daemon.Engine;

/// <summary>TCP: payload bytes compared by sequence number (QEMU commit f449c9e549, spec §2.5), alignment checked.</summary>
public sealed partial class CompareEngine
{
    /// <summary>
    /// Walks the flow's primary segments in sequence order against the secondary's, releasing what is proven.
    /// Differences from QEMU 7.2: segments are compared only where both sides cover the same sequence position
    /// (QEMU assumes alignment and can read past a buffer); a partly compared primary segment waits for the
    /// secondary's ACK instead of requesting a checkpoint; a fully matched secondary segment is dropped at once;
    /// a retransmission of compared bytes is released without waiting; sequence 0 is an ordinary number.
    /// </summary>
    private void ProcessTcp(Flow flow)
    {
        while (!flow.Diverged && flow.Primary.Count > 0)
        {
            ref QueuedPacket p = ref flow.Primary.Head;
            if (p.DataLength == 0)
            {
                // Pure ACK, SYN, FIN or RST: nothing to compare. As QEMU, wait until the secondary is talking on the
                // flow: a secondary packet is queued, or one arrived after this one.
                if (flow.Secondary.Count > 0 || flow.LastSecondaryOrder > p.Order)
                {
                    ReleasePrimaryAt(flow, 0, ReleaseReason.ZeroPayload);
                    continue;
                }

                return;
            }

            if (p.Compared == p.DataLength)
            {
                // Fully matched, waiting for the secondary to acknowledge as much as this segment does.
                if (AckAllows(flow, p))
                {
                    ReleasePrimaryAt(flow, 0, ReleaseReason.Matched);
                    continue;
                }

                return;
            }

            if (flow.HasComparedSeq)
            {
                if (SeqNumber.LessOrEqual(p.SeqEnd, flow.ComparedSeq))
                {
                    // Every byte was compared already: a retransmission, safe to send as is.
                    ReleasePrimaryAt(flow, 0, ReleaseReason.Retransmission);
                    continue;
                }

                uint compared = flow.ComparedSeq - p.Seq;
                if (SeqNumber.LessThan(p.Seq + (uint)p.Compared, flow.ComparedSeq))
                {
                    // Overlaps the compared point: compare only the new part (QEMU compares from its start).
                    p.Compared = (int)compared;
                    p.Partial = true;
                }
            }

            if (!NextSecondary(flow))
            {
                return;
            }

            ref QueuedPacket s = ref flow.Secondary.Head;
            uint pStart = p.Seq + (uint)p.Compared;
            uint sStart = s.Seq + (uint)s.Compared;
            if (pStart != sStart)
            {
                if (!flow.HasComparedSeq && SeqNumber.LessThan(sStart, pStart))
                {
                    // The first comparison of a flow seen mid-stream: the secondary has bytes from before the first
                    // primary byte we saw. Nothing of the primary's to compare them with; skip them.
                    if (SeqNumber.LessOrEqual(s.SeqEnd, pStart))
                    {
                        DropSecondaryAt(flow, 0, DropReason.BeforeFirstCompared);
                    }
                    else
                    {
                        s.Compared = (int)(pStart - s.Seq);
                    }

                    continue;
                }

                // One side lacks bytes the other has at this position: wait for them (a timeout ends the wait).
                return;
            }

            int length = Math.Min(p.DataLength - p.Compared, s.DataLength - s.Compared);
            if (!PayloadComparer.Equal(p.Data.Slice(p.Compared, length), s.Data.Slice(s.Compared, length)))
            {
                Mismatch(flow);
                return;
            }

            bool exact = p.Compared == 0 && s.Compared == 0 && p.Seq == s.Seq && p.DataLength == s.DataLength;
            p.Compared += length;
            s.Compared += length;
            p.Partial |= !exact;
            flow.ComparedSeq = pStart + (uint)length;
            flow.HasComparedSeq = true;
            if (s.Compared == s.DataLength)
            {
                DropSecondaryAt(flow, 0, DropReason.Matched);
            }

            if (p.Compared == p.DataLength && AckAllows(flow, p))
            {
                ReleasePrimaryAt(flow, 0, ReleaseReason.Matched);
            }
        }
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
    /// The ACK gate (spec §2.5.2): a primary segment matched in pieces may leave only once the secondary has
    /// acknowledged as much as it does, so that a failover never loses client data the primary acknowledged.
    /// Wrap-safe, unlike QEMU 7.2's "min_ack".
    /// </summary>
    private static bool AckAllows(Flow flow, in QueuedPacket p) =>
        !p.Partial || !p.HasAck || (flow.HasSecondaryAck && SeqNumber.LessOrEqual(p.Ack, flow.SecondaryAck));
}
