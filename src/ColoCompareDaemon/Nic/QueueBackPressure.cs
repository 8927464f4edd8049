using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Nic;

/// <summary>
/// Back-pressure from the engine's queue budget, before its drops. From three quarters of
/// <see cref="CompareOptions.QueueBudgetBytes"/> the input that is ahead (holds more queued bytes) is no longer read
/// until the queues are down to half: its writer blocks (QEMU's redirector waits, and so does that guest) while the
/// other input is read and matches drain the queues. The primary comes first: when it is ahead while the secondary is
/// paused, the secondary goes on, so that at worst secondary frames reach the budget (a drop that costs a
/// checkpoint, never traffic).
/// </summary>
/// <remarks>
/// A redirector that waits on us blocks its QEMU's main loop, and with it that QEMU's QMP monitor and any checkpoint
/// (measured on QEMU 7.2 with the real pair: a checkpoint request sent during a pause was answered only when reading
/// resumed). So nothing is paused while a checkpoint is outstanding, a request resumes a paused input at once, and
/// a pause in which the paused input's queued bytes do not shrink for <see cref="CompareOptions.QueueStallMs"/> (a
/// peer that sends nothing, a flow whose bytes the secondary will never send) is a stall: a checkpoint is requested,
/// which empties the queues, reading resumes, and until they are down to half the budget's drops apply.
/// Every method but the stall timer's is called under the pipeline's engine lock, which the timer takes too; the
/// counters are read from any thread. <see cref="Changed"/> runs after every engine call and costs one field read
/// while nothing is paused or stalled.
/// </remarks>
internal sealed class QueueBackPressure : IDisposable
{
    private readonly Lock _engineLock;
    private readonly CompareEngine _engine;
    private readonly ILogger _logger;
    private readonly string _nic;
    private readonly Timer _stallTimer;
    private readonly Side _primary = new(PacketSide.Primary);
    private readonly Side _secondary = new(PacketSide.Secondary);
    private bool _engaged; // a side is paused or stalled: Changed has work to do

    public QueueBackPressure(Lock engineLock, CompareEngine engine, string nic, ILogger logger)
    {
        _engineLock = engineLock;
        _engine = engine;
        _nic = nic;
        _logger = logger;
        _stallTimer = new Timer(_ => CheckStalls(), null, Timeout.Infinite, Timeout.Infinite);
    }

    /// <summary>Times reading an input was paused for the queue budget.</summary>
    public long Pauses(PacketSide side) => Interlocked.Read(ref Of(side).Pauses);

    /// <summary>Milliseconds an input spent paused for the queue budget (the current pause excluded).</summary>
    public long PausedMs(PacketSide side) => Interlocked.Read(ref Of(side).PausedMs);

    /// <summary>Pauses that ended because the paused input's queue did not shrink for <see cref="CompareOptions.QueueStallMs"/>.</summary>
    public long Stalls(PacketSide side) => Interlocked.Read(ref Of(side).Stalls);

    /// <summary>
    /// After a batch of <paramref name="side"/>'s frames went into the engine (under the engine lock): the task the
    /// next read of that input waits for, or null to read on.
    /// </summary>
    public Task? AfterFrames(PacketSide side, long nowMs)
    {
        Side s = Of(side);
        long used = _engine.BudgetUsedBytes;
        long budget = _engine.Options.QueueBudgetBytes;
        if (s.Stalled || s.Room is not null || used < budget - budget / 4 || _engine.IsPassingThrough
            || _engine.CheckpointOutstanding || _engine.Options.QueueStallMs == 0)
        {
            return s.Room?.Task;
        }

        long primary = _engine.Counters.PrimaryQueuedBytes;
        long secondary = _engine.Counters.QueuedBytes - primary;
        if (side == PacketSide.Primary ? primary < secondary : secondary <= primary || _primary.Room is not null)
        {
            return null;
        }

        if (side == PacketSide.Primary && _secondary.Room is not null)
        {
            // The secondary's frames are what drains a primary that is ahead: it must be read.
            Resume(_secondary, nowMs);
        }

        s.Room = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        s.PausedSinceMs = nowMs;
        s.LastProgressMs = nowMs;
        s.BytesAtProgress = side == PacketSide.Primary ? primary : secondary;
        Interlocked.Increment(ref s.Pauses);
        _engaged = true;
        DaemonLog.QueuePaused(_logger, _nic, s.Chardev, used, budget);
        try
        {
            _stallTimer.Change(_engine.Options.QueueStallMs, Timeout.Infinite);
        }
        catch (ObjectDisposedException)
        {
            // Frames still arriving while the NIC is disposed: no pause then.
            Resume(s, nowMs);
        }

        return s.Room?.Task;
    }

