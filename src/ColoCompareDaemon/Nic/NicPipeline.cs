using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.ChardevProtocol.Endpoints;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Nic;

/// <summary>
/// Where one NIC's frames are compared: the <see cref="CompareEngine"/> under a lock, fed by the two reading loops
/// (in their threads) and the clock, and its actions. Released frames join a batch that is handed to the
/// <see cref="OutdevWriter"/> once per engine call, or every 256 KiB within one (a list append per frame on the hot
/// path); dropped frames are disposed; checkpoint requests go to the <see cref="CheckpointRequestLog"/>, divergences
/// to the <see cref="DivergenceReporter"/>. Nothing here does I/O or waits, except the readers' back-pressure between reads:
/// the queue budget's (<see cref="QueueBackPressure"/>), then outdev's.
/// </summary>
internal sealed class NicPipeline : ICompareActions, IDisposable
{
    /// <summary>Released bytes after which a batch is handed to outdev within the engine call (one socket read's worth).</summary>
    private const int MaxBatchBytes = 256 * 1024;

    private readonly Lock _engineLock = new();
    private readonly CompareEngine _engine;
    private readonly OutdevWriter _outdev;
    private readonly CheckpointRequestLog _requests;
    private readonly DivergenceReporter _divergences;
    private readonly QueueBackPressure _pressure;
    private List<ChardevFrame> _releasing; // guarded by _engineLock
    private long _releasingBytes; // guarded by _engineLock
    private PeriodicTimer? _tick;

    public NicPipeline(CompareOptions options, OutdevWriter outdev, CheckpointRequestLog requests, DivergenceReporter divergences, string nic, ILogger logger)
    {
        _outdev = outdev;
        _requests = requests;
        _divergences = divergences;
        _releasing = outdev.RentBatch();
        _engine = new CompareEngine(options, this);
        _pressure = new QueueBackPressure(_engineLock, _engine, nic, logger);
    }

    /// <summary>The queue budget's back-pressure on the inputs: pauses and stalls.</summary>
    public QueueBackPressure QueuePressure => _pressure;

    /// <summary>The engine's accounting (readable from any thread).</summary>
    public CompareCounters Counters => _engine.Counters;

    /// <summary>Where a reading loop hands its frames: compared, then the next read waits while outdev lags by a full backlog.</summary>
    public IChardevFrameSink SinkFor(PacketSide side) => new EngineSink(this, side);

    /// <summary>Runs <paramref name="change"/> on the engine under its lock, then hands over what it released.</summary>
    public T Change<T>(Func<CompareEngine, T> change)
    {
        ArgumentNullException.ThrowIfNull(change);
        lock (_engineLock)
        {
            T result = change(_engine);
            Settle(Environment.TickCount64);
            return result;
        }
    }

    /// <summary>A checkpoint completed: everything queued is released (primary) or discarded (secondary); returns how much.</summary>
    public (long Released, long Discarded) CheckpointCompleted() => Change(engine =>
    {
        CompareCounters c = engine.Counters;
        long releasedBefore = c.ReleasedBy(ReleaseReason.Checkpoint);
        long discardedBefore = c.SecondaryDroppedBy(DropReason.Checkpoint);
        engine.OnCheckpointCompleted(Environment.TickCount64);
        return (c.ReleasedBy(ReleaseReason.Checkpoint) - releasedBefore, c.SecondaryDroppedBy(DropReason.Checkpoint) - discardedBefore);
    });

    /// <summary>Failover: everything queued is released, primary traffic passes through from now on; returns how many were released.</summary>
    public long FailOver() => Change(engine =>
    {
        long before = engine.Counters.ReleasedBy(ReleaseReason.Failover);
        engine.OnFailover(Environment.TickCount64);
        return engine.Counters.ReleasedBy(ReleaseReason.Failover) - before;
    });

    /// <summary>The daemon stops: everything queued is released, and frames that still arrive pass through.</summary>
    public void Shutdown() => Change(static engine =>
    {
        engine.OnShutdown(Environment.TickCount64);
        return 0;
    });

    /// <summary>Hands over what is released but not handed over yet (after the readers stopped).</summary>
    public void HandOver() => Change(static _ => 0);

