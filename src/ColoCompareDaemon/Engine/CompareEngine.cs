using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>
/// colo-compare's decisions as a pure, deterministic core, one instance per compared NIC. Events go in (a primary
/// frame, a secondary frame, a clock tick, a completed checkpoint, failover); actions come out through
/// <see cref="ICompareActions"/> (release, drop with a reason, request a checkpoint with a reason). No sockets,
/// threads, QMP or wall clock in here; time is whatever the caller passes. Not thread-safe: one caller at a time.
/// </summary>
/// <remarks>
/// Semantics follow QEMU's colo-compare (spec §2) with its bugs fixed; docs/compatibility.md lists each difference.
/// </remarks>
public sealed partial class CompareEngine
{
    private CompareOptions _options;
    private readonly ICompareActions _actions;
    private readonly Dictionary<FlowId, Flow> _flows = [];
    private readonly List<Flow> _flowList = [];
    private readonly Stack<Flow> _spareFlows = new();
    private readonly QueueArrayPool _queueArrays = new();
    private const int KeptSpareFlows = 4096;
    private int _fewestSpareFlows;
    private long _nextEvictionMs;
    private readonly List<(long LastActivityMs, Flow Flow)> _evictionCandidates = [];
    private Flow? _lastFlow;
    private long _order;
    private long _nowMs;
    private long _lastScanMs;
    private bool _scanned;
    private bool _checkpointOutstanding;

    // Why frames pass uncompared (Failover or Shutdown); null while comparing.
    private ReleaseReason? _passThrough;
    private long _checkpointRequestedMs;

    public CompareEngine(CompareOptions options, ICompareActions actions)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(actions);
        string? problem = options.Validate();
        if (problem is not null)
        {
            throw new ArgumentException(problem, nameof(options));
        }

