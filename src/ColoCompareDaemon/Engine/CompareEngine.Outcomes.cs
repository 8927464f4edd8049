using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>What becomes of queued packets: compared (per protocol), overdue (timeout, full queue), released or dropped with a reason, a checkpoint asked for once until one completes.</summary>
public sealed partial class CompareEngine
{
    private CheckpointReason? Overdue(Flow flow, long nowMs)
    {
        if (flow.Diverged)
        {
            return flow.DivergedReason;
        }

        // Strictly older than compare_timeout, as QEMU checks (spec §2.8).
        if (nowMs - flow.Primary.OldestArrivalMs() > _options.CompareTimeoutMs)
        {
            return CheckpointReason.PrimaryTimeout;
        }

        if (nowMs - flow.Secondary.OldestArrivalMs() > _options.CompareTimeoutMs)
        {
            return CheckpointReason.SecondaryTimeout;
        }

        if (flow.Primary.Count >= _options.MaxQueueSize || flow.Secondary.Count >= _options.MaxQueueSize)
        {
            return CheckpointReason.QueueFull;
        }

        return null;
    }

    private void Process(Flow flow)
    {
        if (flow.Protocol == CompareProtocol.Tcp)
        {
            ProcessTcp(flow);
        }
        else
        {
            ProcessDatagrams(flow);
        }

        if (flow.Primary.Count >= _options.MaxQueueSize || flow.Secondary.Count >= _options.MaxQueueSize)
        {
            // QEMU drops at max_queue_size + 1, primary packets included (spec §2.5.1); we ask for a checkpoint.
            RequestCheckpoint(CheckpointReason.QueueFull, flow);
        }
    }

    private void Mismatch(Flow flow)
    {
        flow.Diverged = true;
        flow.DivergedReason = CheckpointReason.Mismatch;
        Counters.CountMismatch(flow.Protocol);
        _actions.Diverged(new Divergence(CheckpointReason.Mismatch, flow, _options, _nowMs));
        RequestCheckpoint(CheckpointReason.Mismatch, flow);
    }

    private void RequestCheckpoint(CheckpointReason reason, Flow flow)
    {
        if (_checkpointOutstanding)
        {
            Counters.CheckpointRequestsCoalesced++;
            return;
        }

        _checkpointOutstanding = true;
        _checkpointRequestedMs = _nowMs;
        Counters.CountCheckpointRequest(reason);
        if (reason is CheckpointReason.PrimaryTimeout or CheckpointReason.SecondaryTimeout or CheckpointReason.QueueFull or CheckpointReason.Uncomparable)
        {
            // A mismatch was reported when found (a re-request of it is not a new divergence); a packet dropped for
            // the queue budget is gone, so there is no diverging pair to show.
            _actions.Diverged(new Divergence(reason, flow, _options, _nowMs));
        }

        _actions.RequestCheckpoint(reason, flow.Id.Key);
    }

    private void Flush(ReleaseReason release, DropReason drop)
    {
        foreach (Flow flow in _flowList)
        {
            ReleaseQueued(flow, release, drop);

            // The secondary now holds the primary's state: an old connection's packets no longer need their own
            // flow, and a side that never sent the new connection's SYN (it got the connection from the checkpoint)
            // is no longer waited for.
            flow.PrimaryAwaitingSyn = false;
            flow.SecondaryAwaitingSyn = false;
        }
    }

    /// <summary>Releases a flow's queued primary packets in order and drops its secondary ones; the flow goes on from the primary's state.</summary>
    private void ReleaseQueued(Flow flow, ReleaseReason release, DropReason drop)
    {
        bool tcp = flow.Protocol == CompareProtocol.Tcp;
        while (flow.Primary.Count > 0)
        {
            ref QueuedPacket head = ref flow.Primary.Head;
            if (tcp)
            {
                // The flow goes on from the primary's sequence and ACK: after a checkpoint the secondary holds that
                // state; after a bypass rule, comparison resumes there should the rule be removed.
                if (head.DataLength > 0)
                {
                    flow.ComparedSeq = flow.HasComparedSeq ? SeqNumber.Max(flow.ComparedSeq, head.SeqEnd) : head.SeqEnd;
                    flow.HasComparedSeq = true;
                }

                if (head.HasAck)
                {
                    flow.SecondaryAck = flow.HasSecondaryAck ? SeqNumber.Max(flow.SecondaryAck, head.Ack) : head.Ack;
                    flow.HasSecondaryAck = true;
                }
            }

            ReleasePrimaryAt(flow, 0, release);
        }

        while (flow.Secondary.Count > 0)
        {
            DropSecondaryAt(flow, 0, drop);
        }

        // Every byte the primary sent is now out by this release (a checkpoint: and in the secondary's state), so a
        // retransmission of any of them is safe.
        flow.HasCompareStart = false;
        flow.Diverged = false;
    }

    private void ReleasePrimaryAt(Flow flow, int index, ReleaseReason reason)
    {
        ChardevFrame frame = flow.Primary[index].Frame;
        Counters.QueuedSeconds.Record((_nowMs - flow.Primary[index].ArrivalMs) / 1000.0);
        flow.Primary.RemoveAt(index);
        Counters.PrimaryQueued--;
        Counters.QueuedBytes -= Held(frame);
        Counters.PrimaryQueuedBytes -= Held(frame);
        Release(frame, reason);
    }

    private void DropSecondaryAt(Flow flow, int index, DropReason reason)
    {
        ChardevFrame frame = flow.Secondary[index].Frame;
        flow.Secondary.RemoveAt(index);
        Counters.SecondaryQueued--;
        Counters.QueuedBytes -= Held(frame);
        Drop(frame, PacketSide.Secondary, reason);
    }

    private void Release(ChardevFrame frame, ReleaseReason reason)
    {
        Counters.CountRelease(reason);
        _actions.Release(frame, reason);
    }

    private void Drop(ChardevFrame frame, PacketSide side, DropReason reason)
    {
        Counters.CountDrop(side, reason);
        _actions.Drop(frame, side, reason);
    }
}
