using System.Runtime.InteropServices;
using ColoChardev.Daemon.Control;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using ColoChardev.Daemon.Configuration;

namespace ColoChardev.Daemon.Hosting;

/// <summary>Builds and runs the generic host: console (or journald) logs, systemd notify, SIGTERM/SIGINT handling.</summary>
internal static class DaemonHost
{
    public static async Task<int> RunAsync(DaemonConfiguration configuration)
    {
        // What can fail because of the machine is checked or bound before the host starts: a failure inside the host's
        // start would be logged by the host with a stack trace.
        if (configuration.Capture is Captures.CaptureSettings capture)
        {
            Captures.DivergenceCapture.EnsureWritable(capture);
        }

        if (configuration.ControlPath is string control)
        {
            ControlServer.EnsureUsable(control);
        }

        HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.SetMinimumLevel(configuration.LogLevel);
        builder.Logging.AddSimpleConsole(options =>
        {
            options.SingleLine = true;
            options.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fff ";
            options.UseUtcTimestamp = true;
            options.ColorBehavior = LoggerColorBehavior.Disabled;
        });
        builder.Services.AddSystemd();
        if (!Microsoft.Extensions.Hosting.Systemd.SystemdHelpers.IsSystemdService() && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NOTIFY_SOCKET")))
        {
            // A service manager that is not systemd's PID (a container's, or a test's) still wants READY=1 and
            // STOPPING=1: the library only recognises systemd itself as the parent.
            builder.Services.AddSingleton<Microsoft.Extensions.Hosting.Systemd.ISystemdNotifier, Microsoft.Extensions.Hosting.Systemd.SystemdNotifier>();
            builder.Services.AddSingleton<IHostLifetime, Microsoft.Extensions.Hosting.Systemd.SystemdLifetime>();
        }

        builder.Services.Configure<HostOptions>(options => options.ShutdownTimeout = TimeSpan.FromSeconds(15));
        builder.Services.AddSingleton(configuration);
        builder.Services.AddSingleton<CompareService>();
        builder.Services.AddHostedService(services => services.GetRequiredService<CompareService>());
        using IHost host = builder.Build();

        // The host handles SIGTERM and SIGINT only once it runs; Open() binds and logs before that. A stop in between
        // (a service manager or cluster agent stopping a daemon it just started) would kill the process by the signal
        // (exit 143) instead of stopping it: CI's SystemdUnitTests caught it. From here on a signal is a clean stop.
        using var stopRequested = new CancellationTokenSource();
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            stopRequested.Cancel();
        }

        using PosixSignalRegistration terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using PosixSignalRegistration interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        host.Services.GetRequiredService<CompareService>().Open();
        try
        {
            await host.RunAsync(stopRequested.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stopRequested.IsCancellationRequested)
        {
            // Stopped before the host had started: nothing ran yet, the bound sockets close with the host.
        }

        return 0;
    }
}
