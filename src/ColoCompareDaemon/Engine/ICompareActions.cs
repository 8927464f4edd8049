using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>
/// What the engine decides, handed to whoever does the I/O. Each call that passes a frame passes its ownership:
/// the receiver disposes it (after writing it to outdev, capturing it, or simply discarding it).
/// </summary>
public interface ICompareActions
{
    /// <summary>Send this primary frame to outdev, exactly as received.</summary>
    void Release(ChardevFrame frame, ReleaseReason reason);

    /// <summary>This frame is not sent anywhere.</summary>
    void Drop(ChardevFrame frame, PacketSide side, DropReason reason);

    /// <summary>Ask the primary QEMU for a checkpoint. Already coalesced: one request until a checkpoint completes.</summary>
    void RequestCheckpoint(CheckpointReason reason, FlowKey flow);

    /// <summary>
    /// A flow diverged: every mismatch, and every timeout or full queue that makes a checkpoint request. Called before
    /// the request; <paramref name="divergence"/> is a view of the flow's queues for this call only (for captures).
    /// </summary>
    void Diverged(Divergence divergence);
}
