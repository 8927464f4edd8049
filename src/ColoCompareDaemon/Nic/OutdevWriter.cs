using System.Diagnostics;
using System.Threading.Channels;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.Daemon.Configuration;
using ColoChardev.Daemon.Diagnostics;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Nic;

/// <summary>Why a released primary frame never reached outdev.</summary>
public enum OutdevDropReason : byte
{
    /// <summary>Outdev had taken no bytes for <c>--outdev-stall-ms</c> and the backlog was full.</summary>
    BacklogFull,

    /// <summary>It waited longer than <c>--outdev-hold-ms</c> while no outdev peer was connected.</summary>
    Expired,

    /// <summary>It was in a write that failed: the peer left while we wrote, so it may or may not have arrived.</summary>
    WriteFailed,

    /// <summary>The daemon stopped with no outdev peer to take it.</summary>
    Shutdown,
}

/// <summary>
/// Released frames on their way to outdev: a backlog bounded in bytes, back-pressure on the inputs while it is full,
/// a fallback to counted drops when outdev stops taking bytes, and one connection after another to outdev, each
/// watched so that a peer that left is seen at once, whether or not frames are flowing.
/// </summary>
/// <remarks>
/// While outdev has no peer, released frames wait in the backlog for the next one for at most
/// <see cref="OutdevLimits.HoldMs"/> (QEMU's socket chardev discards what is written while it is disconnected; a
/// returning redirector gets the last moments' traffic instead, and never stale frames). Memory stays bounded: while
/// the inputs are paused, nothing new is read, so releases only move frames from the engine's queues (whose budget
/// bounds them) into the backlog; once stalled, the backlog's own limit holds.
/// </remarks>
internal sealed class OutdevWriter : IDisposable
{
    /// <summary>Bytes written per flush: also the granularity at which progress is seen.</summary>
    private const int FlushBytes = 64 * 1024;

    /// <summary>Empty batch lists kept for reuse (a backlog of this many batches costs no allocation when it drains).</summary>
    private const int SpareBatchesKept = 1024;

    private readonly ChardevEndpoint _endpoint;
    private readonly OutdevLimits _limits;
    private readonly long _hardLimitBytes;
    private readonly ILogger _logger;
    private readonly string _nic;
    private readonly Func<ChardevConnection, bool, CancellationToken, Task> _connected;

    /// <summary>How long a new outdev connection waits for its redirector to be restored before writing anyway.</summary>
    private static readonly TimeSpan RestoreWait = TimeSpan.FromSeconds(15);

    private bool _restoring; // a new connection waits for its redirector to be re-created: not a stall
    // AllowSynchronousContinuations: a waiting pump continues inside Enqueue (under the engine lock, so batches stay
    // in release order) and sends at once; a send that would block returns to the caller at once.
    private readonly Channel<Batch> _queue = Channel.CreateUnbounded<Batch>(new UnboundedChannelOptions { SingleReader = true, AllowSynchronousContinuations = true });
    private readonly System.Collections.Concurrent.ConcurrentQueue<List<ChardevFrame>> _spareBatches = new();
    private readonly long[] _dropped = new long[Enum.GetValues<OutdevDropReason>().Length];
    private readonly Lock _gate = new();
    private readonly Timer _stallTimer;
    private TaskCompletionSource? _room; // guarded by _gate: readers wait on it while the backlog is full
    private long _pausedSinceMs; // guarded by _gate
    private bool _stalled; // written under _gate, read without it on the release path
    private long _stalledSinceMs; // guarded by _gate
    private long _lastProgressMs;
    private long _backlogBytes;
    private long _backlogFrames;
    private long _written;
    private long _writtenBeforeConnection;
    private long _pauses;
    private long _pausedMs;
    private long _stalls;
    private long _droppedAtStall;
    private ChardevConnection? _current;
    private readonly List<Batch> _inFlight = []; // the pump's: batches in the flush under way

