using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Captures;
using ColoChardev.Daemon.Checkpoints;
using ColoChardev.Daemon.Configuration;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Nic;

/// <summary>
/// One compared NIC at run time (one QEMU <c>-object colo-compare</c>): its <see cref="NicEndpoints"/>, the
/// <see cref="NicPipeline"/> that compares, the <see cref="OutdevWriter"/> where released frames leave, and its
/// checkpoint channel, both ways: notify_dev when configured, else the VM's QMP channel. It runs the loops around
/// them: primary_in and secondary_in are read continuously, whatever the comparison or outdev do (a stalled reader
/// stalls QEMU's main loop), outdev is written, the clock ticks.
/// </summary>
internal sealed class ComparedNic : ICheckpointTarget, IAsyncDisposable
{
    private readonly NicConfiguration _configuration;
    private readonly ILogger _logger;
    private readonly NicEvents _events;
    private readonly NicPipeline _pipeline;
    private readonly CheckpointRequestLog _requests;
    private readonly DivergenceReporter _divergences;
    private readonly RedirectorRestorer _restorer;
    private readonly List<Task> _loops = [];
    private readonly List<Task> _readers = [];
    private CancellationTokenSource? _inputs;
    private Task _writer = Task.CompletedTask;

    public ComparedNic(NicConfiguration configuration, QmpCheckpointChannel qmp, OutdevLimits outdevLimits, ILoggerFactory loggers, DaemonEvents? events = null, CaptureSettings? capture = null)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        _configuration = configuration;
        _restorer = qmp.Restorer;
        _logger = loggers.CreateLogger("colo-compare." + configuration.Id);
        _events = new NicEvents(events ?? new DaemonEvents(), Id);
        if (capture is not null)
        {
            Capture = new DivergenceCapture(capture, Id, configuration.PrimaryIn.Address, configuration.SecondaryIn.Address, _logger);
        }

        Endpoints = new NicEndpoints(configuration, loggers, configuration.Compare.QueueBudgetBytes + outdevLimits.BacklogBytes);
        foreach ((string role, ChardevEndpoint endpoint) in Endpoints.All)
        {
            endpoint.ConnectionChanged += (_, connected) => _events.Chardev(role, endpoint, connected);
        }

        Outdev = new OutdevWriter(Endpoints.OutDev, outdevLimits, configuration.Compare.QueueBudgetBytes, Id, _logger, OnOutdevConnected);

