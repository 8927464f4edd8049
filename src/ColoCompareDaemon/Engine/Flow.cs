using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>One flow's queues and comparison state. Flow objects are recycled when flows expire.</summary>
internal sealed class Flow
{
    public FlowId Id;
    public readonly PacketQueue Primary = new();
    public readonly PacketQueue Secondary = new();

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
    }
}
