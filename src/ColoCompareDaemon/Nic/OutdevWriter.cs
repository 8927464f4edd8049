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
internal sealed partial class OutdevWriter : IDisposable
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

    /// <summary>No more batches will come (the final release was enqueued): the writer finishes what it holds.</summary>
    public void Complete()
    {
        _queue.Writer.TryComplete();
        ResumeReaders();
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

    /// <summary>Writes released frames until the queue completes (true) or the connection ends (false).</summary>
    private async Task<bool> PumpAsync(ChardevConnection connection, ChannelReader<Batch> queue)
    {
        // Not cancelled by shutdown: the queue completes instead, after the final release, so everything is written.
        // Nor by the peer leaving: a cancellable wait allocates at every wait (~0.25 B per frame at full rate, the
        // benchmark's allocation figure); the connection's closing wakes the wait with an empty batch instead.
        using CancellationTokenRegistration wake = connection.Closed.UnsafeRegister(static writer => ((OutdevWriter)writer!)._queue.Writer.TryWrite(default), this);
        Batch carried = default;
        while (true)
        {
            if (carried.Frames is null)
            {
                if (connection.IsClosed)
                {
                    // The peer left while nothing was being written: nothing lost, the next peer gets the backlog.
                    return false;
                }

                if (!await queue.WaitToReadAsync().ConfigureAwait(false))
                {
                    return true;
                }

                if (connection.PeerHasLeft())
                {
                    // Gone before we wrote (or the wake-up): what is queued waits for the next peer.
                    return false;
                }
            }

            // Write whole batches up to FlushBytes, then flush: one send per batch in the common case.
            List<Batch> written = _inFlight;
            (long frames, long bytes) = BufferBatches(connection, queue, ref carried, written);
            if (written.Count == 0)
            {
                continue; // only wake-ups were queued
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

    /// <summary>
    /// Puts whole batches into the connection's writer, up to <see cref="FlushBytes"/>, skipping wake-ups:
    /// <paramref name="carried"/> first (a batch read but not written yet), then what the queue holds.
    /// </summary>
    private static (long Frames, long Bytes) BufferBatches(ChardevConnection connection, ChannelReader<Batch> queue, ref Batch carried, List<Batch> written)
    {
        long frames = 0;
        long bytes = 0;
        while (bytes < FlushBytes && (carried.Frames is not null || queue.TryRead(out carried)))
        {
            if (carried.Frames is null)
            {
                continue; // a wake-up: nothing to write
            }

            foreach (ChardevFrame frame in carried.Frames)
            {
                connection.Writer.Write(frame);
            }

            frames += carried.Frames.Count;
            bytes += carried.Bytes;
            written.Add(carried);
            carried = default;
        }

        return (frames, bytes);
    }

    private void Discard(Batch batch, OutdevDropReason reason)
    {
        if (batch.Frames is null)
        {
            return; // a wake-up
        }

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

    /// <summary>What one engine call released, with its total size and when it was released; no frames (default) is a pump's wake-up.</summary>
    private readonly record struct Batch(List<ChardevFrame> Frames, long Bytes, long ReleasedMs);
}