    /// <param name="connected">Called with each new connection (true for the first).</param>
    public OutdevWriter(ChardevEndpoint endpoint, OutdevLimits limits, long queueBudgetBytes, string nic, ILogger logger, Func<ChardevConnection, bool, CancellationToken, Task> connected)
    {
        _endpoint = endpoint;
        _limits = limits;
        _hardLimitBytes = limits.BacklogBytes + queueBudgetBytes;
        _nic = nic;
        _logger = logger;
        _connected = connected;
        _lastProgressMs = Environment.TickCount64;
        _stallTimer = new Timer(_ => CheckStall(), null, Timeout.Infinite, Timeout.Infinite);
    }

    public long Written => Interlocked.Read(ref _written);

    public long BacklogBytes => Interlocked.Read(ref _backlogBytes);

    public long BacklogFrames => Interlocked.Read(ref _backlogFrames);

    /// <summary>Times the inputs were paused because outdev lagged by a full backlog.</summary>
    public long Pauses => Interlocked.Read(ref _pauses);

    /// <summary>Milliseconds the inputs spent paused, in all (the current pause excluded).</summary>
    public long PausedMs => Interlocked.Read(ref _pausedMs);

    /// <summary>Times outdev took no bytes for <see cref="OutdevLimits.StallMs"/> and drops were allowed.</summary>
    public long Stalls => Interlocked.Read(ref _stalls);

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

    public long DroppedBy(OutdevDropReason reason) => Interlocked.Read(ref _dropped[(int)reason]);

    /// <summary>Released frames dropped before a write: the backlog was full while outdev stalled, or they expired waiting for a peer.</summary>
    public long DroppedBeforeWrite => DroppedBy(OutdevDropReason.BacklogFull) + DroppedBy(OutdevDropReason.Expired);

    /// <summary>Released frames in a write that failed, or still held when the daemon stopped without an outdev peer.</summary>
    public long Lost => DroppedBy(OutdevDropReason.WriteFailed) + DroppedBy(OutdevDropReason.Shutdown);


    /// <summary>
    /// Whether a released frame of <paramref name="frameBytes"/> may join the backlog, given <paramref name="pendingBytes"/>
    /// released in this engine call and not yet enqueued. Called under the engine lock; false means drop it
    /// (<see cref="Drop"/>).
    /// </summary>
    public bool Admits(long frameBytes, long pendingBytes)
    {
        long held = Volatile.Read(ref _backlogBytes) + pendingBytes + frameBytes;
        return held <= (Volatile.Read(ref _stalled) ? _limits.BacklogBytes : _hardLimitBytes);
    }

    /// <summary>A released frame that cannot be held: counted and disposed.</summary>
    public void Drop(ChardevFrame frame, OutdevDropReason reason)
    {
        long dropped = Interlocked.Increment(ref _dropped[(int)reason]);
        frame.Dispose();
        if (reason == OutdevDropReason.BacklogFull && (dropped & (dropped - 1)) == 0)
        {
            // Logged at 1, 2, 4, 8, ... drops: visible without flooding.
            DaemonLog.OutdevBacklogFull(_logger, _nic, BacklogBytes, dropped);
        }
    }

    /// <summary>Hands a batch of released frames (one engine call's) to the writer. Called under the engine lock.</summary>
    public void Enqueue(List<ChardevFrame> frames, long bytes)
    {
        Interlocked.Add(ref _backlogBytes, bytes);
        Interlocked.Add(ref _backlogFrames, frames.Count);
        if (!_queue.Writer.TryWrite(new Batch(frames, bytes, Environment.TickCount64)))
        {
            // Only after shutdown completed the queue: nothing will write these any more.
            Discard(new Batch(frames, bytes, 0), OutdevDropReason.Shutdown);
        }
    }

    /// <summary>A list for the next batch (recycled from written ones).</summary>
    public List<ChardevFrame> RentBatch() => _spareBatches.TryDequeue(out List<ChardevFrame>? spare) ? spare : new List<ChardevFrame>(256);

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

