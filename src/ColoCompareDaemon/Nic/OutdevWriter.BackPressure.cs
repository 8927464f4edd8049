using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Configuration;
using ColoChardev.Daemon.Diagnostics;

namespace ColoChardev.Daemon.Nic;

/// <summary>
/// Back-pressure and its fall-back. Reaching <see cref="OutdevLimits.BacklogBytes"/> pauses the input readers
/// (<see cref="WaitForRoomAsync"/>) until half of it is written; a pause in which outdev takes no bytes for
/// <see cref="OutdevLimits.StallMs"/> is a stall: the readers go on and what does not fit is dropped, counted, until
/// outdev takes bytes again. The state lives under <c>_gate</c>; the release path reads <c>_stalled</c> without it.
/// </summary>
internal sealed partial class OutdevWriter
{
    /// <summary>Whether released frames that do not fit are dropped now (outdev stalled).</summary>
    public bool IsStalled => Volatile.Read(ref _stalled);

    /// <summary>Whether the inputs are paused now.</summary>
    public bool IsPaused
    {
        get
        {
            lock (_gate)
            {
                return _room is not null;
            }
        }
    }

    /// <summary>
    /// Back-pressure for the input readers: completes at once while the backlog has room (or outdev is stalled and
    /// drops are allowed); otherwise when outdev has written half the backlog, or stalls.
    /// </summary>
    public ValueTask WaitForRoomAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _backlogBytes) < _limits.BacklogBytes || Volatile.Read(ref _stalled))
        {
            return ValueTask.CompletedTask;
        }

        Task room;
        lock (_gate)
        {
            if (_stalled || Volatile.Read(ref _backlogBytes) < _limits.BacklogBytes)
            {
                return ValueTask.CompletedTask;
            }

            if (_room is null)
            {
                _room = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _pausedSinceMs = Environment.TickCount64;
                Interlocked.Increment(ref _pauses);
                DaemonLog.OutdevPaused(_logger, _nic, BacklogBytes);
                _stallTimer.Change(_limits.StallMs, Timeout.Infinite);
            }

            room = _room.Task;
        }

        return new ValueTask(room.WaitAsync(cancellationToken));
    }

    /// <summary>Outdev took bytes: a stall ends, and readers paused for a full backlog go on once half of it is written.</summary>
    private void Progressed()
    {
        long now = Environment.TickCount64;
        Volatile.Write(ref _lastProgressMs, now);
        if (!Volatile.Read(ref _stalled) && Volatile.Read(ref _room) is null)
        {
            return;
        }

        lock (_gate)
        {
            if (_stalled)
            {
                _stalled = false;
                long dropped = DroppedBy(OutdevDropReason.BacklogFull) - _droppedAtStall;
                DaemonLog.OutdevRecovered(_logger, _nic, now - _stalledSinceMs, dropped);
            }

            if (_room is not null && Volatile.Read(ref _backlogBytes) <= _limits.BacklogBytes / 2)
            {
                ResumeLocked(now);
            }
        }
    }

    /// <summary>The stall timer: outdev took no bytes during the whole pause so far? Then drops are allowed and readers go on.</summary>
    private void CheckStall()
    {
        lock (_gate)
        {
            if (_room is null || _stalled)
            {
                return;
            }

            long now = Environment.TickCount64;
            if (Volatile.Read(ref _restoring))
            {
                // Holding writes on purpose while the redirector is re-created: look again later.
                _stallTimer.Change(_limits.StallMs, Timeout.Infinite);
                return;
            }

            long quietMs = now - Math.Max(_pausedSinceMs, Volatile.Read(ref _lastProgressMs));
            if (quietMs < _limits.StallMs)
            {
                // Outdev moved during the pause, only slowly: keep the back-pressure, look again later.
                _stallTimer.Change(_limits.StallMs - quietMs, Timeout.Infinite);
                return;
            }

            _stalled = true;
            _stalledSinceMs = now;
            _droppedAtStall = DroppedBy(OutdevDropReason.BacklogFull);
            Interlocked.Increment(ref _stalls);
            ChardevConnection? current = Volatile.Read(ref _current);
            string cause = current is null
                ? $"nothing is connected to outdev {_endpoint.Spec.Address}: is the primary QEMU (its compare_out chardev and the filter-redirector reading it) running?"
                : $"its peer {current.Peer} is connected but does not read. QEMU up to 10.2 has a filter-redirector stop reading its indev for good after the indev's peer left once: re-create it (object-del, then object-add before the primary_in redirector), or run the daemon with --restore-redirector";
            DaemonLog.OutdevStalled(_logger, _nic, quietMs, _limits.BacklogBytes, cause);
            ResumeLocked(now);
        }
    }

    private void ResumeReaders()
    {
        lock (_gate)
        {
            ResumeLocked(Environment.TickCount64);
        }
    }

    private void ResumeLocked(long now)
    {
        if (_room is null)
        {
            return;
        }

        Interlocked.Add(ref _pausedMs, now - _pausedSinceMs);
        _stallTimer.Change(Timeout.Infinite, Timeout.Infinite);
        TaskCompletionSource room = _room;
        _room = null;
        room.TrySetResult();
    }
}
