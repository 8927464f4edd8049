using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>One flow's queues and comparison state. Flow objects are recycled when flows expire.</summary>
internal sealed class Flow(QueueArrayPool arrays)
{
    public FlowId Id;
    public readonly PacketQueue Primary = new(arrays);
    public readonly PacketQueue Secondary = new(arrays);

    /// <summary>Position in the engine's flow list (for O(1) removal).</summary>
    public int Index;

    public long LastActivityMs;

    /// <summary>Outputs differ: everything is held until a checkpoint completes.</summary>
    public bool Diverged;

    /// <summary>TCP: bytes before this sequence number have been compared (or released by a checkpoint).</summary>
    public uint ComparedSeq;

    public bool HasComparedSeq;

    /// <summary>TCP: the highest (wrap-aware) ACK number the secondary has sent.</summary>
    public uint SecondaryAck;

    public bool HasSecondaryAck;

    /// <summary>Arrival number of the latest secondary packet of this flow (queued or not).</summary>
    public long LastSecondaryOrder = -1;

    /// <summary>TCP: the control bits (SYN, FIN, RST) the secondary has sent on this flow.</summary>
    public TcpControlBits SecondaryControl;

    public bool PrimaryClosed;
    public bool SecondaryClosed;
    public bool Reset;

    /// <summary>Why the flow is <see cref="Diverged"/> (re-requested with this reason at each scan).</summary>
    public CheckpointReason DivergedReason;

    /// <summary>TCP: where comparison of this flow began; bytes before it were never compared (see <see cref="CheckpointReason.Uncomparable"/>).</summary>
    public uint CompareStartSeq;

    public bool HasCompareStart;

    /// <summary>TCP connection reuse: each side's SYN sequence number and whether the side has sent anything on this flow.</summary>
    public uint PrimarySyn;
    public uint SecondarySyn;
    public bool HasPrimarySyn;
    public bool HasSecondarySyn;
    public bool PrimarySeen;
    public bool SecondarySeen;

    /// <summary>
    /// TCP: a new connection on this 4-tuple started on the other side; until this side's own SYN arrives, its packets
    /// are the old connection's last ones and go to <see cref="Previous"/>.
    /// </summary>
    public bool PrimaryAwaitingSyn;
    public bool SecondaryAwaitingSyn;

    /// <summary>The old connection's flow, retired (out of the table) while its last packets are compared.</summary>
    public Flow? Previous;

    /// <summary>For a retired flow: the flow of the connection that replaced it.</summary>
    public Flow? Successor;

    /// <summary>Replaced by a new connection on the same 4-tuple: no longer in the table, forgotten once empty and quiet.</summary>
    public bool Retired;

    public bool IsEmpty => Primary.Count == 0 && Secondary.Count == 0;

    public CompareProtocol Protocol => Id.Protocol;

    public void Start(in FlowId id, long nowMs)
    {
        Id = id;
        LastActivityMs = nowMs;
        Diverged = false;
        ComparedSeq = 0;
        HasComparedSeq = false;
        SecondaryAck = 0;
        HasSecondaryAck = false;
        LastSecondaryOrder = -1;
        SecondaryControl = TcpControlBits.None;
        PrimaryClosed = false;
        SecondaryClosed = false;
        Reset = false;
        DivergedReason = CheckpointReason.Mismatch;
        CompareStartSeq = 0;
        HasCompareStart = false;
        PrimarySyn = 0;
        SecondarySyn = 0;
        HasPrimarySyn = false;
        HasSecondarySyn = false;
        PrimarySeen = false;
        SecondarySeen = false;
        PrimaryAwaitingSyn = false;
        SecondaryAwaitingSyn = false;
        Previous = null;
        Successor = null;
        Retired = false;
    }
}
