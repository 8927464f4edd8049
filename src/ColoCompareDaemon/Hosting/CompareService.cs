using ColoChardev.Daemon.Checkpoints;
using ColoChardev.Daemon.Control;
using ColoChardev.Daemon.Configuration;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Daemon.Nic;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Hosting;

/// <summary>
/// The daemon as a hosted service: opens every NIC's endpoints when starting (the host reports ready to systemd once
/// this returns), runs the QMP checkpoint channel, logs a summary line now and then, and on SIGTERM/SIGINT releases
/// every queued primary frame to outdev before exiting.
/// </summary>
internal sealed class CompareService(DaemonConfiguration configuration, ILoggerFactory loggers) : IHostedService, IAsyncDisposable
{
    private static readonly TimeSpan DrainDeadline = TimeSpan.FromSeconds(5);
    private readonly ILogger _logger = loggers.CreateLogger("colo-compare");
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<ComparedNic> _nics = [];
    private QmpCheckpointChannel? _checkpoints;
    private Task _summary = Task.CompletedTask;
    private DaemonMetrics? _metrics;
    private Prometheus.MetricServer? _metricServer;
    private ControlServer? _control;
    private readonly DaemonEvents _events = new();
    private int _disposed;

    /// <summary>
    /// Makes everything that can fail because of the machine rather than the traffic: binds every server chardev, the
    /// metrics port and the control socket. Called before the host starts, so that a taken port or an unusable path
    /// is one line and exit code 1, not a host start-up failure with its stack trace.
    /// </summary>
    /// <exception cref="DaemonStartException">Something cannot be bound or opened; the message says what and where.</exception>
    public void Open()
    {
        try
        {
            _checkpoints = new QmpCheckpointChannel(configuration.PrimaryQmp, configuration.SecondaryQmp, loggers);
            foreach (NicConfiguration nic in configuration.Nics)
            {
                _nics.Add(new ComparedNic(nic, _checkpoints, configuration.Outdev, loggers, _events, configuration.Capture));
            }

            if (configuration.Metrics is MetricsEndpoint metrics)
            {
                _metrics = new DaemonMetrics(_nics, _checkpoints.CheckpointSeconds);
                _metricServer = MetricsExport.Start(metrics);
                DaemonLog.MetricsListening(_logger, metrics.Url);
            }

            if (configuration.ControlPath is string path)
            {
                _control = new ControlServer(path, _nics, _checkpoints, _events, _logger);
                DaemonLog.ControlListening(_logger, path);
            }

            foreach (ComparedNic nic in _nics)
            {
                nic.Listen();
            }
        }
        catch (Exception e) when (e is ChardevProtocol.Endpoints.ChardevEndpointException or InvalidOperationException or IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
        {
            throw new DaemonStartException(e.Message, e);
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_checkpoints is null)
        {
            Open();
        }

        foreach (ComparedNic nic in _nics)
        {
            nic.Start(_stopping.Token);
        }

        _checkpoints!.Start(_stopping.Token);
        _control?.Start();
        if (configuration.SummaryInterval > TimeSpan.Zero)
        {
            _summary = Task.Run(() => SummarizeAsync(_stopping.Token), CancellationToken.None);
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // First release what is queued (QEMU flushes a colo-compare object that is deleted), then stop the loops.
        long released = 0;
        foreach (ComparedNic nic in _nics)
        {
            released += await nic.ShutdownAsync(DrainDeadline).ConfigureAwait(false);
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        long written = _nics.Sum(n => n.Outdev.Written);
        DaemonLog.Stopped(_logger, released, written);
        foreach (ComparedNic nic in _nics)
        {
            string summary = nic.Summary();
            DaemonLog.Summary(_logger, nic.Id, summary);
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Registered once as itself and once as the hosted service: the container disposes both registrations.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_metricServer is not null)
        {
            await _metricServer.StopAsync().ConfigureAwait(false);
            _metricServer.Dispose();
        }

        _metrics?.Dispose();
        if (_control is not null)
        {
            await _control.DisposeAsync().ConfigureAwait(false);
        }
        foreach (ComparedNic nic in _nics)
        {
            await nic.DisposeAsync().ConfigureAwait(false);
        }

        if (_checkpoints is not null)
        {
            await _checkpoints.DisposeAsync().ConfigureAwait(false);
        }

        try
        {
            await _summary.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stopping.Dispose();
    }

    private async Task SummarizeAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(configuration.SummaryInterval);
        while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false))
        {
            foreach (ComparedNic nic in _nics)
            {
                string summary = nic.Summary();
                DaemonLog.Summary(_logger, nic.Id, summary);
            }
        }
    }
}

/// <summary>The daemon cannot start: an address is taken, a path is unusable. The message is the one line to print.</summary>
public sealed class DaemonStartException(string message, Exception inner) : Exception(message, inner);
