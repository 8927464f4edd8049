using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using ColoChardev.Daemon.Configuration;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Checkpoints;

/// <summary>One outdev connection whose redirector is to be re-created (<c>--restore-redirector</c>).</summary>
/// <param name="Nic">The NIC's id, for logs.</param>
/// <param name="LocalAddress">Our end of the outdev connection over TCP ("127.0.0.1:PORT"); empty for a Unix socket.</param>
/// <param name="PeerReadNothing">Whether outdev's peer has read nothing of what the connection was sent (null: unknown).</param>
internal sealed record OutdevConnection(string Nic, string LocalAddress, Func<bool?> PeerReadNothing);

/// <summary>
/// QEMU up to 10.2: a filter-redirector whose indev peer left once never reads again (spec §1.4); from 11.0 it
/// does, and a restore only logs that it has nothing to do. Re-creates it over the primary's QMP monitor with the
/// same properties, placed before the primary_in redirector (spec §3.3), so that injected packets do not loop back
/// into the comparator. A deaf redirector also keeps QEMU from noticing that the old peer left, so our new connection
/// may still wait in the listen queue: the first re-creation then only makes QEMU drop the old peer (and, 7.2 being
/// 7.2, lose its handlers again); once QEMU shows our connection, re-create once more. Restores run one at a time on
/// this class's own loop (each may poll for seconds), apart from the checkpoint cycle's, and wait for the monitor.
/// </summary>
internal sealed class RedirectorRestorer(ILogger logger) : IAsyncDisposable
{
    private static readonly TimeSpan SecondLookFor = TimeSpan.FromSeconds(5);
    private readonly Channel<Signal> _signals = Channel.CreateUnbounded<Signal>(new UnboundedChannelOptions { SingleReader = true });
    private readonly List<Pending> _pending = [];
    private QmpClient? _primary;
    private Task _loop = Task.CompletedTask;

