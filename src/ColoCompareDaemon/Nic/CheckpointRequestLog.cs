using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Checkpoints;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Nic;

/// <summary>
/// A NIC's checkpoint requests on their way to its <see cref="ICheckpointChannel"/>: each is sent, remembered for the
/// status command (the last <see cref="Kept"/>), announced, and, when it could not be sent, counted and logged (at
/// the 1st, 2nd, 4th, 8th ... such request, so a monitor that stays away does not flood the log).
/// </summary>
internal sealed class CheckpointRequestLog(ICheckpointChannel channel, NicEvents events, string id, ILogger logger)
{
    /// <summary>Checkpoint requests the status command shows.</summary>
    public const int Kept = 10;

    private readonly Queue<(DateTimeOffset At, CheckpointReason Reason, string Flow, bool Sent)> _recent = new(); // guarded by itself
    private long _unsent;

    /// <summary>Requests that could not be sent (no way to reach QEMU).</summary>
    public long Unsent => Interlocked.Read(ref _unsent);

    /// <summary>The last requests, oldest first.</summary>
    public IReadOnlyList<(DateTimeOffset At, CheckpointReason Reason, string Flow, bool Sent)> Recent
    {
        get
        {
            lock (_recent)
            {
                return [.. _recent];
            }
        }
    }

    /// <summary>Called by the engine (under the NIC's engine lock): the channel only queues, so this never waits.</summary>
    public void Send(CheckpointReason reason, FlowKey flow)
    {
        bool sent = channel.Request(reason, flow);
        string text = flow.ToString();
        lock (_recent)
        {
            _recent.Enqueue((DateTimeOffset.UtcNow, reason, text, sent));
            while (_recent.Count > Kept)
            {
                _recent.Dequeue();
            }
        }

        events.CheckpointRequest(reason, text, sent);
        if (!sent)
        {
            long count = Interlocked.Increment(ref _unsent);
            if ((count & (count - 1)) == 0)
            {
                DaemonLog.CheckpointUnsent(logger, id, reason, count);
            }
        }
    }
}
