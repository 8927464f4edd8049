using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Captures;
using ColoChardev.Daemon.Checkpoints;
using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Hosting;

/// <summary>
/// One compared NIC at run time: its endpoints, its engine, and the loops around them. primary_in and secondary_in are
/// read continuously, whatever the comparison or outdev do (a stalled reader stalls QEMU's main loop); the engine runs
/// under a lock, in the reading thread; released frames go through a bounded backlog to the outdev writer, handed
/// over a batch at a time (what one engine call released), so the hot path costs a list append per frame.
/// </summary>
internal sealed class ComparedNic : ICompareActions, IAsyncDisposable
{
    /// <summary>Checkpoint requests the status command shows.</summary>
    private const int RecentRequestsKept = 10;

    private readonly NicConfiguration _configuration;
    private readonly ILogger _logger;
    private readonly Lock _engineLock = new();
    private readonly CompareEngine _engine;
    private readonly ICheckpointRequester _requester;
    private readonly OutdevWriter _outdev;
    private readonly List<Task> _loops = [];
    private readonly List<Task> _readers = [];
    private CancellationTokenSource? _inputs;
    private Task _writer = Task.CompletedTask;
    private List<ChardevFrame> _releasing; // guarded by _engineLock
    private long _releasingBytes; // guarded by _engineLock
    private long _checkpointsUnsent;
    private long _divergences;
    private readonly DaemonEvents _events;
    private readonly Queue<(DateTimeOffset At, CheckpointReason Reason, string Flow, bool Sent)> _recentRequests = new(); // guarded by itself
    private PeriodicTimer? _tick;

    public ComparedNic(NicConfiguration configuration, ICheckpointRequester requester, OutdevLimits outdevLimits, ILoggerFactory loggers, DaemonEvents? events = null, CaptureSettings? capture = null)
    {
        _configuration = configuration;
        _requester = requester;
        _events = events ?? new DaemonEvents();
        _logger = loggers.CreateLogger("colo-compare." + configuration.Id);
        if (capture is not null)
        {
            Capture = new DivergenceCapture(capture, configuration.Id, configuration.PrimaryIn.Address, configuration.SecondaryIn.Address, _logger);
        }

        _engine = new CompareEngine(configuration.Compare, this);
        var options = new ChardevEndpointOptions { VnetHdrSupport = configuration.Compare.VnetHdrSupport };
        ILogger endpointLogger = loggers.CreateLogger("chardev");
        PrimaryIn = new ChardevEndpoint(configuration.PrimaryIn, options, endpointLogger);
        SecondaryIn = new ChardevEndpoint(configuration.SecondaryIn, options, endpointLogger);
        OutDev = new ChardevEndpoint(configuration.OutDev, options, endpointLogger);
        _outdev = new OutdevWriter(OutDev, outdevLimits, configuration.Compare.QueueBudgetBytes, Id, _logger, OnOutdevConnected);
        _releasing = _outdev.RentBatch();
        if (configuration.NotifyDev is not null)
        {
            Notify = new XenNotifyChannel(this, new ChardevEndpoint(configuration.NotifyDev, options, endpointLogger), _logger);
        }

        foreach ((string name, ChardevEndpoint? endpoint) in Endpoints)
        {
            endpoint.ConnectionChanged += (_, connected) => _events.Publish(DaemonEvents.Chardev, w =>
            {
                w.WriteString("id", Id);
                w.WriteString("endpoint", name);
                w.WriteString("address", endpoint.Spec.Address);
                w.WriteBoolean("connected", connected);
                w.WriteNumber("connections", endpoint.Statistics.Connections);
            });
        }
    }

    public string Id => _configuration.Id;

    public ChardevEndpoint PrimaryIn { get; }

    public ChardevEndpoint SecondaryIn { get; }

    public ChardevEndpoint OutDev { get; }

    /// <summary>Xen's notify_dev channel, when configured: checkpoints are then requested and signalled there.</summary>
    public XenNotifyChannel? Notify { get; }

    /// <summary>Every chardev of this NIC with QEMU's name for its role.</summary>
    public IEnumerable<(string Name, ChardevEndpoint Endpoint)> Endpoints =>
        new (string, ChardevEndpoint?)[] { ("primary_in", PrimaryIn), ("secondary_in", SecondaryIn), ("outdev", OutDev), ("notify_dev", Notify?.Endpoint) }
            .Where(e => e.Item2 is not null)
            .Select(e => (e.Item1, e.Item2!));

