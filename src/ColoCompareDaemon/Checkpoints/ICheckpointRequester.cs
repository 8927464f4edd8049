using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.Daemon.Hosting;

namespace ColoChardev.Daemon.Checkpoints;

/// <summary>Where a NIC's engine sends its (already coalesced) checkpoint requests.</summary>
internal interface ICheckpointRequester
{
    /// <summary>Queues a request; false when there is no way to send one (it is then counted and logged by the NIC).</summary>
    bool RequestCheckpoint(ComparedNic nic, CheckpointReason reason, FlowKey flow);

    /// <summary>
    /// Re-creates the primary's outdev redirector over QMP (now, or once the monitor is connected). The task completes
    /// when it is done (or failed, logged); the outdev writer holds its first write until then, so that no redirector is
    /// ever deleted in the middle of a frame. A cancelled <paramref name="abandon"/> drops a restore not yet begun.
    /// </summary>
    Task RestoreRedirectorAsync(ComparedNic nic, RedirectorRestore restore, string outdevLocalAddress, CancellationToken abandon);
}
