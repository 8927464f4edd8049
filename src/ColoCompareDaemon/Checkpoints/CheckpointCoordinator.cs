using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.Daemon.Hosting;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Checkpoints;

/// <summary>
/// Asks the primary QEMU for checkpoints and learns when they complete, over QMP (spec §4, environment.md).
/// Request: <c>migrate-set-parameters {"x-checkpoint-delay": CURRENT}</c> (read first; re-sending the value starts a
/// checkpoint at once). What the monitors' events mean (which STOP is a checkpoint, where it flushes, when a request
/// may go out) is <see cref="CheckpointCycle"/>'s, a pure state machine; this class feeds it the events, asks
/// query-status when it needs to know, sends requests, and tells the NICs. Never flushed at STOP or MIGRATION_PASS,
/// when the secondary does not yet hold the new state (QEMU commit 4fa8ed25b8).
/// COLO_EXIT on the primary is failover: every NIC releases everything and passes primary traffic through.
/// All state changes happen on one loop, fed by both monitors and by the NICs.
/// </summary>
internal sealed class CheckpointCoordinator : ICheckpointRequester, IAsyncDisposable
{
    private readonly string? _primaryAddress;
    private readonly string? _secondaryAddress;
    private readonly ILogger _logger;
    private readonly Channel<Signal> _signals = Channel.CreateUnbounded<Signal>(new UnboundedChannelOptions { SingleReader = true });
    private readonly List<ComparedNic> _nics = [];
    private readonly List<Task> _loops = [];
    private readonly List<(ComparedNic Nic, RedirectorRestore Restore, string OutdevLocal, TaskCompletionSource? Done, CancellationToken Abandon)> _pendingRestores = [];
    private readonly CheckpointCycle _cycle = new(10 * Stopwatch.Frequency);
    private QmpClient? _primary;
    private QmpClient? _secondary;

    // The cycle's FailedOver, for the control socket's thread.
    private volatile bool _failedOver;

    private readonly Queue<(DateTimeOffset At, bool Requested, string Flushed, double Milliseconds)> _recent = new();

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

    /// <summary>Whether COLO_EXIT was seen (every NIC passes traffic through).</summary>
    public bool FailedOver => _failedOver;

    /// <summary>Checkpoints seen over QMP, from the primary's STOP to the point where the queues were flushed (seconds).</summary>
    public BucketHistogram CheckpointSeconds { get; } = new(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30);

    public CheckpointCoordinator(string? primaryAddress, string? secondaryAddress, ILoggerFactory loggers)
    {
        _primaryAddress = primaryAddress;
        _secondaryAddress = secondaryAddress;
        _logger = loggers.CreateLogger("checkpoints");
    }

    /// <summary>NICs whose checkpoints this coordinator requests and flushes (those without notify_dev).</summary>
    public void Add(ComparedNic nic) => _nics.Add(nic);

    public bool RequestCheckpoint(ComparedNic nic, CheckpointReason reason, FlowKey flow)
    {
        if (_primaryAddress is null)
        {
            return false;
        }

        return _signals.Writer.TryWrite(new Signal(SignalKind.Request, nic, reason, flow, null));
    }

