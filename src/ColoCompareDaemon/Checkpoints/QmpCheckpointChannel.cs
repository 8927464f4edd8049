using System.Diagnostics;
using System.Threading.Channels;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Daemon.Engine;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Checkpoints;

/// <summary>
/// Checkpoints over QMP, for every NIC of one VM that has no notify_dev (spec §4, environment.md). Request:
/// <c>migrate-set-parameters {"x-checkpoint-delay": CURRENT}</c> (read first; re-sending the value starts a checkpoint
/// at once, and QEMU folds back-to-back requests into one checkpoint, spec §2.9). What the monitors' events mean
/// (which STOP is a checkpoint, where it flushes) is <see cref="CheckpointCycle"/>'s, a pure state machine; this class
/// feeds it both monitors' events, asks query-status when it needs to know, sends requests, and tells its targets.
/// Never flushed at STOP or MIGRATION_PASS, when the secondary does not yet hold the new state (QEMU commit
/// 4fa8ed25b8). COLO_EXIT on the primary is failover: every target releases everything and passes primary traffic
/// through. All state changes happen on one loop, fed by both monitors and by the NICs' requests; the primary's
/// monitor also serves the <see cref="RedirectorRestorer"/>.
/// </summary>
internal sealed class QmpCheckpointChannel : IAsyncDisposable
{
    private readonly QmpMonitor? _primaryMonitor;
    private readonly QmpMonitor? _secondaryMonitor;
    private readonly ILogger _logger;
    private readonly Channel<Signal> _signals = Channel.CreateUnbounded<Signal>(new UnboundedChannelOptions { SingleReader = true });
    private readonly List<ICheckpointTarget> _targets = [];
    private readonly List<Task> _loops = [];
    private readonly CheckpointCycle _cycle = new();
    private readonly Queue<(DateTimeOffset At, bool Requested, string Flushed, double Milliseconds)> _recent = new();
    private QmpClient? _primary;
    private QmpClient? _secondary;

    // The cycle's FailedOver, for the control socket's thread.
    private volatile bool _failedOver;

    public QmpCheckpointChannel(string? primaryAddress, string? secondaryAddress, ILoggerFactory loggers)
    {
        _logger = loggers.CreateLogger("checkpoints");
        _primaryMonitor = primaryAddress is null ? null : new QmpMonitor(primaryAddress, "primary", _logger);
        _secondaryMonitor = secondaryAddress is null ? null : new QmpMonitor(secondaryAddress, "secondary", _logger);
        Restorer = new RedirectorRestorer(_logger);
    }

    /// <summary>Re-creates outdev redirectors over the primary's monitor (<c>--restore-redirector</c>).</summary>
    public RedirectorRestorer Restorer { get; }

    /// <summary>The last checkpoints seen over QMP (oldest first): when, whether we asked for it, where the queues were flushed, STOP to flush.</summary>
    public IReadOnlyList<(DateTimeOffset At, bool Requested, string Flushed, double Milliseconds)> RecentCheckpoints
    {
        get
        {
            lock (_recent)
            {
                return [.. _recent];
            }
        }
    }

    /// <summary>Whether COLO_EXIT was seen (every target passes traffic through).</summary>
    public bool FailedOver => _failedOver;

    /// <summary>Checkpoints seen over QMP, from the primary's STOP to the point where the queues were flushed (seconds).</summary>
    public BucketHistogram CheckpointSeconds { get; } = new(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30);

    /// <summary>
    /// Serves <paramref name="target"/> (before <see cref="Start"/>): its checkpoints are requested here, and it hears
    /// of every completed checkpoint and of failover. Returns the channel its requests go to.
    /// </summary>
    public ICheckpointChannel Serve(ICheckpointTarget target)
    {
        _targets.Add(target);
        return new Requests(this, target);
    }

    public void Start(CancellationToken stopping)
    {
        if (_primaryMonitor is not null)
        {
            _loops.Add(Task.Run(() => _primaryMonitor.RunAsync(new Listener(this, primary: true), stopping), CancellationToken.None));
        }

        if (_secondaryMonitor is not null)
        {
            _loops.Add(Task.Run(() => _secondaryMonitor.RunAsync(new Listener(this, primary: false), stopping), CancellationToken.None));
        }

        _loops.Add(Task.Run(() => ProcessAsync(stopping), CancellationToken.None));
        Restorer.Start(stopping);
    }