    /// <summary>
    /// Re-creates the redirector behind <paramref name="outdev"/> (now, or once the primary's monitor is connected).
    /// The task completes when it is done (or failed, logged); the outdev writer holds its first write until then, so
    /// that no redirector is ever deleted in the middle of a frame. A cancelled <paramref name="abandon"/> drops a
    /// restore not yet begun.
    /// </summary>
    public Task RestoreAsync(OutdevConnection outdev, RedirectorRestore restore, CancellationToken abandon)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_signals.Writer.TryWrite(new Signal(new Pending(outdev, restore, done, abandon), null, false)))
        {
            done.TrySetResult();
        }

        return done.Task;
    }

    /// <summary>The primary's monitor connected: pending restores go ahead.</summary>
    public void PrimaryConnected(QmpClient client) => _signals.Writer.TryWrite(new Signal(null, client, true));

    /// <summary>The primary's monitor is gone.</summary>
    public void PrimaryLost(QmpClient client) => _signals.Writer.TryWrite(new Signal(null, client, false));

    public void Start(CancellationToken stopping) => _loop = Task.Run(() => ProcessAsync(stopping), CancellationToken.None);

    public async ValueTask DisposeAsync()
    {
        _signals.Writer.TryComplete();
        try
        {
            await _loop.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
        }

        foreach (Pending pending in _pending)
        {
            pending.Done.TrySetResult();
        }
    }

    private async Task ProcessAsync(CancellationToken stopping)
    {
        try
        {
            await foreach (Signal signal in _signals.Reader.ReadAllAsync(stopping).ConfigureAwait(false))
            {
                if (signal.Restore is Pending pending)
                {
                    _pending.Add(pending);
                }
                else if (signal.Connected)
                {
                    _primary = signal.Client;
                }
                else if (ReferenceEquals(_primary, signal.Client))
                {
                    _primary = null;
                }

                await RestorePendingAsync(stopping).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    private async Task RestorePendingAsync(CancellationToken stopping)
    {
        while (_primary is QmpClient primary && _pending.Count > 0)
        {
            Pending pending = _pending[0];
            _pending.RemoveAt(0);
            try
            {
                await RestoreOneAsync(primary, pending, stopping).ConfigureAwait(false);
            }
            finally
            {
                pending.Done.TrySetResult();
            }
        }
    }

    private async Task RestoreOneAsync(QmpClient primary, Pending pending, CancellationToken stopping)
    {
        (OutdevConnection outdev, RedirectorRestore restore, TaskCompletionSource done, CancellationToken abandon) = pending;
        if (abandon.IsCancellationRequested)
        {
            // Its outdev connection went on writing without it (or is gone): re-creating now could cut a frame.
            DaemonLog.RedirectorNotRestored(logger, outdev.Nic, restore.Redirector, "outdev did not wait any longer for the primary's QMP monitor");
            return;
        }

        if (primary.Greeting.Version.IsAtLeast(11, 0))
        {
            // QEMU 11.0 (upstream 5193528b9f): the redirector re-arms its indev when the peer comes back, so it reads
            // this connection as it is; re-creating it would only risk the frames in flight.
            string version = primary.Greeting.Version.ToString();
            DaemonLog.RedirectorSurvives(logger, outdev.Nic, restore.Redirector, version);
            return;
        }

        try
        {
            JsonObject properties = await RedirectorPropertiesAsync(primary, restore, stopping).ConfigureAwait(false);
            string indev = properties["indev"]!.GetValue<string>();
            string local = outdev.LocalAddress;
            (_, bool otherPeer) = await IndevPeerAsync(primary, indev, local, stopping).ConfigureAwait(false);
            await RecreateAsync(primary, restore, properties, stopping).ConfigureAwait(false);
            string description = properties.ToJsonString();
            DaemonLog.RedirectorRestored(logger, outdev.Nic, restore.Redirector, description);

            // Writing may start: nothing was written to this connection yet, so the new redirector reads it from its
            // first frame.
            done.TrySetResult();
            if (local.Length > 0 && otherPeer)
            {
                await WaitUntilOursAsync(primary, indev, local, stopping).ConfigureAwait(false);
                await RecreateAsync(primary, restore, properties, stopping).ConfigureAwait(false);
                DaemonLog.RedirectorRestoredAgain(logger, outdev.Nic, restore.Redirector, "QEMU still held the old outdev peer when it was first re-created");
            }
            else if (local.Length == 0 && await StaysUnreadAsync(outdev, stopping).ConfigureAwait(false))
            {
                await RecreateAsync(primary, restore, properties, stopping).ConfigureAwait(false);
                DaemonLog.RedirectorRestoredAgain(logger, outdev.Nic, restore.Redirector, "it read nothing of the new outdev connection for a second");
            }
        }
        catch (Exception e) when (e is QmpException or InvalidOperationException or FormatException)
        {
            DaemonLog.RedirectorNotRestored(logger, outdev.Nic, restore.Redirector, e.Message);
        }
    }

    /// <summary>
    /// TCP, and QEMU still held the old peer: the redirector just made goes deaf when QEMU notices it leave, before
    /// QEMU takes our connection (it has read nothing of ours). Waits until QEMU shows our connection (at most
    /// <see cref="SecondLookFor"/>); the caller then re-creates it once more. With no peer at all it reads ours from
    /// the start and is left alone.
    /// </summary>
    private static async Task WaitUntilOursAsync(QmpClient primary, string indev, string local, CancellationToken stopping)
    {
        var clock = Stopwatch.StartNew();
        while (!(await IndevPeerAsync(primary, indev, local, stopping).ConfigureAwait(false)).Ours && clock.Elapsed < SecondLookFor)
        {
            await Task.Delay(50, stopping).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A Unix socket: QEMU may still have held the old peer (over TCP we would see; here we cannot): then the
    /// redirector just made goes deaf as QEMU notices the old peer leave. True only on evidence: this connection's
    /// bytes stay entirely unread for a second. A deaf redirector has read nothing of them, so re-creating it cannot
    /// cut a frame; one that reads is never touched again.
    /// </summary>
    private static async Task<bool> StaysUnreadAsync(OutdevConnection outdev, CancellationToken stopping)
    {
        var clock = Stopwatch.StartNew();
        var unreadSince = Stopwatch.StartNew();
        while (clock.Elapsed < SecondLookFor)
        {
            if (outdev.PeerReadNothing() != true)
            {
                unreadSince.Restart();
            }
            else if (unreadSince.Elapsed >= TimeSpan.FromSeconds(1))
            {
                return true;
            }

            await Task.Delay(100, stopping).ConfigureAwait(false);
        }

        return false;
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

    private sealed record Pending(OutdevConnection Outdev, RedirectorRestore Restore, TaskCompletionSource Done, CancellationToken Abandon);

    private sealed record Signal(Pending? Restore, QmpClient? Client, bool Connected);
}
