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

/// <summary>QEMU's <c>COLO_EXIT</c>: which side failed over, and why (QAPI's COLOMode and COLOExitReason).</summary>
internal readonly record struct ColoExit(ColoMode Mode, ColoExitReason Reason)
{
    /// <summary>From the event's strings; what QEMU may add later reads as <c>Unknown</c>.</summary>
    public static ColoExit Parse(string? mode, string? reason) => new(
        mode switch { "none" => ColoMode.None, "primary" => ColoMode.Primary, "secondary" => ColoMode.Secondary, _ => ColoMode.Unknown },
        reason switch { "none" => ColoExitReason.None, "request" => ColoExitReason.Request, "error" => ColoExitReason.Error, "processing" => ColoExitReason.Processing, _ => ColoExitReason.Unknown });

    /// <summary>QAPI's spelling, or "?" for an event whose data could not be read.</summary>
    public string ModeText => Mode == ColoMode.Unknown ? "?" : Mode.ToString().ToLowerInvariant();

    /// <inheritdoc cref="ModeText"/>
    public string ReasonText => Reason == ColoExitReason.Unknown ? "?" : Reason.ToString().ToLowerInvariant();
}

/// <summary>QAPI's COLOMode, as COLO_EXIT reports it.</summary>
internal enum ColoMode : byte
{
    Unknown,
    None,
    Primary,
    Secondary,
}

/// <summary>QAPI's COLOExitReason.</summary>
internal enum ColoExitReason : byte
{
    Unknown,
    None,
    Request,
    Error,
    Processing,
}
