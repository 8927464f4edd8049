using System.Globalization;
using System.Text;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;

namespace ColoChardev.Testbed;

/// <summary>Settings of a standalone QEMU colo-compare.</summary>
public sealed record StandaloneColoCompareOptions
{
    public bool VnetHdrSupport { get; init; }

    /// <summary>Adds a notify_dev chardev, so checkpoint requests become visible as framed DO_CHECKPOINT.</summary>
    public bool NotifyDev { get; init; }

    public int? CompareTimeoutMs { get; init; }

    public int? ExpiredScanCycleMs { get; init; }

    public int? MaxQueueSize { get; init; }
}

/// <summary>
/// QEMU's own colo-compare running with no guest (<c>-M none</c>), its chardevs as loopback TCP servers: the
/// reference to test our framing against (spec environment.md). Killed by PID on dispose.
/// </summary>
public sealed class StandaloneColoCompare : IAsyncDisposable
{
    private readonly QemuProcess _qemu;
    private readonly string _directory;
    private QmpClient? _monitor;

    private StandaloneColoCompare(QemuProcess qemu, StandaloneColoCompareOptions options, string directory, int primaryPort, int secondaryPort, int outdevPort, int notifyPort)
    {
        _qemu = qemu;
        _directory = directory;
        Options = options;
        PrimaryPort = primaryPort;
        SecondaryPort = secondaryPort;
        OutdevPort = outdevPort;
        NotifyPort = notifyPort;
    }

    public StandaloneColoCompareOptions Options { get; }

    /// <summary>Port of the primary_in chardev (QEMU listens; write primary frames here).</summary>
    public int PrimaryPort { get; }

    /// <summary>Port of the secondary_in chardev (QEMU listens; write secondary frames here).</summary>
    public int SecondaryPort { get; }

    /// <summary>Port of the outdev chardev (QEMU listens; read released frames here, and connect it first).</summary>
    public int OutdevPort { get; }

    /// <summary>Port of the notify_dev chardev, or 0.</summary>
    public int NotifyPort { get; }

    /// <summary>QEMU's QMP monitor socket.</summary>
    public string QmpPath => System.IO.Path.Combine(_directory, "qmp.sock");

    /// <summary>QEMU's process id.</summary>
    public int ProcessId => _qemu.ProcessId;

    /// <summary>Whether QEMU has exited.</summary>
    public bool HasExited => _qemu.HasExited;

    /// <summary>What QEMU printed on stderr so far.</summary>
    public string StandardError => _qemu.StandardError;

    /// <summary>Client spec for our endpoint that connects to primary_in.</summary>
    public string PrimarySpec => $"socket,id=to-primary_in,host=127.0.0.1,port={PrimaryPort}";

    /// <summary>Client spec for our endpoint that connects to secondary_in.</summary>
    public string SecondarySpec => $"socket,id=to-secondary_in,host=127.0.0.1,port={SecondaryPort}";

    /// <summary>Client spec for our endpoint that connects to outdev.</summary>
    public string OutdevSpec => $"socket,id=from-outdev,host=127.0.0.1,port={OutdevPort}";

    /// <summary>Client spec for our endpoint that connects to notify_dev.</summary>
    public string NotifySpec => $"socket,id=notify,host=127.0.0.1,port={NotifyPort}";

    /// <summary>Starts QEMU. Connect to <see cref="OutdevPort"/> before sending anything: QEMU drops output to an unconnected chardev.</summary>
    public static StandaloneColoCompare Start(StandaloneColoCompareOptions? options = null)
    {
        options ??= new StandaloneColoCompareOptions();
        int primary = FreePort.Next();
        int secondary = FreePort.Next();
        int outdev = FreePort.Next();
        int notify = options.NotifyDev ? FreePort.Next() : 0;
        string directory = FreePort.TempSocketDirectory();
        var arguments = new List<string>
        {
            "-M", "none", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none",
            "-qmp", $"unix:{System.IO.Path.Combine(directory, "qmp.sock")},server=on,wait=off",
        };

        void AddServer(string id, int port)
        {
            arguments.Add("-chardev");
            arguments.Add($"socket,id={id},host=127.0.0.1,port={port},server=on,wait=off");
        }

        AddServer("pri", primary);
        AddServer("sec", secondary);
        AddServer("out", outdev);
        var compare = new StringBuilder("colo-compare,id=cc0,primary_in=pri,secondary_in=sec,outdev=out,iothread=it");
        if (options.NotifyDev)
        {
            AddServer("ntf", notify);
            compare.Append(",notify_dev=ntf");
        }

        if (options.VnetHdrSupport)
        {
            compare.Append(",vnet_hdr_support=on");
        }

        AppendNumber(compare, "compare_timeout", options.CompareTimeoutMs);
        AppendNumber(compare, "expired_scan_cycle", options.ExpiredScanCycleMs);
        AppendNumber(compare, "max_queue_size", options.MaxQueueSize);
        arguments.AddRange(["-object", "iothread,id=it", "-object", compare.ToString()]);
        return new StandaloneColoCompare(QemuProcess.Start(arguments), options, directory, primary, secondary, outdev, notify);
    }

    /// <summary>
    /// Waits until QEMU has accepted a peer on every chardev of colo-compare (QMP <c>query-chardev</c>), so that
    /// nothing sent afterwards is dropped for want of a connected outdev.
    /// </summary>
    public async Task WaitForConnectedChardevsAsync(CancellationToken cancellationToken)
    {
        string[] ids = Options.NotifyDev ? ["pri", "sec", "out", "ntf"] : ["pri", "sec", "out"];
        while (true)
        {
            if (_qemu.HasExited)
            {
                throw new InvalidOperationException($"QEMU exited: {StandardError}");
            }

            _monitor ??= await QmpConnect.WhenReadyAsync(QmpPath, cancellationToken, _qemu).ConfigureAwait(false);
            ChardevInfo[] chardevs = await _monitor.QueryChardevAsync(cancellationToken).ConfigureAwait(false);
            if (chardevs.Count(c => ids.Contains(c.Label) && c.IsConnected) == ids.Length)
            {
                return;
            }

            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Kills QEMU (by the PID we started) and waits for it.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_monitor is not null)
            {
                await _monitor.DisposeAsync().ConfigureAwait(false);
            }

            await _qemu.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    private static void AppendNumber(StringBuilder builder, string name, int? value)
    {
        if (value is int number)
        {
            builder.Append(CultureInfo.InvariantCulture, $",{name}={number}");
        }
    }
}