        _options = options;
        _actions = actions;
    }

    /// <summary>The engine's accounting.</summary>
    public CompareCounters Counters { get; } = new();

    /// <summary>The options in force.</summary>
    public CompareOptions Options => _options;

    /// <summary>
    /// Changes the options at run time (QEMU allows compare_timeout, expired_scan_cycle and max_queue_size through
    /// qom-set). Queued packets stay; the new limits apply from the next packet and the next scan. Returns null, or
    /// the sentence that says why <paramref name="options"/> is refused (nothing changes then).
    /// </summary>
    public string? UpdateOptions(CompareOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Validate() is string problem)
        {
            return problem;
        }

        if (options.VnetHdrSupport != _options.VnetHdrSupport)
        {
            return "vnet_hdr_support cannot change at run time: it is the framing of the connected chardevs";
        }

        bool newRules = !ReferenceEquals(options.Bypass, _options.Bypass) && options.Bypass.Count > 0;
        _options = options;
        if (newRules)
        {
            // A flow that is bypassed from now on must not have its next packets overtake the ones it has queued:
            // those go out first, uncompared, as the rule says.
            foreach (Flow flow in _flowList)
            {
                if (!flow.IsEmpty && Bypassed(flow.Id.Key))
                {
                    ReleaseQueued(flow, ReleaseReason.Bypass, DropReason.Bypass);
                }
            }
        }

        return null;
    }

    /// <summary>True after <see cref="OnFailover"/>: every primary frame passes straight through.</summary>
    public bool IsFailedOver => _passThrough == ReleaseReason.Failover;

    /// <summary>True after <see cref="OnFailover"/> or <see cref="OnShutdown"/>: nothing is compared any more.</summary>
    public bool IsPassingThrough => _passThrough is not null;

    /// <summary>True while a checkpoint request has been made and no checkpoint has completed since.</summary>
    public bool CheckpointOutstanding => _checkpointOutstanding;

    /// <summary>A frame from the primary guest. The engine owns it from here on.</summary>
    public void OnPrimary(ChardevFrame frame, long nowMs)
    {
        _nowMs = nowMs;
        Counters.PrimaryAccepted++;
        if (_passThrough is ReleaseReason passing)
        {
            Release(frame, passing);
            return;
        }

        if (!Classify(frame, PacketSide.Primary, out ParsedPacket packet, out CompareProtocol protocol))
        {
            return;
        }

        Flow flow = GetFlow(packet, protocol, nowMs);
        if (protocol == CompareProtocol.Tcp)
        {
            flow = Connection(flow, packet, PacketSide.Primary, nowMs);
        }

        if (!Admit(frame, PacketSide.Primary, flow))
        {
            return;
        }

        ref QueuedPacket queued = ref flow.Primary.Append();
        Describe(ref queued, frame, packet, protocol, nowMs);
        if (protocol == CompareProtocol.Tcp)
        {
            NoteClose(flow, packet.TcpFlags, PacketSide.Primary);
            flow.Primary.SortLastBySeq();
        }

        Counters.PrimaryQueued++;
        Counters.QueuedBytes += Held(frame);
        Process(flow);
    }

    /// <summary>A frame from the secondary guest. The engine owns it from here on.</summary>
    public void OnSecondary(ChardevFrame frame, long nowMs)
    {
        _nowMs = nowMs;
        Counters.SecondaryAccepted++;
        if (_passThrough is ReleaseReason passing)
        {
            Drop(frame, PacketSide.Secondary, passing == ReleaseReason.Failover ? DropReason.Failover : DropReason.Shutdown);
            return;
        }

        if (!Classify(frame, PacketSide.Secondary, out ParsedPacket packet, out CompareProtocol protocol))
        {
            return;
        }

        Flow flow = GetFlow(packet, protocol, nowMs);
        if (protocol == CompareProtocol.Tcp)
        {
            flow = Connection(flow, packet, PacketSide.Secondary, nowMs);
        }

        flow.LastSecondaryOrder = _order++;
        if (protocol == CompareProtocol.Tcp && !SecondaryTcpArrived(flow, frame, packet))
        {
            return;
        }

        if (!Admit(frame, PacketSide.Secondary, flow))
        {
            return;
        }

        ref QueuedPacket queued = ref flow.Secondary.Append();
        Describe(ref queued, frame, packet, protocol, nowMs);
        if (protocol == CompareProtocol.Tcp)
        {
            flow.Secondary.SortLastBySeq();
        }

        Counters.SecondaryQueued++;
        Counters.QueuedBytes += Held(frame);
        Process(flow);
    }

    /// <summary>
    /// The clock. Every <see cref="CompareOptions.ExpiredScanCycleMs"/> the queues are scanned: a packet older than
    /// <see cref="CompareOptions.CompareTimeoutMs"/> (or a diverged or full flow) requests a checkpoint, and idle or
    /// closed flows with nothing queued are forgotten. Call it as often as convenient.
    /// </summary>
    public void OnTick(long nowMs)
    {
        _nowMs = nowMs;
        if (_passThrough is not null || (_scanned && nowMs - _lastScanMs < _options.ExpiredScanCycleMs))
        {
            return;
        }

        _scanned = true;
        _lastScanMs = nowMs;
        if (_checkpointOutstanding && nowMs - _checkpointRequestedMs > _options.CompareTimeoutMs)
        {
            // The request was lost or absorbed: allow a new one, as QEMU re-requests every scan.
            _checkpointOutstanding = false;
        }

        CheckpointReason? reason = null;
        Flow? reasonFlow = null;
        for (int i = _flowList.Count - 1; i >= 0; i--)
        {
            Flow flow = _flowList[i];
            if (flow.IsEmpty)
            {
                if (IsExpired(flow, nowMs))
                {
                    RemoveFlow(flow);
                }

                continue;
            }

            if (flow.Protocol == CompareProtocol.Tcp && !flow.HasComparedSeq && !flow.Diverged)
            {
                // A fresh flow may be waiting for primary bytes that arrive out of order (see ProcessTcp).
                ProcessTcp(flow);
            }

            CheckpointReason? flowReason = Overdue(flow, nowMs);
            if (flowReason is not null && reason is null)
            {
                reason = flowReason;
                reasonFlow = flow;
            }
        }

        TrimSpareFlows();
        if (reason is CheckpointReason found)
        {
            RequestCheckpoint(found, reasonFlow!);
        }
    }

    /// <summary>
    /// A checkpoint completed: the secondary holds the primary's state. Every queued primary frame is released in
    /// its flow's order, every queued secondary frame is dropped, and flows continue from where the primary was.
    /// </summary>
    public void OnCheckpointCompleted(long nowMs)
    {
        _nowMs = nowMs;
        Counters.CheckpointsCompleted++;
        _checkpointOutstanding = false;
        Flush(ReleaseReason.Checkpoint, DropReason.Checkpoint);
    }

    /// <summary>Failover: everything queued is released, and from now on primary frames pass straight through.</summary>
    public void OnFailover(long nowMs) => PassThrough(ReleaseReason.Failover, DropReason.Failover, nowMs);

    /// <summary>
    /// The daemon is stopping: every queued primary frame is released (as QEMU does when a colo-compare object is
    /// deleted), and any frame that still arrives passes straight through, counted as released at shutdown.
    /// </summary>
    public void OnShutdown(long nowMs) => PassThrough(ReleaseReason.Shutdown, DropReason.Shutdown, nowMs);

    private void PassThrough(ReleaseReason release, DropReason drop, long nowMs)
    {
        _nowMs = nowMs;
        Flush(release, drop);
        _passThrough ??= release; // a shutdown after failover stays a failover
        _checkpointOutstanding = false;
    }

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
        Flow fresh = _spareFlows.Count > 0 ? _spareFlows.Pop() : new Flow(_queueArrays);
        fresh.Start(old.Id, nowMs);
        fresh.Index = _flowList.Count;
        _flowList.Add(fresh);
        _flows[old.Id] = fresh;
        Counters.Flows++;
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

                flow = _spareFlows.Count > 0 ? _spareFlows.Pop() : new Flow(_queueArrays);
                _fewestSpareFlows = Math.Min(_fewestSpareFlows, _spareFlows.Count);
                flow.Start(id, nowMs);
                flow.Index = _flowList.Count;
                _flowList.Add(flow);
                GrowFlowTable();
                _flows.Add(id, flow);
                Counters.Flows++;
            }

            _lastFlow = flow;
        }

        flow.LastActivityMs = nowMs;
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

    /// <summary>What a queued frame holds in memory: its pooled buffer and its queue slot.</summary>
    private static int Held(ChardevFrame frame) => frame.Capacity + QueueSlotBytes;

    private static readonly int QueueSlotBytes = System.Runtime.CompilerServices.Unsafe.SizeOf<QueuedPacket>();

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
