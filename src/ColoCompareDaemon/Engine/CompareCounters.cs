namespace ColoChardev.Daemon.Engine;

/// <summary>
/// The engine's accounting. Written only by the engine's thread; readable from others (each value is one aligned
/// 64-bit word, so a reader never sees a torn value, only a slightly old one).
/// Invariant: <c>PrimaryAccepted == PrimaryReleased + PrimaryDropped + PrimaryQueued</c>.
/// </summary>
public sealed class CompareCounters
{
    private readonly long[] _releasedBy = new long[Enum.GetValues<ReleaseReason>().Length];
    private readonly long[] _primaryDroppedBy = new long[Enum.GetValues<DropReason>().Length];
    private readonly long[] _secondaryDroppedBy = new long[Enum.GetValues<DropReason>().Length];
    private readonly long[] _checkpointRequestsBy = new long[Enum.GetValues<CheckpointReason>().Length];
    private readonly long[] _mismatchesBy = new long[Enum.GetValues<CompareProtocol>().Length];

    /// <summary>Primary frames handed to the engine.</summary>
    public long PrimaryAccepted { get; internal set; }

    /// <summary>Secondary frames handed to the engine.</summary>
    public long SecondaryAccepted { get; internal set; }

    /// <summary>Primary frames released to outdev, for any reason.</summary>
    public long PrimaryReleased { get; internal set; }

    /// <summary>Primary frames dropped (counted by reason in <see cref="PrimaryDroppedBy"/>).</summary>
    public long PrimaryDropped { get; internal set; }

    /// <summary>Secondary frames dropped, matched ones included.</summary>
    public long SecondaryDropped { get; internal set; }

    /// <summary>Primary frames queued now.</summary>
    public long PrimaryQueued { get; internal set; }

    /// <summary>Secondary frames queued now.</summary>
    public long SecondaryQueued { get; internal set; }

    /// <summary>Frame bytes queued now, both sides.</summary>
    public long QueuedBytes { get; internal set; }

    /// <summary>Of <see cref="QueuedBytes"/>, those held by primary frames.</summary>
    public long PrimaryQueuedBytes { get; internal set; }

    /// <summary>Checkpoint requests handed to <see cref="ICompareActions.RequestCheckpoint"/>.</summary>
    public long CheckpointRequests { get; internal set; }

    /// <summary>Reasons to checkpoint that arose while a request was already outstanding (coalesced into it).</summary>
    public long CheckpointRequestsCoalesced { get; internal set; }

    /// <summary>Checkpoints completed (requested or not).</summary>
    public long CheckpointsCompleted { get; internal set; }

    /// <summary>Flows tracked now.</summary>
    public long Flows { get; internal set; }

    /// <summary>Flows forgotten after closing or idling.</summary>
    public long FlowsExpired { get; internal set; }

    /// <summary>Idle flows forgotten early because the flow table's memory counts against the queue budget.</summary>
    public long FlowsEvicted { get; internal set; }

    /// <summary>TCP flows whose 4-tuple was reused by a new connection (a new SYN): comparison started afresh.</summary>
    public long ConnectionsReused { get; internal set; }

    /// <summary>
    /// How long released primary frames waited in their queue (the engine's millisecond clock, so a frame released
    /// within the same millisecond counts as 0).
    /// </summary>
    public BucketHistogram QueuedSeconds { get; } = new(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10);

    /// <summary>Primary frames released without comparison (every release reason except <see cref="ReleaseReason.Matched"/>).</summary>
    public long PrimaryReleasedUncompared => PrimaryReleased - _releasedBy[(int)ReleaseReason.Matched];

    public long ReleasedBy(ReleaseReason reason) => _releasedBy[(int)reason];

    public long PrimaryDroppedBy(DropReason reason) => _primaryDroppedBy[(int)reason];

    public long SecondaryDroppedBy(DropReason reason) => _secondaryDroppedBy[(int)reason];

    public long CheckpointRequestsBy(CheckpointReason reason) => _checkpointRequestsBy[(int)reason];

    public long MismatchesBy(CompareProtocol protocol) => _mismatchesBy[(int)protocol];

    internal void CountRelease(ReleaseReason reason)
    {
        PrimaryReleased++;
        _releasedBy[(int)reason]++;
    }

    internal void CountDrop(PacketSide side, DropReason reason)
    {
        if (side == PacketSide.Primary)
        {
            PrimaryDropped++;
            _primaryDroppedBy[(int)reason]++;
        }
        else
        {
            SecondaryDropped++;
            _secondaryDroppedBy[(int)reason]++;
        }
    }

    internal void CountCheckpointRequest(CheckpointReason reason)
    {
        CheckpointRequests++;
        _checkpointRequestsBy[(int)reason]++;
    }

    internal void CountMismatch(CompareProtocol protocol) => _mismatchesBy[(int)protocol]++;
}
