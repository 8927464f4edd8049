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

    /// <summary>What the queue budget is charged now: queued frames (buffers and slots) and the flow table.</summary>
    public long BudgetUsedBytes => Counters.QueuedBytes + FlowStateBytes;

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

        Flow flow = FlowOf(packet, protocol, PacketSide.Primary, nowMs);
        if (!Admit(frame, PacketSide.Primary, flow))
        {
            return;
        }

        if (protocol == CompareProtocol.Tcp)
        {
            NoteClose(flow, packet.TcpFlags, PacketSide.Primary);
        }

        Enqueue(flow, PacketSide.Primary, frame, packet, protocol, nowMs);
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

        Flow flow = FlowOf(packet, protocol, PacketSide.Secondary, nowMs);
        flow.LastSecondaryOrder = _order++;
        if (protocol == CompareProtocol.Tcp && !SecondaryTcpArrived(flow, frame, packet))
        {
            return;
        }

        if (!Admit(frame, PacketSide.Secondary, flow))
        {
            return;
        }

        Enqueue(flow, PacketSide.Secondary, frame, packet, protocol, nowMs);
    }

    /// <summary>The packet's flow; for TCP, a new SYN on a used 4-tuple gives the new connection's (<see cref="Connection"/>).</summary>
    private Flow FlowOf(in ParsedPacket packet, CompareProtocol protocol, PacketSide side, long nowMs)
    {
        Flow flow = GetFlow(packet, protocol, nowMs);
        return protocol == CompareProtocol.Tcp ? Connection(flow, packet, side, nowMs) : flow;
    }

    /// <summary>An admitted frame joins its side's queue (TCP kept in sequence order), is counted, and the flow is compared.</summary>
    private void Enqueue(Flow flow, PacketSide side, ChardevFrame frame, in ParsedPacket packet, CompareProtocol protocol, long nowMs)
    {
        PacketQueue queue = side == PacketSide.Primary ? flow.Primary : flow.Secondary;
        ref QueuedPacket queued = ref queue.Append();
        Describe(ref queued, frame, packet, protocol, nowMs);
        if (protocol == CompareProtocol.Tcp)
        {
            queue.SortLastBySeq();
        }

        if (side == PacketSide.Primary)
        {
            Counters.PrimaryQueued++;
            Counters.PrimaryQueuedBytes += Held(frame);
        }
        else
        {
            Counters.SecondaryQueued++;
        }

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

    /// <summary>
    /// The queues are near their budget and did not drain during a pause of the input that is ahead (the NIC's
    /// back-pressure): a checkpoint is requested (reason <see cref="CheckpointReason.QueueBudget"/>, for the flow that
    /// holds the most frames), which empties them before the budget's drops begin. Nothing if one is outstanding.
    /// </summary>
    public void OnQueueStalled(long nowMs)
    {
        _nowMs = nowMs;
        Flow? fullest = null;
        foreach (Flow flow in _flowList)
        {
            if (fullest is null || flow.Primary.Count + flow.Secondary.Count > fullest.Primary.Count + fullest.Secondary.Count)
            {
                fullest = flow;
            }
        }

        if (fullest is not null && fullest.Primary.Count + fullest.Secondary.Count > 0)
        {
            RequestCheckpoint(CheckpointReason.QueueBudget, fullest);
        }
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
}
