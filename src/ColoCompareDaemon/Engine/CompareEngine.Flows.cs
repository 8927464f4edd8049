using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>The flow table: lookup, a reused 4-tuple (a new SYN starts a new connection), removal with reuse of forgotten flows up to the budget, eviction of idle flows at the budget, expiry.</summary>
public sealed partial class CompareEngine
{
    /// <summary>
    /// TCP connection reuse: a SYN on a 4-tuple whose flow has already carried a connection on that side (a SYN after
    /// FIN or RST, or a jump to a new ISN; a retransmitted SYN has the same sequence number) starts a new flow, with
    /// fresh comparison state on both sides. The old flow is retired: it keeps what it has queued and is compared,
    /// flushed or timed out as before, and it receives the other side's packets until that side's own SYN shows
    /// that it has moved to the new connection too (each side's stream is in order).
    /// </summary>
    private Flow Connection(Flow flow, in ParsedPacket packet, PacketSide side, long nowMs)
    {
        bool primary = side == PacketSide.Primary;
        if ((packet.TcpFlags & TcpControlBits.Syn) != 0)
        {
            bool seen = primary ? flow.PrimarySeen : flow.SecondarySeen;
            bool retransmitted = primary ? flow.HasPrimarySyn && flow.PrimarySyn == packet.TcpSeq : flow.HasSecondarySyn && flow.SecondarySyn == packet.TcpSeq;
            if (seen && !retransmitted)
            {
                flow = StartConnection(flow, side, nowMs);
            }

            if (primary)
            {
                flow.PrimarySyn = packet.TcpSeq;
                flow.HasPrimarySyn = true;
                flow.PrimaryAwaitingSyn = false;
            }
            else
            {
                flow.SecondarySyn = packet.TcpSeq;
                flow.HasSecondarySyn = true;
                flow.SecondaryAwaitingSyn = false;
            }
        }
        else if ((primary ? flow.PrimaryAwaitingSyn : flow.SecondaryAwaitingSyn) && flow.Previous is Flow previous)
        {
            // The old connection's last packets on this side (its final ACK, a FIN, a retransmission).
            previous.LastActivityMs = nowMs;
            flow = previous;
        }

        if (primary)
        {
            flow.PrimarySeen = true;
        }
        else
        {
            flow.SecondarySeen = true;
        }

        return flow;
    }

    private Flow StartConnection(Flow old, PacketSide side, long nowMs)
    {
        Flow fresh = Track(old.Id, nowMs);
        _flows[old.Id] = fresh;
        Counters.ConnectionsReused++;
        if (old.Previous is Flow older)
        {
            // Only the latest old connection still receives packets; an older one just drains.
            older.Successor = null;
            old.Previous = null;
        }

        old.Retired = true;
        old.Successor = fresh;
        fresh.Previous = old;
        fresh.PrimaryAwaitingSyn = side != PacketSide.Primary && old.PrimarySeen;
        fresh.SecondaryAwaitingSyn = side != PacketSide.Secondary && old.SecondarySeen;
        _lastFlow = fresh;
        return fresh;
    }

    private Flow GetFlow(in ParsedPacket packet, CompareProtocol protocol, long nowMs)
    {
        Flow? flow = _lastFlow;
        if (flow is null || flow.Id.Protocol != protocol || packet.IsFragment || !flow.Id.Key.Equals(packet.Flow))
        {
            FlowKey key = packet.Flow;
            if (packet.IsFragment)
            {
                // Only the first fragment has ports: key all of them by addresses, protocol and VLAN.
                key = new FlowKey(key.IpVersion, key.Source, key.Destination, key.Protocol, 0, 0, key.VlanIds);
            }

            var id = new FlowId(key, protocol);
            if (!_flows.TryGetValue(id, out flow))
            {
                if (Counters.QueuedBytes + FlowStateBytes + FlowCostBytes > _options.QueueBudgetBytes)
                {
                    // The table's own memory counts against the queue budget: forget idle flows before it grows.
                    EvictIdleFlows(null);
                }

                flow = Track(id, nowMs);
                GrowFlowTable();
                _flows.Add(id, flow);
            }

            _lastFlow = flow;
        }

        flow.LastActivityMs = nowMs;
        return flow;
    }

    /// <summary>A flow for <paramref name="id"/> (a spare one when there is one), tracked and counted; the caller puts it in the table.</summary>
    private Flow Track(FlowId id, long nowMs)
    {
        Flow flow = _spareFlows.Count > 0 ? _spareFlows.Pop() : new Flow(_queueArrays);
        _fewestSpareFlows = Math.Min(_fewestSpareFlows, _spareFlows.Count);
        flow.Start(id, nowMs);
        flow.Index = _flowList.Count;
        _flowList.Add(flow);
        Counters.Flows++;
        return flow;
    }

    private void RemoveFlow(Flow flow)
    {
        int last = _flowList.Count - 1;
        Flow moved = _flowList[last];
        _flowList[flow.Index] = moved;
        moved.Index = flow.Index;
        _flowList.RemoveAt(last);
        if (flow.Retired)
        {
            // Out of the table already; the connection that replaced it sends its own packets from now on.
            if (flow.Successor is Flow successor && successor.Previous == flow)
            {
                successor.Previous = null;
            }
        }
        else
        {
            _flows.Remove(flow.Id);
            if (flow.Previous is Flow previous)
            {
                previous.Successor = null;
            }
        }

        if (_lastFlow == flow)
        {
            _lastFlow = null;
        }

        if (_spareFlows.Count < SpareFlowRoom)
        {
            _spareFlows.Push(flow);
        }

        Counters.Flows--;
        Counters.FlowsExpired++;
    }