    /// <summary>The engine's accounting (readable from any thread).</summary>
    public CompareCounters Counters => _engine.Counters;

    /// <summary>Released frames on their way to outdev: written, held, dropped, back-pressure.</summary>
    public OutdevWriter Outdev => _outdev;

    public long OutdevWritten => _outdev.Written;

    /// <summary>Released frames dropped before a write: the backlog was full while outdev stalled, or they expired waiting for a peer.</summary>
    public long OutdevDropped => _outdev.DroppedBy(OutdevDropReason.BacklogFull) + _outdev.DroppedBy(OutdevDropReason.Expired);

    /// <summary>Released frames in a write that failed, or still held when the daemon stopped without an outdev peer.</summary>
    public long OutdevLost => _outdev.DroppedBy(OutdevDropReason.WriteFailed) + _outdev.DroppedBy(OutdevDropReason.Shutdown);

    public long BacklogBytes => _outdev.BacklogBytes;

    /// <summary>True when outdev's peer has read nothing of what its connection was sent (a deaf redirector); null when unknown.</summary>
    public bool? OutdevPeerReadNothing => _outdev.PeerReadNothing();

    public long CheckpointsUnsent => Interlocked.Read(ref _checkpointsUnsent);

    /// <summary>Divergences the engine reported (mismatches, and timeouts or full queues that asked for a checkpoint).</summary>
    public long Divergences => Interlocked.Read(ref _divergences);

    /// <summary>Divergence captures (<c>--capture</c>), or null.</summary>
    public DivergenceCapture? Capture { get; }

    /// <summary>Binds the server endpoints, so that peers can connect (and a taken address is found before anything runs).</summary>
    /// <exception cref="ChardevEndpointException">An address cannot be bound; the message names the chardev and address.</exception>
    public void Listen()
    {
        foreach (ChardevEndpoint endpoint in new[] { PrimaryIn, SecondaryIn, OutDev, Notify?.Endpoint }.OfType<ChardevEndpoint>())
        {
            if (endpoint.Spec.Server)
            {
                endpoint.StartListening();
            }
        }
    }

    /// <summary>Starts every loop (after <see cref="Listen"/>).</summary>
    public void Start(CancellationToken stopping)
    {
        CompareOptions c = _configuration.Compare;
        DaemonLog.NicStarted(_logger, Id, PrimaryIn.Spec.Address, SecondaryIn.Spec.Address, OutDev.Spec.Address, Notify is null ? string.Empty : ", notify_dev " + Notify.Endpoint.Spec.Address, c.CompareTimeoutMs, c.ExpiredScanCycleMs, c.MaxQueueSize, c.VnetHdrSupport);
        // The readers stop first at shutdown (see ShutdownAsync), while outdev is still written.
        _inputs = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        CancellationToken inputs = _inputs.Token;
        _readers.Add(Run("primary_in reader", () => PrimaryIn.ReceiveFramesAsync(new EngineSink(this, PacketSide.Primary), inputs), inputs));
        _readers.Add(Run("secondary_in reader", () => SecondaryIn.ReceiveFramesAsync(new EngineSink(this, PacketSide.Secondary), inputs), inputs));
        _loops.AddRange(_readers);
        _writer = Run("outdev writer", () => _outdev.RunAsync(stopping), stopping);
        _loops.Add(_writer);
        _loops.Add(Run("clock", () => TickAsync(stopping), stopping));
        Capture?.Start();
        if (Notify is not null)
        {
            _loops.Add(Run("notify_dev", () => Notify.RunAsync(stopping), stopping));
        }
    }