    /// <summary>
    /// After any engine call (under the engine lock): a paused input goes on once the queues are down to half, or at
    /// once when a checkpoint is outstanding (QEMU needs its main loop for it); its queue shrinking is progress.
    /// </summary>
    public void Changed(long nowMs)
    {
        if (!_engaged)
        {
            return;
        }

        bool down = _engine.BudgetUsedBytes <= _engine.Options.QueueBudgetBytes / 2 || _engine.IsPassingThrough;
        if (_engine.CheckpointOutstanding && !down)
        {
            Resume(_primary, nowMs);
            Resume(_secondary, nowMs);
        }

        long primary = _engine.Counters.PrimaryQueuedBytes;
        Note(_primary, primary, down, nowMs);
        Note(_secondary, _engine.Counters.QueuedBytes - primary, down, nowMs);
        _engaged = _primary.Engaged || _secondary.Engaged;
    }

    public void Dispose() => _stallTimer.Dispose();

    private Side Of(PacketSide side) => side == PacketSide.Primary ? _primary : _secondary;

    private static void Note(Side s, long bytes, bool down, long nowMs)
    {
        if (down)
        {
            s.Stalled = false;
            Resume(s, nowMs);
        }
        else if (s.Room is not null && bytes < s.BytesAtProgress)
        {
            s.BytesAtProgress = bytes;
            s.LastProgressMs = nowMs;
        }
    }

    /// <summary>The stall timer: a paused input whose queue did not shrink for QueueStallMs goes on, a checkpoint is requested, and the budget's drops apply.</summary>
    private void CheckStalls()
    {
        lock (_engineLock)
        {
            long now = Environment.TickCount64;
            long stallMs = _engine.Options.QueueStallMs;
            long next = Timeout.Infinite;
            foreach (Side s in (ReadOnlySpan<Side>)[_primary, _secondary])
            {
                if (s.Room is null)
                {
                    continue;
                }

                long quietMs = now - s.LastProgressMs;
                if (quietMs < stallMs)
                {
                    next = next == Timeout.Infinite ? stallMs - quietMs : Math.Min(next, stallMs - quietMs);
                    continue;
                }

                s.Stalled = true;
                _engaged = true;
                Interlocked.Increment(ref s.Stalls);
                DaemonLog.QueueStalled(_logger, _nic, s.Chardev, quietMs, now - s.PausedSinceMs);
                Resume(s, now);
                _engine.OnQueueStalled(now);
            }

            try
            {
                _stallTimer.Change(next, Timeout.Infinite);
            }
            catch (ObjectDisposedException)
            {
                // The NIC is stopping (its shutdown resumed the readers already): nothing to look at again.
            }
        }
    }

    private static void Resume(Side s, long nowMs)
    {
        if (s.Room is not TaskCompletionSource room)
        {
            return;
        }

        Interlocked.Add(ref s.PausedMs, nowMs - s.PausedSinceMs);
        s.Room = null;
        room.TrySetResult();
    }

    /// <summary>One input's pause state (under the engine lock) and counters.</summary>
    private sealed class Side(PacketSide which)
    {
        public readonly string Chardev = which == PacketSide.Primary ? "primary_in" : "secondary_in";
        public TaskCompletionSource? Room;
        public long PausedSinceMs;
        public long LastProgressMs;
        public long BytesAtProgress;
        public bool Stalled;
        public long Pauses;
        public long PausedMs;
        public long Stalls;

        public bool Engaged => Room is not null || Stalled;
    }
}