    /// <summary>
    /// What one tracked flow costs in memory, charged against the queue budget together with the queued frames: its
    /// object, two queue objects, its table entry and list slot are about 280 bytes live (measured with 100,000
    /// flows); the rest is the garbage that flows coming and going leave until the GC runs.
    /// </summary>
    internal const long FlowCostBytes = 640;

    private long FlowStateBytes => _flowList.Count * FlowCostBytes;

    /// <summary>Forgotten flows kept for reuse (for tests).</summary>
    internal int SpareFlowCount => _spareFlows.Count;

    /// <summary>
    /// How many forgotten flows are kept for reuse: as many as the budget lets the table hold, less those it holds, so
    /// that tracked and spare flows together never outnumber the largest table the budget allows (and never fewer
    /// than <see cref="KeptSpareFlows"/>, enough for the churn of new flows at any rate). A flow that is forgotten is
    /// then reused, not left as garbage: the table's memory no longer depends on when the GC runs. Spares that were not
    /// needed for a whole scan cycle are let go gradually (<see cref="TrimSpareFlows"/>).
    /// </summary>
    private long SpareFlowRoom => Math.Max(KeptSpareFlows, _options.QueueBudgetBytes / FlowCostBytes - _flowList.Count);

    /// <summary>
    /// Before the table fills, it grows to twice its size, but never past the most flows the budget allows: the
    /// dictionary's own doubling would overshoot that by up to half again (15 MB of entries where 10 MB are all it can
    /// use with the default budget), and each array it outgrows is garbage for a full GC.
    /// </summary>
    private void GrowFlowTable()
    {
        if (_flows.Count == _flows.Capacity)
        {
            long most = _options.QueueBudgetBytes / FlowCostBytes;
            _flows.EnsureCapacity((int)Math.Clamp(2L * _flows.Count, _flows.Count + 1, Math.Max(most, _flows.Count + 1)));
        }
    }

    /// <summary>
    /// Once per scan: half of the spare flows above <see cref="KeptSpareFlows"/> that no new flow took since the last
    /// scan go to the GC. After a peak of 200,000 flows the spares shrink back within a dozen cycles, a little at a time.
    /// </summary>
    private void TrimSpareFlows()
    {
        int unused = Math.Min(_fewestSpareFlows, _spareFlows.Count) - KeptSpareFlows;
        for (int i = 0; i < (unused + 1) / 2; i++)
        {
            _spareFlows.Pop();
        }

        _fewestSpareFlows = _spareFlows.Count;
    }

    /// <summary>
    /// Forgets flows with nothing queued that have been quiet the longest (half of them, up to what the spare stack takes, oldest first by
    /// their last packet; never <paramref name="keep"/>, the flow a packet is being added to), so that a table of many idle flows never takes the budget from queued packets. Safe: an
    /// idle datagram flow holds no state; a TCP flow seen again is compared as seen mid-stream. True if any went.
    /// </summary>
    private bool EvictIdleFlows(Flow? keep)
    {
        if (_nowMs < _nextEvictionMs)
        {
            return false;
        }

        // Reused: a sweep under steady pressure runs every few thousand new flows, and a fresh list each time was
        // megabytes of garbage per sweep.
        List<(long LastActivityMs, Flow Flow)> idle = _evictionCandidates;
        idle.Clear();
        foreach (Flow flow in _flowList)
        {
            if (flow != keep && flow.IsEmpty && !flow.Diverged && flow.Previous is null && flow.Successor is null)
            {
                idle.Add((flow.LastActivityMs, flow));
            }
        }

        if (idle.Count == 0)
        {
            // Every flow holds packets: sweeping again for each packet would cost O(flows) each; wait a little.
            _nextEvictionMs = _nowMs + 100;
            return false;
        }

        idle.Sort((a, b) => a.LastActivityMs.CompareTo(b.LastActivityMs));
        // At most as many as the spare stack takes back, so that the flows about to be created reuse them instead of
        // leaving the evicted ones as garbage for a full GC (that garbage, not the table, was most of the RSS).
        int evict = (int)Math.Min(SpareFlowRoom - _spareFlows.Count, Math.Max(1, idle.Count / 2));
        evict = Math.Max(evict, 1);
        for (int i = 0; i < evict; i++)
        {
            RemoveFlow(idle[i].Flow);
            Counters.FlowsEvicted++;
        }

        idle.Clear();

        return true;
    }

    private bool IsExpired(Flow flow, long nowMs)
    {
        long idle = nowMs - flow.LastActivityMs;
        if (flow.Protocol != CompareProtocol.Tcp && idle > _options.ExpiredScanCycleMs)
        {
            // An empty datagram flow holds no state worth keeping (matching is by what is queued): forget it soon.
            return true;
        }

        bool closed = flow.Reset || flow.Retired || (flow.PrimaryClosed && flow.SecondaryClosed);
        return idle > _options.FlowIdleTimeoutMs || (closed && idle > _options.ClosedFlowLingerMs);
    }
}