    /// <summary>
    /// A checkpoint completed: flush the engine. <paramref name="how"/> says where it was seen (for the event),
    /// <paramref name="stoppedMs"/> how long the primary was stopped, when known.
    /// </summary>
    public void CheckpointCompleted(string how, double? stoppedMs = null)
    {
        long released;
        long discarded;
        lock (_engineLock)
        {
            CompareCounters c = _engine.Counters;
            long releasedBefore = c.ReleasedBy(ReleaseReason.Checkpoint);
            long discardedBefore = c.SecondaryDroppedBy(DropReason.Checkpoint);
            _engine.OnCheckpointCompleted(Environment.TickCount64);
            PublishReleased();
            released = c.ReleasedBy(ReleaseReason.Checkpoint) - releasedBefore;
            discarded = c.SecondaryDroppedBy(DropReason.Checkpoint) - discardedBefore;
        }

        _events.Publish(DaemonEvents.Checkpoint, w =>
        {
            w.WriteString("id", Id);
            w.WriteString("flushed", how);
            if (stoppedMs is double ms)
            {
                w.WriteNumber("stopped-ms", Math.Round(ms, 1));
            }

            w.WriteNumber("released", released);
            w.WriteNumber("discarded", discarded);
        });
    }

    /// <summary>Failover (COLO_EXIT): release everything, pass primary traffic through from now on.</summary>
    public void Failover(string mode, string reason)
    {
        long released;
        lock (_engineLock)
        {
            long before = _engine.Counters.ReleasedBy(ReleaseReason.Failover);
            _engine.OnFailover(Environment.TickCount64);
            PublishReleased();
            released = _engine.Counters.ReleasedBy(ReleaseReason.Failover) - before;
        }

        _events.Publish(DaemonEvents.Failover, w =>
        {
            w.WriteString("id", Id);
            w.WriteString("mode", mode);
            w.WriteString("reason", reason);
            w.WriteNumber("released", released);
        });
    }

    /// <summary>Releases every queued primary frame and writes what it can to outdev within <paramref name="deadline"/>.</summary>
    public async Task<long> ShutdownAsync(TimeSpan deadline)
    {
        long before = Counters.PrimaryReleased;
        lock (_engineLock)
        {
            _engine.OnShutdown(Environment.TickCount64);
            PublishReleased();
        }

        // Stop reading before outdev's queue closes: a primary frame that arrives meanwhile passes straight through
        // and is written too, instead of being accepted with nowhere left to go.
        if (_inputs is not null)
        {
            await _inputs.CancelAsync().ConfigureAwait(false);
            try
            {
                await Task.WhenAll(_readers).WaitAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or TimeoutException)
            {
            }
        }

        lock (_engineLock)
        {
            PublishReleased();
        }

        _outdev.Complete();
        await Task.WhenAny(_writer, Task.Delay(deadline)).ConfigureAwait(false);
        if (!_writer.IsCompleted)
        {
            // Outdev would not take the rest within the deadline (a peer that stopped reading): cut it off, so that the
            // write in progress fails and its frames are counted, like everything still queued, before the summary.
            OutDev.DropPeer();
            await Task.WhenAny(_writer, Task.Delay(TimeSpan.FromSeconds(1))).ConfigureAwait(false);
        }

        if (_writer.IsCompleted)
        {
            // What could not be written is counted now, before the summary that reports it (the writer is done reading).
            _outdev.Dispose();
        }

        return Counters.PrimaryReleased - before;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Task.WhenAll(_loops).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
        }

        await PrimaryIn.DisposeAsync().ConfigureAwait(false);
        await SecondaryIn.DisposeAsync().ConfigureAwait(false);
        await OutDev.DisposeAsync().ConfigureAwait(false);
        if (Notify is not null)
        {
            await Notify.Endpoint.DisposeAsync().ConfigureAwait(false);
            Notify.Dispose();
        }

        if (Capture is not null)
        {
            await Capture.DisposeAsync().ConfigureAwait(false);
        }