        // Requests and completions take the same way: notify_dev's own channel, or the VM's QMP channel.
        ICheckpointChannel checkpoints = Endpoints.NotifyDev is ChardevEndpoint notify
            ? Notify = new XenNotifyChannel(this, notify, _logger)
            : qmp.Serve(this);
        _requests = new CheckpointRequestLog(checkpoints, _events, Id, _logger);
        _divergences = new DivergenceReporter(Capture, _events, Id, _logger);
        _pipeline = new NicPipeline(configuration.Compare, Outdev, _requests, _divergences, Id, _logger);
        Admin = new NicAdmin(_pipeline);
    }

    public string Id => _configuration.Id;

    public NicEndpoints Endpoints { get; }

    /// <summary>Xen's notify_dev channel, when configured.</summary>
    public XenNotifyChannel? Notify { get; }

    /// <summary>Released frames on their way to outdev: written, held, dropped, back-pressure.</summary>
    public OutdevWriter Outdev { get; }

    /// <summary>qom-set and bypass rules, for the control socket.</summary>
    public NicAdmin Admin { get; }

    /// <summary>Divergence captures (<c>--capture</c>), or null.</summary>
    public DivergenceCapture? Capture { get; }

    /// <summary>The engine's accounting (readable from any thread).</summary>
    public CompareCounters Counters => _pipeline.Counters;

    /// <summary>The queue budget's back-pressure on the inputs: pauses and stalls.</summary>
    public QueueBackPressure QueuePressure => _pipeline.QueuePressure;

    /// <summary>Checkpoint requests that could not be sent.</summary>
    public long CheckpointsUnsent => _requests.Unsent;

    /// <summary>The last checkpoint requests, oldest first.</summary>
    public IReadOnlyList<(DateTimeOffset At, CheckpointReason Reason, string Flow, bool Sent)> RecentCheckpointRequests => _requests.Recent;

    /// <summary>Divergences the engine reported (mismatches, and timeouts or full queues that asked for a checkpoint).</summary>
    public long Divergences => _divergences.Count;

    /// <summary>Binds the server endpoints (see <see cref="NicEndpoints.Listen"/>).</summary>
    public void Listen() => Endpoints.Listen();

    /// <summary>Starts every loop (after <see cref="Listen"/>).</summary>
    public void Start(CancellationToken stopping)
    {
        CompareOptions c = _configuration.Compare;
        string notify = Notify is null ? string.Empty : ", notify_dev " + Notify.Endpoint.Spec.Address;
        DaemonLog.NicStarted(_logger, Id, Endpoints.PrimaryIn.Spec.Address, Endpoints.SecondaryIn.Spec.Address, Endpoints.OutDev.Spec.Address, notify, c.CompareTimeoutMs, c.ExpiredScanCycleMs, c.MaxQueueSize, c.VnetHdrSupport);

        // The readers stop first at shutdown (see ShutdownAsync), while outdev is still written.
        _inputs = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        CancellationToken inputs = _inputs.Token;
        _readers.Add(Run("primary_in reader", () => Endpoints.PrimaryIn.ReceiveFramesAsync(_pipeline.SinkFor(PacketSide.Primary), inputs), inputs));
        _readers.Add(Run("secondary_in reader", () => Endpoints.SecondaryIn.ReceiveFramesAsync(_pipeline.SinkFor(PacketSide.Secondary), inputs), inputs));
        _loops.AddRange(_readers);
        _writer = Run("outdev writer", () => Outdev.RunAsync(stopping), stopping);
        _loops.Add(_writer);
        _loops.Add(Run("clock", () => _pipeline.TickAsync(c.ExpiredScanCycleMs, stopping), stopping));
        Capture?.Start();
        if (Notify is not null)
        {
            _loops.Add(Run("notify_dev", () => Notify.RunAsync(stopping), stopping));
        }
    }

    /// <inheritdoc/>
    public void CheckpointCompleted(CheckpointCompletion completion)
    {
        (long released, long discarded) = _pipeline.CheckpointCompleted();
        _events.Checkpoint(completion, released, discarded);
    }

    /// <inheritdoc/>
    public void FailedOver(ColoExit exit)
    {
        long released = _pipeline.FailOver();
        _events.Failover(exit, released);
    }

    /// <summary>Releases every queued primary frame and writes what it can to outdev within <paramref name="deadline"/>.</summary>
    public async Task<long> ShutdownAsync(TimeSpan deadline)
    {
        long before = Counters.PrimaryReleased;
        _pipeline.Shutdown();

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

        _pipeline.HandOver();
        Outdev.Complete();
        await Task.WhenAny(_writer, Task.Delay(deadline)).ConfigureAwait(false);
        if (!_writer.IsCompleted)
        {
            // Outdev would not take the rest within the deadline (a peer that stopped reading): cut it off, so that the
            // write in progress fails and its frames are counted, like everything still queued, before the summary.
            Endpoints.OutDev.DropPeer();
            await Task.WhenAny(_writer, Task.Delay(TimeSpan.FromSeconds(1))).ConfigureAwait(false);
        }

        if (_writer.IsCompleted)
        {
            // What could not be written is counted now, before the summary that reports it (the writer is done reading).
            Outdev.Dispose();
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

        await Endpoints.DisposeAsync().ConfigureAwait(false);
        Notify?.Dispose();
        if (Capture is not null)
        {
            await Capture.DisposeAsync().ConfigureAwait(false);
        }

        // Released but never written (outdev was gone at shutdown): counted, not silently lost.
        Outdev.Dispose();
        _pipeline.Dispose();
        _inputs?.Dispose();
    }

    /// <summary>The summary line: what came in, what left, what was dropped, what is queued, the checkpoints, the process.</summary>
    public string Summary()
    {
        CompareCounters c = Counters;
        OutdevWriter o = Outdev;
        return $"in {c.PrimaryAccepted}/{c.SecondaryAccepted} frames (primary/secondary), released {c.PrimaryReleased} ({c.PrimaryReleasedUncompared} uncompared), "
            + $"dropped {c.PrimaryDropped}/{c.SecondaryDropped}, queued {c.PrimaryQueued}/{c.SecondaryQueued} ({c.QueuedBytes} bytes), flows {c.Flows}, "
            + $"mismatches tcp {c.MismatchesBy(CompareProtocol.Tcp)} udp {c.MismatchesBy(CompareProtocol.Udp)} icmp {c.MismatchesBy(CompareProtocol.Icmp)} other {c.MismatchesBy(CompareProtocol.Other)}, "
            + $"checkpoint requests {c.CheckpointRequests} (mismatch {c.CheckpointRequestsBy(CheckpointReason.Mismatch)}, timeout {c.CheckpointRequestsBy(CheckpointReason.PrimaryTimeout) + c.CheckpointRequestsBy(CheckpointReason.SecondaryTimeout)}, "
            + $"queue {c.CheckpointRequestsBy(CheckpointReason.QueueFull) + c.CheckpointRequestsBy(CheckpointReason.QueueBudget)}; unsent {CheckpointsUnsent}), checkpoints {c.CheckpointsCompleted}; "
            + $"outdev written {o.Written}, backlog {o.BacklogBytes} bytes, dropped {o.DroppedBeforeWrite}, lost {o.Lost}; "
            + $"queue pauses {QueuePressure.Pauses(PacketSide.Primary)}/{QueuePressure.Pauses(PacketSide.Secondary)} (stalls {QueuePressure.Stalls(PacketSide.Primary)}/{QueuePressure.Stalls(PacketSide.Secondary)}); "
            + $"process allocated {GC.GetTotalAllocatedBytes(precise: true)} bytes, gc {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}";
    }

    private Task Run(string name, Func<Task> loop, CancellationToken stopping) =>
        SupervisedLoop.Start($"colo-compare '{Id}' {name}", loop, _logger, stopping);

    /// <summary>A new outdev connection: the redirector behind it is restored if asked for, else an outdev reconnect is warned about.</summary>
    private Task OnOutdevConnected(ChardevConnection connection, bool first, CancellationToken abandon)
    {
        if (_configuration.RestoreRedirector is RedirectorRestore restore)
        {
            // Every connection, the first included: an earlier daemon may have left the redirector deaf.
            return _restorer.RestoreAsync(new OutdevConnection(Id, connection.LocalAddress, Outdev.PeerReadNothing), restore, abandon);
        }

        if (!first)
        {
            DaemonLog.OutdevReconnected(_logger, Id);
        }

        return Task.CompletedTask;
    }
}
