namespace ColoChardev.Daemon.Checkpoints;

/// <summary>Where queued packets were flushed at the end of a checkpoint, and what it was.</summary>
/// <param name="Requested">Whether a request of ours was outstanding (else the checkpoint was periodic).</param>
/// <param name="Where">"at the secondary's RESUME" or "at the primary's RESUME ...".</param>
/// <param name="StoppedAt">When the primary stopped (the caller's clock), for the checkpoint's duration.</param>
internal readonly record struct CheckpointFlush(bool Requested, string Where, long StoppedAt);

/// <summary>
/// The checkpoint cycle as the two QMP monitors report it, without I/O and without a clock (times are passed in, in
/// any monotonic unit). A primary STOP is a checkpoint when it is confirmed: the secondary is stopped too (QEMU 11.x
/// sends nothing else, and its checkpoints can be over before query-status answers), MIGRATION_PASS follows (7.2 to
/// 10.x), or query-status says <c>colo</c>. A confirmed checkpoint flushes once, at the secondary's RESUME (it then
/// holds the new state), else at the primary's; never at STOP or MIGRATION_PASS. An unconfirmed STOP/RESUME (an
/// operator's stop and cont) flushes nothing. A flush says whether a request of ours was outstanding (else the
/// checkpoint was periodic); whether a request goes out is not decided here (the engine coalesces, QEMU folds
/// back-to-back requests into one checkpoint). After COLO_EXIT the pair has failed over.
/// </summary>
internal sealed class CheckpointCycle
{
    private Phase _phase;
    private bool _secondaryStopped;
    private bool _requested;
    private long _stoppedAt;

    private enum Phase
    {
        /// <summary>The primary runs.</summary>
        Running,

        /// <summary>The primary stopped; not (yet) known to be a checkpoint.</summary>
        Stopped,

        /// <summary>The primary stopped for a checkpoint that has not flushed yet.</summary>
        InCheckpoint,

        /// <summary>The checkpoint flushed; the primary has not resumed yet.</summary>
        Flushed,
    }

    /// <summary>Whether COLO_EXIT was seen: the pair failed over, and no checkpoint is asked for again.</summary>
    public bool FailedOver { get; private set; }

    /// <summary>Whether a primary STOP is waiting for query-status to say whether it is a checkpoint.</summary>
    public bool AwaitingStatus => _phase == Phase.Stopped;

    /// <summary>A request was sent: the next flush was asked for.</summary>
    public void RequestSent() => _requested = true;

    /// <summary>The primary stopped. True when it needs query-status to tell (<see cref="StatusAnswered"/>).</summary>
    public bool PrimaryStopped(long now)
    {
        if (_phase != Phase.Running)
        {
            return false; // a duplicate
        }

        _stoppedAt = now;
        _phase = _secondaryStopped ? Phase.InCheckpoint : Phase.Stopped;
        return _phase == Phase.Stopped;
    }

    /// <summary>query-status answered after a primary STOP; <c>colo</c> confirms a checkpoint.</summary>
    public void StatusAnswered(string status)
    {
        if (_phase == Phase.Stopped && status == "colo")
        {
            _phase = Phase.InCheckpoint;
        }
    }

    /// <summary>MIGRATION_PASS on the primary: the stop is a checkpoint.</summary>
    public void MigrationPass()
    {
        if (_phase == Phase.Stopped)
        {
            _phase = Phase.InCheckpoint;
        }
    }

    /// <summary>The secondary stopped: with the primary stopped too, that is a checkpoint.</summary>
    public void SecondaryStopped()
    {
        _secondaryStopped = true;
        if (_phase == Phase.Stopped)
        {
            _phase = Phase.InCheckpoint;
        }
    }

    /// <summary>The secondary resumed: the earliest safe flush point of a checkpoint (it loaded the new state).</summary>
    public CheckpointFlush? SecondaryResumed()
    {
        _secondaryStopped = false;
        return _phase == Phase.InCheckpoint ? Flush("at the secondary's RESUME") : null;
    }

    /// <summary>The secondary's monitor is gone: its STOP no longer says anything.</summary>
    public void SecondaryLost() => _secondaryStopped = false;

    /// <summary>
    /// The primary resumed: a checkpoint not flushed yet flushes now (later than the secondary's RESUME, and still
    /// safe); <paramref name="secondaryWatched"/> only words it.
    /// </summary>
    public CheckpointFlush? PrimaryResumed(bool secondaryWatched)
    {
        CheckpointFlush? flush = _phase == Phase.InCheckpoint
            ? Flush(secondaryWatched ? "at the primary's RESUME; the secondary's was not seen" : "at the primary's RESUME")
            : null;
        _phase = Phase.Running;
        return flush;
    }

    /// <summary>COLO_EXIT: the pair failed over.</summary>
    public void ColoExited() => FailedOver = true;

    private CheckpointFlush Flush(string where)
    {
        _phase = Phase.Flushed;
        bool requested = _requested;
        _requested = false;
        return new CheckpointFlush(requested, where, _stoppedAt);
    }
}
