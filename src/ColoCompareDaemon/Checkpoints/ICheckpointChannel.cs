using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;

namespace ColoChardev.Daemon.Checkpoints;

/// <summary>
/// How a NIC asks its QEMU for a checkpoint: over QMP (<see cref="QmpCheckpointChannel"/>, shared by the NICs of one
/// VM) or over the NIC's own notify_dev (<see cref="XenNotifyChannel"/>). The channel reports back to the
/// <see cref="ICheckpointTarget"/> it serves. Requests arrive already coalesced: the engine asks once per divergence
/// until a checkpoint completes or compare_timeout passes (the one place that coalesces; see docs/architecture.md).
/// </summary>
internal interface ICheckpointChannel
{
    /// <summary>Sends (or queues) a request; false when there is no way to send one (the NIC counts and logs it).</summary>
    bool Request(CheckpointReason reason, FlowKey flow);
}

/// <summary>What a checkpoint channel tells the NIC it serves. Called from the channel's own loop, never under a lock of the NIC's.</summary>
internal interface ICheckpointTarget
{
    /// <summary>The NIC's id (QEMU's colo-compare object id), for logs.</summary>
    string Id { get; }

    /// <summary>A checkpoint completed: the secondary holds the primary's state, so the queues may be flushed.</summary>
    void CheckpointCompleted(CheckpointCompletion completion);

    /// <summary>COLO is over (COLO_EXIT): release everything and pass primary traffic through from now on.</summary>
    void FailedOver(ColoExit exit);
}

/// <summary>A completed checkpoint as the NIC reports it.</summary>
/// <param name="Flushed">Where it was seen, in the words of the event and the log ("requested, at the secondary's RESUME").</param>
/// <param name="StoppedMs">How long the primary was stopped, when known.</param>
internal readonly record struct CheckpointCompletion(string Flushed, double? StoppedMs = null);

/// <summary>
/// QEMU's <c>COLO_EXIT</c> as the NICs report it: the event's own words for which side failed over (QAPI's
/// COLOMode) and why (COLOExitReason), "?" when its data could not be read. Nothing branches on them: failover is
/// failover whatever they say, so they stay QEMU's words (a later QEMU's new reason is shown as it is).
/// </summary>
internal readonly record struct ColoExit(string Mode, string Reason)
{
    /// <summary>A COLO_EXIT whose data could not be read.</summary>
    public static ColoExit Unreadable { get; } = new("?", "?");
}