    /// <summary>The clock: scans the queues every quarter of expired_scan_cycle (5–100 ms) until stopped.</summary>
    public async Task TickAsync(long expiredScanCycleMs, CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(TickPeriod(expiredScanCycleMs));
        _tick = timer;
        try
        {
            while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false))
            {
                lock (_engineLock)
                {
                    long now = Environment.TickCount64;
                    _engine.OnTick(now);
                    Settle(now);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>expired_scan_cycle changed at run time: the clock follows.</summary>
    public void ExpiredScanCycleChanged(long expiredScanCycleMs)
    {
        try
        {
            if (_tick is PeriodicTimer tick)
            {
                tick.Period = TickPeriod(expiredScanCycleMs);
            }
        }
        catch (ObjectDisposedException)
        {
            // Stopping: no scan follows anyway.
        }
    }

    /// <summary>Called by the engine, under the engine lock: the frame joins the batch the next <see cref="PublishReleased"/> hands over.</summary>
    void ICompareActions.Release(ChardevFrame frame, ReleaseReason reason)
    {
        if (!_outdev.Admits(frame.Length, _releasingBytes))
        {
            _outdev.Drop(frame, OutdevDropReason.BacklogFull);
            return;
        }

        _releasing.Add(frame);
        _releasingBytes += frame.Length;
        if (_releasingBytes >= MaxBatchBytes)
        {
            // A checkpoint's release can be tens of megabytes in one engine call. As one batch, it would grow a list
            // and fill outdev's pipe with blocks before the flush (allocated each time: 0.8 GB in a run of
            // back-to-back checkpoints), and a failed write would count all of it as possibly lost; in batches of
            // about a socket read's size, neither. Order is kept: this is still under the engine lock.
            PublishReleased();
        }
    }

    void ICompareActions.Drop(ChardevFrame frame, PacketSide side, DropReason reason) => frame.Dispose();

    void ICompareActions.RequestCheckpoint(CheckpointReason reason, FlowKey flow) => _requests.Send(reason, flow);

    void ICompareActions.Diverged(Divergence divergence) => _divergences.Report(divergence);

    private static TimeSpan TickPeriod(long expiredScanCycleMs) => TimeSpan.FromMilliseconds(Math.Clamp(expiredScanCycleMs / 4, 5, 100));

    public void Dispose() => _pressure.Dispose();

    /// <summary>After an engine call, under the engine lock: what it released goes to outdev, paused inputs may go on.</summary>
    private void Settle(long nowMs)
    {
        PublishReleased();
        _pressure.Changed(nowMs);
    }

    /// <summary>Hands what the last engine call released to the outdev writer. Call under the engine lock.</summary>
    private void PublishReleased()
    {
        if (_releasing.Count == 0)
        {
            return;
        }

        List<ChardevFrame> batch = _releasing;
        long bytes = _releasingBytes;
        _releasing = _outdev.RentBatch();
        _releasingBytes = 0;
        _outdev.Enqueue(batch, bytes);
    }

    /// <summary>Compares a batch of one input's frames; returns what that input's next read must wait for (the queue budget), or null.</summary>
    private Task? OnFrames(List<ChardevFrame> frames, PacketSide side)
    {
        long now = Environment.TickCount64;
        lock (_engineLock)
        {
            foreach (ChardevFrame frame in frames)
            {
                if (side == PacketSide.Primary)
                {
                    _engine.OnPrimary(frame, now);
                }
                else
                {
                    _engine.OnSecondary(frame, now);
                }
            }

            Settle(now);
            return _pressure.AfterFrames(side, now);
        }
    }

    private async ValueTask WaitThenRoomAsync(Task paused, CancellationToken cancellationToken)
    {
        await paused.WaitAsync(cancellationToken).ConfigureAwait(false);
        await _outdev.WaitForRoomAsync(cancellationToken).ConfigureAwait(false);
    }

    private sealed class EngineSink(NicPipeline pipeline, PacketSide side) : IChardevFrameSink
    {
        public ValueTask OnFramesAsync(List<ChardevFrame> frames, CancellationToken cancellationToken)
        {
            Task? paused = pipeline.OnFrames(frames, side);

            // Back-pressure: while this input is ahead and the queues near their budget, or while outdev lags by a
            // full backlog, the next read waits (within --queue-stall-ms, --outdev-stall-ms).
            return paused is null
                ? pipeline._outdev.WaitForRoomAsync(cancellationToken)
                : pipeline.WaitThenRoomAsync(paused, cancellationToken);
        }
    }
}