    /// <summary>No more batches will come (the final release was enqueued): the writer finishes what it holds.</summary>
    public void Complete()
    {
        _queue.Writer.TryComplete();
        ResumeReaders();
    }

    /// <summary>Writes released frames to outdev, connection after connection, until <see cref="Complete"/> and the backlog is written.</summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        ChannelReader<Batch> queue = _queue.Reader;
        bool first = true;
        while (!queue.Completion.IsCompleted)
        {
            ChardevConnection connection;
            try
            {
                connection = await ConnectExpiringAsync(queue, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            Interlocked.Exchange(ref _writtenBeforeConnection, _endpoint.Statistics.BytesWritten);
            Volatile.Write(ref _current, connection);
            _ = connection.WatchForPeerLeavingAsync();
            await WaitForRedirectorAsync(connection, first).ConfigureAwait(false);
            first = false;
            await using (connection.ConfigureAwait(false))
            {
                bool done = await PumpAsync(connection, queue).ConfigureAwait(false);
                Volatile.Write(ref _current, null);
                if (done)
                {
                    return;
                }
            }
        }
    }

    /// <summary>
    /// Before the first write on a new connection: with <c>--restore-redirector</c>, the redirector behind outdev is
    /// re-created first, and deleting a redirector in the middle of a frame leaves its successor reading from
    /// mid-frame: QEMU calls that an oversized packet and stops reading for good (the soak run found it). So nothing is
    /// written until that re-creation is done (a second one, if any, only ever replaces a redirector that has read
    /// nothing of this connection); meanwhile frames wait in the backlog, back-pressure applies, and it is not a stall.
    /// </summary>
    private async Task WaitForRedirectorAsync(ChardevConnection connection, bool first)
    {
        using var abandon = CancellationTokenSource.CreateLinkedTokenSource(connection.Closed);
        Task restored = _connected(connection, first, abandon.Token);
        if (restored.IsCompleted)
        {
            return;
        }

        Volatile.Write(ref _restoring, true);
        try
        {
            await restored.WaitAsync(RestoreWait, connection.Closed).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            // Not restored in time (no QMP monitor?) or the peer left: write anyway, and never re-create it later.
            await abandon.CancelAsync().ConfigureAwait(false);
        }
        finally
        {
            // Quiet time spent waiting for the restore does not count towards a stall: outdev's clock starts now.
            Volatile.Write(ref _lastProgressMs, Environment.TickCount64);
            Volatile.Write(ref _restoring, false);
        }
    }

    /// <summary>
    /// Whether the current outdev peer has read nothing at all of what this connection wrote (bytes written, and all of
    /// them still unread): the sign of QEMU's deaf redirector. Null when there is no connection or it cannot be told.
    /// </summary>
    public bool? PeerReadNothing()
    {
        ChardevConnection? current = Volatile.Read(ref _current);
        if (current is null)
        {
            return null;
        }

        long written = _endpoint.Statistics.BytesWritten - Interlocked.Read(ref _writtenBeforeConnection);
        int unread = current.UnreadByPeer();
        return unread < 0 ? null : written > 0 && unread >= written;
    }

    /// <summary>What is still held when the daemon exits (outdev was gone) is counted, never silently lost.</summary>
    public void Dispose()
    {
        _queue.Writer.TryComplete();
        while (_queue.Reader.TryRead(out Batch batch))
        {
            Discard(batch, OutdevDropReason.Shutdown);
        }

        _stallTimer.Dispose();
    }

    /// <summary>Waits for the next outdev peer; meanwhile frames held longer than <see cref="OutdevLimits.HoldMs"/> are dropped.</summary>
    private async Task<ChardevConnection> ConnectExpiringAsync(ChannelReader<Batch> queue, CancellationToken stopping)
    {
        Task<ChardevConnection> connecting = _endpoint.ConnectAsync(stopping).AsTask();
        while (!connecting.IsCompleted)
        {
            Expire(queue);
            if (queue.Completion.IsCompleted)
            {
                // Shutting down with nothing left to write: no peer to wait for.
                throw new OperationCanceledException("the outdev queue is complete and empty");
            }

            await Task.WhenAny(connecting, queue.Completion, Task.Delay(100, stopping)).ConfigureAwait(false);
        }

        ChardevConnection connection = await connecting.ConfigureAwait(false);
        Expire(queue);
        return connection;
    }

    private void Expire(ChannelReader<Batch> queue)
    {
        long now = Environment.TickCount64;
        long expired = 0;
        while (queue.TryPeek(out Batch head) && now - head.ReleasedMs > _limits.HoldMs && queue.TryRead(out Batch old))
        {
            expired += old.Frames.Count;
            Discard(old, OutdevDropReason.Expired);
        }

        if (expired > 0)
        {
            DaemonLog.OutdevExpired(_logger, _nic, expired, _limits.HoldMs);
            // Room again: the readers may go on.
            if (Volatile.Read(ref _backlogBytes) < _limits.BacklogBytes / 2)
            {
                ResumeReaders();
            }
        }
    }

    /// <summary>Writes released frames until the queue completes (true) or the connection ends (false).</summary>
    private async Task<bool> PumpAsync(ChardevConnection connection, ChannelReader<Batch> queue)
    {
        // Not cancelled by shutdown: the queue completes instead, after the final release, so everything is written.
        Batch carried = default;
        while (true)
        {
            if (carried.Frames is null)
            {
                try
                {
                    if (!await queue.WaitToReadAsync(connection.Closed).ConfigureAwait(false))
                    {
                        return true;
                    }
                }
                catch (OperationCanceledException)
                {
                    // The peer left while nothing was being written: nothing lost, the next peer gets the backlog.
                    return false;
                }
            }

            if (carried.Frames is null && connection.PeerHasLeft())
            {
                // Gone before we wrote: what is queued waits for the next peer.
                return false;
            }

            // Write whole batches up to FlushBytes, then flush: one send per batch in the common case.
            long frames = 0;
            long bytes = 0;
            List<Batch> written = _inFlight;
            while (bytes < FlushBytes && (carried.Frames is not null || queue.TryRead(out carried)))
            {
                foreach (ChardevFrame frame in carried.Frames!)
                {
                    connection.Writer.Write(frame);
                }

                frames += carried.Frames!.Count;
                bytes += carried.Bytes;
                written.Add(carried);
                carried = default;
            }

            if (!await connection.Writer.FlushAsync(connection.Closed).ConfigureAwait(false))
            {
                // The peer left in the middle of this write: these frames may or may not have reached it.
                foreach (Batch batch in written)
                {
                    Discard(batch, OutdevDropReason.WriteFailed);
                }

                written.Clear();

                DaemonLog.OutdevWriteFailed(_logger, _nic, frames);
                return false;
            }

            foreach (Batch batch in written)
            {
                Recycle(batch);
            }

            written.Clear();

            Interlocked.Add(ref _written, frames);
            Interlocked.Add(ref _backlogBytes, -bytes);
            Interlocked.Add(ref _backlogFrames, -frames);
            Progressed();
        }
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

    private void Discard(Batch batch, OutdevDropReason reason)
    {
        foreach (ChardevFrame frame in batch.Frames)
        {
            frame.Dispose();
        }

        Interlocked.Add(ref _dropped[(int)reason], batch.Frames.Count);
        Interlocked.Add(ref _backlogBytes, -batch.Bytes);
        Interlocked.Add(ref _backlogFrames, -batch.Frames.Count);
        batch.Frames.Clear();
    }

    private void Recycle(Batch batch)
    {
        foreach (ChardevFrame frame in batch.Frames)
        {
            frame.Dispose();
        }

        batch.Frames.Clear();
        if (_spareBatches.Count < SpareBatchesKept)
        {
            _spareBatches.Enqueue(batch.Frames);
        }
    }

    /// <summary>What one engine call released, with its total size and when it was released.</summary>
    private readonly record struct Batch(List<ChardevFrame> Frames, long Bytes, long ReleasedMs);
}
