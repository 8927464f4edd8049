using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ColoChardev.Testbed;

namespace ColoChardev.SocketBenchmark;

/// <summary>What a run measures.</summary>
internal enum TargetKind
{
    /// <summary>QEMU's built-in colo-compare (7.2, or QEMU_VERSION's), standalone (<c>-M none</c>).</summary>
    Qemu,

    /// <summary>Our colo-compare daemon.</summary>
    Daemon,

    /// <summary>The relay baseline (<see cref="Relay"/>).</summary>
    Relay,
}

/// <summary>Settings every comparator gets alike.</summary>
/// <param name="MaxQueueSize">colo-compare's max_queue_size (packets per connection).</param>
internal sealed record TargetSettings(int MaxQueueSize);

/// <summary>
/// A started target process and our four sockets to it (outdev connected first, as QEMU needs): we write
/// primary_in and secondary_in, read outdev, and read/answer notify_dev (the comparators' checkpoint channel).
/// Every chardev is a loopback TCP server in the target, for all three alike.
/// </summary>
internal sealed class RunningTarget : IAsyncDisposable
{
    /// <summary>Targets alive now, killed by PID if the benchmark itself is stopped (SIGTERM, Ctrl-C).</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, TargetKind> Alive = new();
    private readonly IAsyncDisposable _process;
    private readonly DaemonProcess? _daemon;

    private RunningTarget(TargetKind kind, int processId, IAsyncDisposable process, DaemonProcess? daemon)
    {
        Kind = kind;
        ProcessId = processId;
        _process = process;
        _daemon = daemon;
    }

    public TargetKind Kind { get; }

    public int ProcessId { get; }

    public Socket Primary { get; private set; } = null!;

    public Socket Secondary { get; private set; } = null!;

    public Socket Outdev { get; private set; } = null!;

    /// <summary>notify_dev, or null for the relay.</summary>
    public Socket? Notify { get; private set; }

    /// <summary>The daemon's output lines so far (empty for the others).</summary>
    public IReadOnlyList<string> Lines => _daemon?.Lines ?? [];

    public static string Name(TargetKind kind) => kind switch
    {
        TargetKind.Qemu => "QEMU colo-compare",
        TargetKind.Daemon => "colo-compare daemon",
        _ => "relay baseline",
    };

    static RunningTarget()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (int pid in Alive.Keys)
            {
                try
                {
                    using var process = Process.GetProcessById(pid);
                    process.Kill();
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
                {
                }
            }
        };
    }

    public static async Task<RunningTarget> StartAsync(TargetKind kind, TrafficShape shape, TargetSettings settings, CancellationToken token)
    {
        int primary = FreePort.Next();
        int secondary = FreePort.Next();
        int outdev = FreePort.Next();
        int notify = FreePort.Next();
        RunningTarget target;
        StandaloneColoCompare? qemu = null;
        switch (kind)
        {
            case TargetKind.Qemu:
                qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { NotifyDev = true, VnetHdrSupport = shape.Vnet, MaxQueueSize = settings.MaxQueueSize });
                target = new RunningTarget(kind, qemu.ProcessId, qemu, null);
                (primary, secondary, outdev, notify) = (qemu.PrimaryPort, qemu.SecondaryPort, qemu.OutdevPort, qemu.NotifyPort);
                break;
            case TargetKind.Daemon:
                string Server(string id, int port) => $"socket,id={id},host=127.0.0.1,port={port},server=on,wait=off";
                DaemonProcess daemon = DaemonProcess.Start(
                [
                    "-chardev", Server("pri", primary), "-chardev", Server("sec", secondary), "-chardev", Server("out", outdev), "-chardev", Server("ntf", notify),
                    "-object", "iothread,id=it",
                    "-object", $"colo-compare,id=cc0,primary_in=pri,secondary_in=sec,outdev=out,iothread=it,notify_dev=ntf,max_queue_size={settings.MaxQueueSize.ToString(CultureInfo.InvariantCulture)}{(shape.Vnet ? ",vnet_hdr_support=on" : string.Empty)}",
                    "--summary-interval", "0.5",
                    .. (Environment.GetEnvironmentVariable("SOCKET_BENCH_DAEMON_ARGS") ?? string.Empty).Split(' ', StringSplitOptions.RemoveEmptyEntries),
                ]);
                target = new RunningTarget(kind, daemon.ProcessId, daemon, daemon);
                break;
            default:
                var relay = RelayProcess.Start(primary, secondary, outdev);
                target = new RunningTarget(kind, relay.ProcessId, relay, null);
                notify = 0;
                break;
        }

        Alive[target.ProcessId] = kind;
        try
        {
            target.Outdev = await ConnectAsync(outdev, target, token).ConfigureAwait(false);
            target.Primary = await ConnectAsync(primary, target, token).ConfigureAwait(false);
            target.Secondary = await ConnectAsync(secondary, target, token).ConfigureAwait(false);
            if (notify != 0)
            {
                target.Notify = await ConnectAsync(notify, target, token).ConfigureAwait(false);
            }

            if (qemu is not null)
            {
                await qemu.WaitForConnectedChardevsAsync(token).ConfigureAwait(false);
            }
            else if (target._daemon is not null)
            {
                // Accepted by the kernel is not yet accepted by the daemon: wait for its log line about outdev.
                await target._daemon.WaitForLineAsync("chardev 'out': accepted", TimeSpan.FromSeconds(20)).ConfigureAwait(false);
            }

            return target;
        }
        catch
        {
            await target.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (Socket? socket in new[] { Primary, Secondary, Outdev, Notify })
        {
            socket?.Dispose();
        }

        await _process.DisposeAsync().ConfigureAwait(false);
        Alive.TryRemove(ProcessId, out _);
    }

    private static async Task<Socket> ConnectAsync(int port, RunningTarget target, CancellationToken token)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), token).ConfigureAwait(false);
                return socket;
            }
            catch (SocketException) when (clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                socket.Dispose();
                await Task.Delay(20, token).ConfigureAwait(false);
            }
            catch
            {
                socket.Dispose();
                string exited = target._process is StandaloneColoCompare { HasExited: true } qemu ? $"; it exited: {qemu.StandardError.Trim()}" : string.Empty;
                throw new InvalidOperationException($"{Name(target.Kind)} (pid {target.ProcessId}) did not accept on port {port}{exited}");
            }
        }
    }

    /// <summary>The relay as its own process: this program with <c>relay P S O</c>. Killed by its PID.</summary>
    private sealed class RelayProcess(Process process) : IAsyncDisposable
    {
        public int ProcessId => process.Id;

        public static RelayProcess Start(int primary, int secondary, int outdev)
        {
            var info = new ProcessStartInfo("dotnet")
            {
                ArgumentList = { typeof(Relay).Assembly.Location, "relay", Text(primary), Text(secondary), Text(outdev) },
                RedirectStandardOutput = true,
                UseShellExecute = false,
            };
            Process started = Process.Start(info) ?? throw new InvalidOperationException("the relay did not start");
            _ = started.StandardOutput.ReadToEndAsync();
            return new RelayProcess(started);
        }

        public async ValueTask DisposeAsync()
        {
            if (!process.HasExited)
            {
                process.Kill();
            }

            await process.WaitForExitAsync().ConfigureAwait(false);
            process.Dispose();
        }

        private static string Text(int port) => port.ToString(CultureInfo.InvariantCulture);
    }
}