        // Released but never written (outdev was gone at shutdown): counted, not silently lost.
        _outdev.Dispose();
        _inputs?.Dispose();
    }

    /// <summary>
    /// Sets compare_timeout, expired_scan_cycle or max_queue_size at run time (the control socket's qom-set).
    /// Returns null, or why not.
    /// </summary>
    public string? SetProperty(string property, long value)
    {
        if (property == "max_queue_size" && value is < int.MinValue or > int.MaxValue)
        {
            return $"max_queue_size={value} must be between 1 and {int.MaxValue}";
        }

        lock (_engineLock)
        {
            CompareOptions current = _engine.Options;
            CompareOptions? changed = property switch
            {
                "compare_timeout" => current with { CompareTimeoutMs = value },
                "expired_scan_cycle" => current with { ExpiredScanCycleMs = value },
                "max_queue_size" => current with { MaxQueueSize = (int)value },
                _ => null,
            };
            if (changed is null)
            {
                return $"property '{property}' cannot be set: only compare_timeout, expired_scan_cycle and max_queue_size";
            }

            if (_engine.UpdateOptions(changed) is string problem)
            {
                return problem;
            }

            if (property == "expired_scan_cycle" && _tick is PeriodicTimer tick)
            {
                try
                {
                    tick.Period = TickPeriod(value);
                }
                catch (ObjectDisposedException)
                {
                    // Stopping: no scan follows anyway.
                }
            }

            return null;
        }
    }

    /// <summary>
    /// Adds a bypass rule: matching flows' queued primary packets are released at once (in order), later ones pass
    /// uncompared. False when an equal rule is already there.
    /// </summary>
    public bool AddBypass(BypassRule rule)
    {
        lock (_engineLock)
        {
            CompareOptions current = _engine.Options;
            if (current.Bypass.Any(r => r.Text == rule.Text))
            {
                return false;
            }

            _engine.UpdateOptions(current with { Bypass = [.. current.Bypass, rule] });
            PublishReleased(); // what matching flows had queued goes out now, not at the next tick
            return true;
        }
    }

    /// <summary>Removes the bypass rule written <paramref name="rule"/> (canonical form); false when there is none.</summary>
    public bool RemoveBypass(BypassRule rule)
    {
        lock (_engineLock)
        {
            CompareOptions current = _engine.Options;
            if (!current.Bypass.Any(r => r.Text == rule.Text))
            {
                return false;
            }

            _engine.UpdateOptions(current with { Bypass = [.. current.Bypass.Where(r => r.Text != rule.Text)] });
            return true;
        }
    }

    /// <summary>The options in force now.</summary>
    public CompareOptions Options
    {
        get
        {
            lock (_engineLock)
            {
                return _engine.Options;
            }
        }
    }

    /// <summary>Whether a failover has put the NIC in pass-through.</summary>
    public bool FailedOver
    {
        get
        {
            lock (_engineLock)
            {
                return _engine.IsFailedOver;
            }
        }
    }

    /// <summary>The last checkpoint requests, oldest first.</summary>
    public IReadOnlyList<(DateTimeOffset At, CheckpointReason Reason, string Flow, bool Sent)> RecentCheckpointRequests
    {
        get
        {
            lock (_recentRequests)
            {
                return [.. _recentRequests];
            }
        }
    }

    public string Summary()
    {
        CompareCounters c = Counters;
        return $"in {c.PrimaryAccepted}/{c.SecondaryAccepted} frames (primary/secondary), released {c.PrimaryReleased} ({c.PrimaryReleasedUncompared} uncompared), "
            + $"dropped {c.PrimaryDropped}/{c.SecondaryDropped}, queued {c.PrimaryQueued}/{c.SecondaryQueued} ({c.QueuedBytes} bytes), flows {c.Flows}, "
            + $"mismatches tcp {c.MismatchesBy(CompareProtocol.Tcp)} udp {c.MismatchesBy(CompareProtocol.Udp)} icmp {c.MismatchesBy(CompareProtocol.Icmp)} other {c.MismatchesBy(CompareProtocol.Other)}, "
            + $"checkpoint requests {c.CheckpointRequests} (mismatch {c.CheckpointRequestsBy(CheckpointReason.Mismatch)}, timeout {c.CheckpointRequestsBy(CheckpointReason.PrimaryTimeout) + c.CheckpointRequestsBy(CheckpointReason.SecondaryTimeout)}, "
            + $"queue {c.CheckpointRequestsBy(CheckpointReason.QueueFull) + c.CheckpointRequestsBy(CheckpointReason.QueueBudget)}; unsent {CheckpointsUnsent}), checkpoints {c.CheckpointsCompleted}; "
            + $"outdev written {OutdevWritten}, backlog {BacklogBytes} bytes, dropped {OutdevDropped}, lost {OutdevLost}; "
            + $"process allocated {GC.GetTotalAllocatedBytes(precise: true)} bytes, gc {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}";
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
    }

    void ICompareActions.Drop(ChardevFrame frame, PacketSide side, DropReason reason) => frame.Dispose();

    void ICompareActions.RequestCheckpoint(CheckpointReason reason, FlowKey flow)
    {
        bool sent = Notify is not null ? Notify.RequestCheckpoint() : _requester.RequestCheckpoint(this, reason, flow);
        lock (_recentRequests)
        {
            _recentRequests.Enqueue((DateTimeOffset.UtcNow, reason, flow.ToString(), sent));
            while (_recentRequests.Count > RecentRequestsKept)
            {
                _recentRequests.Dequeue();
            }
        }

        _events.Publish(DaemonEvents.CheckpointRequest, w =>
        {
            w.WriteString("id", Id);
            w.WriteString("reason", reason.ToString());
            w.WriteString("flow", flow.ToString());
            w.WriteBoolean("sent", sent);
        });
        if (!sent)
        {
            long count = Interlocked.Increment(ref _checkpointsUnsent);
            if ((count & (count - 1)) == 0)
            {
                DaemonLog.CheckpointUnsent(_logger, Id, reason, count);
            }
        }
    }

    /// <summary>Called by the engine, under the engine lock: captured (copied) and announced, when asked for.</summary>
    void ICompareActions.Diverged(Divergence divergence)
    {
        long number = Interlocked.Increment(ref _divergences);
        bool announce = _events.HasSubscribers;
        bool log = _logger.IsEnabled(LogLevel.Debug);
        if (Capture is null && !announce && !log)
        {
            return;
        }

        string detail = divergence.Describe();
        string flow = divergence.Flow.ToString();
        DaemonLog.Diverged(_logger, Id, number, divergence.Reason, flow, detail);
        bool captured = Capture is not null && Capture.Enqueue(divergence, number, detail, DateTimeOffset.UtcNow);
        CompareProtocol protocol = divergence.Protocol;
        CheckpointReason reason = divergence.Reason;
        int primary = divergence.Count(PacketSide.Primary);
        int secondary = divergence.Count(PacketSide.Secondary);
        _events.Publish(DaemonEvents.Divergence, w =>
        {
            w.WriteString("id", Id);
            w.WriteNumber("number", number);
            w.WriteString("reason", reason.ToString());
            w.WriteString("protocol", protocol.ToString());
            w.WriteString("flow", flow);
            w.WriteString("detail", detail);
            w.WriteNumber("primary-queued", primary);
            w.WriteNumber("secondary-queued", secondary);
            w.WriteBoolean("captured", captured);
        });
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

    private static TimeSpan TickPeriod(long expiredScanCycleMs) => TimeSpan.FromMilliseconds(Math.Clamp(expiredScanCycleMs / 4, 5, 100));

    private Task Run(string name, Func<Task> loop, CancellationToken stopping) =>
        SupervisedLoop.Start($"colo-compare '{Id}' {name}", loop, _logger, stopping);

    private void OnFrames(List<ChardevFrame> frames, PacketSide side)
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

            PublishReleased();
        }
    }

    private async Task TickAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(TickPeriod(_configuration.Compare.ExpiredScanCycleMs));
        _tick = timer;
        try
        {
            while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false))
            {
                lock (_engineLock)
                {
                    _engine.OnTick(Environment.TickCount64);
                    PublishReleased();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>A new outdev connection: the redirector behind it is restored if asked for, else an outdev reconnect is warned about.</summary>
    private Task OnOutdevConnected(ChardevConnection connection, bool first, CancellationToken abandon)
    {
        if (_configuration.RestoreRedirector is RedirectorRestore restore)
        {
            // Every connection, the first included: an earlier daemon may have left the redirector deaf.
            return _requester.RestoreRedirectorAsync(this, restore, connection.LocalAddress, abandon);
        }

        if (!first)
        {
            DaemonLog.OutdevReconnected(_logger, Id);
        }

        return Task.CompletedTask;
    }

    private sealed class EngineSink(ComparedNic nic, PacketSide side) : IChardevFrameSink
    {
        public ValueTask OnFramesAsync(List<ChardevFrame> frames, CancellationToken cancellationToken)
        {
            nic.OnFrames(frames, side);
            // Back-pressure: while outdev lags by a full backlog, the next read waits (within --outdev-stall-ms).
            return nic._outdev.WaitForRoomAsync(cancellationToken);
        }
    }
}
