using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Checkpoints;

/// <summary>What a <see cref="QmpMonitor"/> reports: a client connected, an event on it, the client gone.</summary>
internal interface IQmpMonitorListener
{
    void Connected(QmpClient client);

    void Received(QmpEvent e);

    void Lost(QmpClient client);
}

/// <summary>
/// Keeps one QEMU's QMP monitor connected for as long as the daemon runs (QEMU restarts, the monitor comes and goes):
/// connects, subscribes to the checkpoint cycle's events (STOP, RESUME, MIGRATION_PASS, COLO_EXIT), reports them in
/// order, and reconnects a second after a loss. A monitor that answers nonsense is a lost monitor, never a crash.
/// </summary>
internal sealed class QmpMonitor(string address, string which, ILogger logger)
{
    private static readonly QmpClientOptions Options = new() { ConnectTimeout = TimeSpan.FromSeconds(5), CommandTimeout = TimeSpan.FromSeconds(5) };
    private static readonly TimeSpan ReconnectDelay = TimeSpan.FromSeconds(1);

    public string Address { get; } = address;

    public async Task RunAsync(IQmpMonitorListener listener, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            QmpClient? client = null;
            try
            {
                client = await QmpClient.ConnectAsync(Address, Options, stopping).ConfigureAwait(false);
                using QmpEventSubscription events = client.Subscribe(QmpEvents.Stop, QmpEvents.Resume, QmpEvents.MigrationPass, QmpEvents.ColoExit);
                string version = client.Greeting.Version.ToString();
                DaemonLog.QmpConnected(logger, which, Address, version);
                listener.Connected(client);
                await foreach (QmpEvent e in events.WithCancellation(stopping).ConfigureAwait(false))
                {
                    listener.Received(e);
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is QmpException or IOException or System.Net.Sockets.SocketException)
            {
                DaemonLog.QmpLost(logger, which, Address, e.Message);
            }
            finally
            {
                if (client is not null)
                {
                    listener.Lost(client);
                    await client.DisposeAsync().ConfigureAwait(false);
                }
            }

            try
            {
                await Task.Delay(ReconnectDelay, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }
}