    public async ValueTask DisposeAsync()
    {
        _signals.Writer.TryComplete();
        try
        {
            await Task.WhenAll(_loops).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
        }

        await Restorer.DisposeAsync().ConfigureAwait(false);
    }

    private async Task ProcessAsync(CancellationToken stopping)
    {
        try
        {
            await foreach (Signal signal in _signals.Reader.ReadAllAsync(stopping).ConfigureAwait(false))
            {
                try
                {
                    await HandleAsync(signal, stopping).ConfigureAwait(false);
                }
                catch (QmpException e)
                {
                    // A monitor that answers nonsense must not stop the channel.
                    DaemonLog.QmpLost(_logger, "primary", _primaryMonitor?.Address ?? "?", e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    private async Task HandleAsync(Signal signal, CancellationToken stopping)
    {
        switch (signal.Kind)
        {
            case SignalKind.Request:
                await RequestAsync(signal, stopping).ConfigureAwait(false);
                break;
            case SignalKind.PrimaryEvent:
                await OnPrimaryEventAsync(signal.Event!, stopping).ConfigureAwait(false);
                break;
            case SignalKind.SecondaryEvent:
                OnSecondaryEvent(signal.Event!);
                break;
            case SignalKind.PrimaryConnected:
                _primary = signal.Client;
                break;
            case SignalKind.SecondaryConnected:
                _secondary = signal.Client;
                break;
            case SignalKind.PrimaryLost when ReferenceEquals(_primary, signal.Client):
                _primary = null;
                break;
            case SignalKind.SecondaryLost when ReferenceEquals(_secondary, signal.Client):
                _secondary = null;
                _cycle.SecondaryLost();
                break;
        }
    }

    private async Task RequestAsync(Signal signal, CancellationToken stopping)
    {
        if (_cycle.FailedOver)
        {
            return; // COLO is over: there is nothing to checkpoint into
        }

        QmpClient? primary = _primary;
        if (primary is null)
        {
            string problem = $"the primary's QMP monitor {_primaryMonitor!.Address} is not connected ({signal.Reason} on '{signal.Target!.Id}')";
            DaemonLog.CheckpointRequestFailed(_logger, problem);
            return;
        }

        try
        {
            // Read the current value first: re-sending it starts a checkpoint and leaves the operator's setting alone.
            uint delay = (await primary.QueryMigrateParametersAsync(stopping).ConfigureAwait(false)).XCheckpointDelay ?? 20_000;
            await primary.SetCheckpointDelayAsync(delay, stopping).ConfigureAwait(false);
            _cycle.RequestSent();
            string flow = signal.Flow.ToString();
            DaemonLog.CheckpointRequested(_logger, signal.Reason, signal.Target!.Id, flow, delay);
        }
        catch (QmpException e)
        {
            DaemonLog.CheckpointRequestFailed(_logger, e.Message);
        }
    }

    private async Task OnPrimaryEventAsync(QmpEvent e, CancellationToken stopping)
    {
        switch (e.Name)
        {
            case QmpEvents.Stop:
                if (_cycle.PrimaryStopped(Stopwatch.GetTimestamp()))
                {
                    // Not yet known to be a checkpoint (the events capability may be off): one shows as status "colo".
                    await AskStatusAsync(stopping).ConfigureAwait(false);
                }

                break;
            case QmpEvents.MigrationPass:
                _cycle.MigrationPass();
                break;
            case QmpEvents.Resume:
                // A STOP/RESUME that was no checkpoint (an operator's stop and cont) releases nothing.
                Flush(_cycle.PrimaryResumed(secondaryWatched: _secondary is not null));
                break;
            case QmpEvents.ColoExit:
                OnColoExit(e);
                break;
        }
    }

    /// <summary>Failover whatever the event's data says: a malformed COLO_EXIT is still the end of COLO.</summary>
    private void OnColoExit(QmpEvent e)
    {
        ColoExit exit = ColoExit.Unreadable;
        try
        {
            ColoExitEventData data = e.ColoExitData();
            exit = new ColoExit(data.Mode, data.Reason);
        }
        catch (QmpProtocolException)
        {
        }

        _cycle.ColoExited();
        _failedOver = true;
        foreach (ICheckpointTarget target in _targets)
        {
            target.FailedOver(exit);
        }

        DaemonLog.Failover(_logger, exit.Mode, exit.Reason);
    }

    private void OnSecondaryEvent(QmpEvent e)
    {
        if (e.Name == QmpEvents.Stop)
        {
            _cycle.SecondaryStopped();
        }
        else if (e.Name == QmpEvents.Resume)
        {
            Flush(_cycle.SecondaryResumed());
        }
    }

    /// <summary>After a STOP not yet known to be a checkpoint: query-status says <c>colo</c> while one runs.</summary>
    private async Task AskStatusAsync(CancellationToken stopping)
    {
        QmpClient? primary = _primary;
        if (primary is null)
        {
            return;
        }

        try
        {
            _cycle.StatusAnswered((await primary.QueryStatusAsync(stopping).ConfigureAwait(false)).Status);
        }
        catch (QmpException)
        {
            // MIGRATION_PASS or the secondary's STOP may still tell us.
        }
    }

    private void Flush(CheckpointFlush? flush)
    {
        if (flush is not CheckpointFlush (bool requested, string kind, long stoppedAt))
        {
            return;
        }

        string what = (requested ? "requested, " : "periodic, ") + kind;
        TimeSpan stopped = Stopwatch.GetElapsedTime(stoppedAt);
        foreach (ICheckpointTarget target in _targets)
        {
            target.CheckpointCompleted(new CheckpointCompletion(what, stopped.TotalMilliseconds));
        }

        CheckpointSeconds.Record(stopped.TotalSeconds);
        lock (_recent)
        {
            _recent.Enqueue((DateTimeOffset.UtcNow, requested, kind, stopped.TotalMilliseconds));
            while (_recent.Count > 10)
            {
                _recent.Dequeue();
            }
        }

        long milliseconds = (long)stopped.TotalMilliseconds;
        DaemonLog.CheckpointCompleted(_logger, what, milliseconds);
    }

    private enum SignalKind
    {
        Request,
        PrimaryEvent,
        SecondaryEvent,
        PrimaryConnected,
        SecondaryConnected,
        PrimaryLost,
        SecondaryLost,
    }

    private sealed record Signal(SignalKind Kind, ICheckpointTarget? Target = null, CheckpointReason Reason = default, FlowKey Flow = default, QmpEvent? Event = null, QmpClient? Client = null);

    /// <summary>One target's requests, into the shared loop.</summary>
    private sealed class Requests(QmpCheckpointChannel channel, ICheckpointTarget target) : ICheckpointChannel
    {
        public bool Request(CheckpointReason reason, FlowKey flow) =>
            channel._primaryMonitor is not null && channel._signals.Writer.TryWrite(new Signal(SignalKind.Request, target, reason, flow));
    }

    /// <summary>One monitor's reports, into the shared loop (and the primary's arrivals and departures to the restorer).</summary>
    private sealed class Listener(QmpCheckpointChannel channel, bool primary) : IQmpMonitorListener
    {
        public void Connected(QmpClient client)
        {
            if (primary)
            {
                if (channel._secondaryMonitor is null && client.Greeting.Version.IsAtLeast(11, 0))
                {
                    string version = client.Greeting.Version.ToString();
                    DaemonLog.CheckpointsNeedSecondaryMonitor(channel._logger, version);
                }

                channel.Restorer.PrimaryConnected(client);
            }

            channel._signals.Writer.TryWrite(new Signal(primary ? SignalKind.PrimaryConnected : SignalKind.SecondaryConnected, Client: client));
        }

        public void Received(QmpEvent e) =>
            channel._signals.Writer.TryWrite(new Signal(primary ? SignalKind.PrimaryEvent : SignalKind.SecondaryEvent, Event: e));

        public void Lost(QmpClient client)
        {
            if (primary)
            {
                channel.Restorer.PrimaryLost(client);
            }

            channel._signals.Writer.TryWrite(new Signal(primary ? SignalKind.PrimaryLost : SignalKind.SecondaryLost, Client: client));
        }
    }
}