    public Task RestoreRedirectorAsync(ComparedNic nic, RedirectorRestore restore, string outdevLocalAddress, CancellationToken abandon)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_signals.Writer.TryWrite(new Signal(SignalKind.Restore, nic, default, default, null) { Restore = restore, OutdevLocal = outdevLocalAddress, Done = done, Abandon = abandon }))
        {
            done.TrySetResult();
        }

        return done.Task;
    }

    public void Start(CancellationToken stopping)
    {
        if (_primaryAddress is not null)
        {
            _loops.Add(Task.Run(() => MonitorAsync(_primaryAddress, primary: true, stopping), CancellationToken.None));
        }

        if (_secondaryAddress is not null)
        {
            _loops.Add(Task.Run(() => MonitorAsync(_secondaryAddress, primary: false, stopping), CancellationToken.None));
        }

        _loops.Add(Task.Run(() => ProcessAsync(stopping), CancellationToken.None));
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
    }

    /// <summary>Keeps a monitor connected; its events (and its arrivals and departures) go to the loop.</summary>
    private async Task MonitorAsync(string address, bool primary, CancellationToken stopping)
    {
        string which = primary ? "primary" : "secondary";
        while (!stopping.IsCancellationRequested)
        {
            QmpClient? client = null;
            try
            {
                client = await QmpClient.ConnectAsync(address, new QmpClientOptions { ConnectTimeout = TimeSpan.FromSeconds(5), CommandTimeout = TimeSpan.FromSeconds(5) }, stopping).ConfigureAwait(false);
                using QmpEventSubscription events = client.Subscribe(QmpEvents.Stop, QmpEvents.Resume, QmpEvents.MigrationPass, QmpEvents.ColoExit);
                string version = client.Greeting.Version.ToString();
                DaemonLog.QmpConnected(_logger, which, address, version);
                if (primary && _secondaryAddress is null && client.Greeting.Version.IsAtLeast(11, 0))
                {
                    DaemonLog.CheckpointsNeedSecondaryMonitor(_logger, version);
                }

                _signals.Writer.TryWrite(new Signal(primary ? SignalKind.PrimaryConnected : SignalKind.SecondaryConnected, null, default, default, null, client));
                await foreach (QmpEvent e in events.WithCancellation(stopping).ConfigureAwait(false))
                {
                    _signals.Writer.TryWrite(new Signal(primary ? SignalKind.PrimaryEvent : SignalKind.SecondaryEvent, null, default, default, e));
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is QmpException or IOException or System.Net.Sockets.SocketException)
            {
                DaemonLog.QmpLost(_logger, which, address, e.Message);
            }
            finally
            {
                if (client is not null)
                {
                    _signals.Writer.TryWrite(new Signal(primary ? SignalKind.PrimaryLost : SignalKind.SecondaryLost, null, default, default, null, client));
                    await client.DisposeAsync().ConfigureAwait(false);
                }
            }

            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
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
                    // A monitor that answers nonsense must not stop the coordinator.
                    DaemonLog.QmpLost(_logger, "primary", _primaryAddress ?? "?", e.Message);
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
            case SignalKind.Restore:
                _pendingRestores.Add((signal.Nic!, signal.Restore!, signal.OutdevLocal, signal.Done, signal.Abandon));
                await RestorePendingAsync(stopping).ConfigureAwait(false);
                break;
            case SignalKind.PrimaryConnected:
                _primary = signal.Client;
                await RestorePendingAsync(stopping).ConfigureAwait(false);
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
        if (!_cycle.ShouldRequest(Stopwatch.GetTimestamp()))
        {
            // COLO is over, or one request is outstanding until a checkpoint completes (QEMU coalesces them too).
            return;
        }

        QmpClient? primary = _primary;
        if (primary is null)
        {
            string problem = $"the primary's QMP monitor {_primaryAddress} is not connected ({signal.Reason} on '{signal.Nic!.Id}')";
            DaemonLog.CheckpointRequestFailed(_logger, problem);
            return;
        }

        try
        {
            // Read the current value first: re-sending it starts a checkpoint and leaves the operator's setting alone.
            uint delay = (await primary.QueryMigrateParametersAsync(stopping).ConfigureAwait(false)).XCheckpointDelay ?? 20_000;
            await primary.SetCheckpointDelayAsync(delay, stopping).ConfigureAwait(false);
            _cycle.RequestSent(Stopwatch.GetTimestamp());
            string flow = signal.Flow.ToString();
            DaemonLog.CheckpointRequested(_logger, signal.Reason, signal.Nic!.Id, flow, delay);
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
                // Failover whatever the event's data says: a malformed COLO_EXIT is still the end of COLO.
                (string mode, string reason) = ("?", "?");
                try
                {
                    ColoExitEventData data = e.ColoExitData();
                    (mode, reason) = (data.Mode, data.Reason);
                }
                catch (QmpProtocolException)
                {
                }

                _cycle.ColoExited();
                _failedOver = true;
                foreach (ComparedNic nic in _nics)
                {
                    nic.Failover(mode, reason);
                }

                DaemonLog.Failover(_logger, mode, reason);
                break;
        }
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

    /// <summary>
    /// QEMU up to 10.2: a filter-redirector whose indev peer left once never reads again (spec §1.4); from 11.0 it
    /// does, and a restore only logs that it has nothing to do. Re-create it
    /// with the same properties, placed before the primary_in redirector (spec §3.3), so that injected packets do
    /// not loop back into the comparator. A deaf redirector also keeps QEMU from noticing that the old peer left, so
    /// our new connection may still wait in the listen queue: the first re-creation then only makes QEMU drop the
    /// old peer (and, 7.2 being 7.2, lose its handlers again); once QEMU shows our connection, re-create once more.
    /// </summary>
    private async Task RestorePendingAsync(CancellationToken stopping)
    {
        QmpClient? primary = _primary;
        if (primary is null || _pendingRestores.Count == 0)
        {
            return;
        }

        foreach ((ComparedNic nic, RedirectorRestore restore, string local, TaskCompletionSource? done, CancellationToken abandon) pending in _pendingRestores.ToArray())
        {
            (ComparedNic nic, RedirectorRestore restore, string local, TaskCompletionSource? done, CancellationToken abandon) = pending;
            _pendingRestores.Remove(pending);
            if (abandon.IsCancellationRequested)
            {
                // Its outdev connection went on writing without it (or is gone): re-creating now could cut a frame.
                DaemonLog.RedirectorNotRestored(_logger, nic.Id, restore.Redirector, "outdev did not wait any longer for the primary's QMP monitor");
                done?.TrySetResult();
                continue;
            }

            if (primary.Greeting.Version.IsAtLeast(11, 0))
            {
                // QEMU 11.0 (upstream 5193528b9f): the redirector re-arms its indev when the peer comes back, so it
                // reads this connection as it is; re-creating it would only risk the frames in flight.
                string version = primary.Greeting.Version.ToString();
                DaemonLog.RedirectorSurvives(_logger, nic.Id, restore.Redirector, version);
                done?.TrySetResult();
                continue;
            }

            try
            {
                JsonObject properties = await RedirectorPropertiesAsync(primary, restore, stopping).ConfigureAwait(false);
                string indev = properties["indev"]!.GetValue<string>();
                (bool ours, bool otherPeer) = await IndevPeerAsync(primary, indev, local, stopping).ConfigureAwait(false);
                await RecreateAsync(primary, restore, properties, stopping).ConfigureAwait(false);

                // Writing may start: nothing was written to this connection yet, so the new redirector reads it from its
                // first frame.
                done?.TrySetResult();
                if (local.Length > 0 && otherPeer)
                {
                    // TCP, and QEMU still held the old peer: the redirector just made goes deaf when QEMU notices it
                    // leave, before QEMU takes our connection (it has read nothing of ours): re-create it once QEMU
                    // shows our connection. With no peer at all it reads ours from the start and is left alone.
                    var clock = Stopwatch.StartNew();
                    while (!(await IndevPeerAsync(primary, indev, local, stopping).ConfigureAwait(false)).Ours && clock.Elapsed < TimeSpan.FromSeconds(5))
                    {
                        await Task.Delay(50, stopping).ConfigureAwait(false);
                    }

                    await RecreateAsync(primary, restore, properties, stopping).ConfigureAwait(false);
                }
                else if (local.Length == 0)
                {
                    // QEMU may still have held the old peer (over TCP we would see; over a Unix socket we cannot): then
                    // the redirector just made goes deaf as QEMU notices the old peer leave. Re-create it again only on
                    // evidence: this connection's bytes stay entirely unread for a second. A deaf redirector has read
                    // nothing of them, so re-creating it cannot cut a frame; one that reads is never touched again.
                    var clock = Stopwatch.StartNew();
                    var unreadSince = Stopwatch.StartNew();
                    bool deaf = false;
                    while (clock.Elapsed < TimeSpan.FromSeconds(5))
                    {
                        if (nic.OutdevPeerReadNothing != true)
                        {
                            unreadSince.Restart();
                        }
                        else if (unreadSince.Elapsed >= TimeSpan.FromSeconds(1))
                        {
                            deaf = true;
                            break;
                        }

                        await Task.Delay(100, stopping).ConfigureAwait(false);
                    }

                    if (deaf)
                    {
                        await RecreateAsync(primary, restore, properties, stopping).ConfigureAwait(false);
                    }
                }

                string description = properties.ToJsonString();
                DaemonLog.RedirectorRestored(_logger, nic.Id, restore.Redirector, description);
            }
            catch (Exception e) when (e is QmpException or InvalidOperationException or FormatException)
            {
                DaemonLog.RedirectorNotRestored(_logger, nic.Id, restore.Redirector, e.Message);
            }
            finally
            {
                done?.TrySetResult();
            }
        }
    }

    private static async Task<JsonObject> RedirectorPropertiesAsync(QmpClient primary, RedirectorRestore restore, CancellationToken stopping)
    {
        string path = "/objects/" + restore.Redirector;
        async Task<JsonNode?> Get(string property) =>
            JsonNode.Parse((await primary.ExecuteAsync("qom-get", new JsonObject { ["path"] = path, ["property"] = property }, stopping).ConfigureAwait(false)).GetRawText());
        return new JsonObject
        {
            ["netdev"] = await Get("netdev").ConfigureAwait(false),
            ["queue"] = await Get("queue").ConfigureAwait(false),
            ["indev"] = await Get("indev").ConfigureAwait(false),
            ["vnet_hdr_support"] = await Get("vnet_hdr_support").ConfigureAwait(false),
            ["position"] = "id=" + restore.Before,
            ["insert"] = "before",
        };
    }

    private static async Task RecreateAsync(QmpClient primary, RedirectorRestore restore, JsonObject properties, CancellationToken stopping)
    {
        await primary.ObjectDelAsync(restore.Redirector, stopping).ConfigureAwait(false);
        await primary.ObjectAddAsync("filter-redirector", restore.Redirector, properties, stopping).ConfigureAwait(false);
    }

    /// <summary>
    /// Whether QEMU's chardev shows our socket as its peer (TCP: "... &lt;-&gt; 127.0.0.1:PORT"), or another one (the old
    /// connection QEMU has not seen leave yet); both false for Unix sockets, where the peer cannot be told.
    /// </summary>
    private static async Task<(bool Ours, bool OtherPeer)> IndevPeerAsync(QmpClient primary, string indev, string local, CancellationToken stopping)
    {
        if (local.Length == 0)
        {
            return (false, false);
        }

        ChardevInfo[] chardevs = await primary.QueryChardevAsync(stopping).ConfigureAwait(false);
        ChardevInfo? chardev = chardevs.FirstOrDefault(c => c.Label == indev);
        bool ours = chardev is not null && chardev.Filename.EndsWith("<-> " + local, StringComparison.Ordinal);
        return (ours, chardev is not null && !ours && chardev.Filename.Contains("<->", StringComparison.Ordinal));
    }

    private void Flush(CheckpointFlush? flush)
    {
        if (flush is not CheckpointFlush (bool requested, string kind, long stoppedAt))
        {
            return;
        }

        string what = (requested ? "requested, " : "periodic, ") + kind;
        TimeSpan stopped = Stopwatch.GetElapsedTime(stoppedAt);
        foreach (ComparedNic nic in _nics)
        {
            nic.CheckpointCompleted(what, stopped.TotalMilliseconds);
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
        Restore,
    }

    private sealed record Signal(SignalKind Kind, ComparedNic? Nic, CheckpointReason Reason, FlowKey Flow, QmpEvent? Event, QmpClient? Client = null)
    {
        public RedirectorRestore? Restore { get; init; }

        public string OutdevLocal { get; init; } = string.Empty;

        public TaskCompletionSource? Done { get; init; }

        public CancellationToken Abandon { get; init; }
    }
}
