using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;

namespace ColoChardev.Testbed;

/// <summary>
/// The daemon as a real process, wired to our own endpoints standing in for QEMU: we serve primary_in (the daemon
/// connects, as to compare0), the daemon serves secondary_in (we connect, as the secondary's red1), we serve outdev
/// (as compare_out) and, optionally, notify_dev.
/// </summary>
public sealed class DaemonRig : IAsyncDisposable
{
    private readonly List<IAsyncDisposable> _owned = [];

    private DaemonRig(bool vnet)
    {
        Vnet = vnet;
        Options = new ChardevEndpointOptions { VnetHdrSupport = vnet };
    }

    public bool Vnet { get; }

    public ChardevEndpointOptions Options { get; }

    public int PrimaryPort { get; private set; }

    public int SecondaryPort { get; private set; }

    public int OutdevPort { get; private set; }

    public int NotifyPort { get; private set; }

    public ChardevEndpoint PrimaryServer { get; private set; } = null!;

    public ChardevEndpoint OutdevServer { get; private set; } = null!;

    public ChardevEndpoint? NotifyServer { get; private set; }

    public ChardevEndpoint SecondaryClient { get; private set; } = null!;

    public DaemonProcess Daemon { get; private set; } = null!;

    public ChardevConnection Primary { get; private set; } = null!;

    public ChardevConnection Secondary { get; private set; } = null!;

    public ChardevConnection Outdev { get; private set; } = null!;

    public ChardevConnection? Notify { get; private set; }

    /// <summary>QEMU's syntax: -chardev ... -object colo-compare,...</summary>
    public static IEnumerable<string> QemuSyntax(int primary, int secondary, int outdev, int notify, string extra) =>
    [
        "-chardev", $"socket,id=compare0-0,host=127.0.0.1,port={primary}",
        "-chardev", $"socket,id=compare1,host=127.0.0.1,port={secondary},server=on,wait=off",
        "-chardev", $"socket,id=compare_out0,host=127.0.0.1,port={outdev}",
        .. notify > 0 ? new[] { "-chardev", $"socket,id=notify0,host=127.0.0.1,port={notify}" } : [],
        "-object", "iothread,id=iothread1",
        "-object", $"colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,iothread=iothread1{(notify > 0 ? ",notify_dev=notify0" : string.Empty)}{extra}",
    ];

    /// <summary>Plain options for one NIC.</summary>
    public static IEnumerable<string> PlainSyntax(int primary, int secondary, int outdev, int notify, IEnumerable<string> extra) =>
    [
        "--primary-in", $"tcp:127.0.0.1:{primary}",
        "--secondary-in", $"socket,host=127.0.0.1,port={secondary},server=on,wait=off",
        "--outdev", $"socket,host=127.0.0.1,port={outdev}",
        .. notify > 0 ? new[] { "--notify-dev", $"tcp:127.0.0.1:{notify}" } : [],
        .. extra,
    ];

    /// <summary>Starts the daemon with the arguments built from our ports, then connects every endpoint.</summary>
    public static async Task<DaemonRig> StartAsync(bool vnet, bool notify, Func<(int Primary, int Secondary, int Outdev, int Notify), IEnumerable<string>> arguments, CancellationToken token, IEnumerable<string>? more = null)
    {
        var rig = new DaemonRig(vnet);
        try
        {
            rig.PrimaryServer = rig.Own(new ChardevEndpoint(ChardevSocketSpec.Parse("socket,id=compare0,host=127.0.0.1,port=0,server=on,wait=off"), rig.Options));
            rig.PrimaryServer.StartListening();
            rig.OutdevServer = rig.Own(new ChardevEndpoint(ChardevSocketSpec.Parse("socket,id=compare_out,host=127.0.0.1,port=0,server=on,wait=off"), rig.Options));
            rig.OutdevServer.StartListening();
            if (notify)
            {
                // What colo-compare writes on notify_dev never carries the vnet word (spec §1.6): read without it.
                rig.NotifyServer = rig.Own(new ChardevEndpoint(ChardevSocketSpec.Parse("socket,id=xen,host=127.0.0.1,port=0,server=on,wait=off")));
                rig.NotifyServer.StartListening();
            }

            rig.PrimaryPort = rig.PrimaryServer.ListenPort;
            rig.OutdevPort = rig.OutdevServer.ListenPort;
            rig.NotifyPort = rig.NotifyServer?.ListenPort ?? 0;
            rig.SecondaryPort = FreePort.Next();
            rig.Daemon = DaemonProcess.Start([.. arguments((rig.PrimaryPort, rig.SecondaryPort, rig.OutdevPort, rig.NotifyPort)), "--summary-interval", "1", .. more ?? []]);
            rig._owned.Add(rig.Daemon);
            rig.Outdev = rig.Own(await rig.OutdevServer.ConnectAsync(token));
            rig.Primary = rig.Own(await rig.PrimaryServer.ConnectAsync(token));
            if (rig.NotifyServer is not null)
            {
                rig.Notify = rig.Own(await rig.NotifyServer.ConnectAsync(token));
            }

            rig.SecondaryClient = rig.Own(new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=red1,host=127.0.0.1,port={rig.SecondaryPort},reconnect=1"), rig.Options));
            rig.Secondary = rig.Own(await rig.SecondaryClient.ConnectAsync(token));
            return rig;
        }
        catch
        {
            await rig.DisposeAsync();
            throw;
        }
    }

    public async Task SendPrimaryAsync(params byte[][] frames) => await SendAsync(Primary, frames);

    public async Task SendSecondaryAsync(params byte[][] frames) => await SendAsync(Secondary, frames);

    public async Task SendAsync(ChardevConnection connection, byte[][] frames)
    {
        foreach (byte[] frame in frames)
        {
            connection.Writer.Write(frame, Vnet ? 12u : 0u);
        }

        if (!await connection.Writer.FlushAsync())
        {
            throw new IOException($"the daemon closed the connection; it said:\n{Daemon.Output}");
        }
    }

    /// <summary>Reads <paramref name="count"/> released frames (hex), failing after <paramref name="seconds"/>.</summary>
    public async Task<List<string>> ReadReleasedAsync(int count, double seconds = 20)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var frames = new List<string>();
        try
        {
            while (frames.Count < count)
            {
                using ChardevFrame frame = (await Outdev.Reader.ReadFrameAsync(timeout.Token)) ?? throw new EndOfStreamException("outdev closed");
                if (frame.VnetHdrLen != (Vnet ? 12u : 0u))
                {
                    throw new InvalidDataException($"outdev frame carries vnet_hdr_len {frame.VnetHdrLen}");
                }

                frames.Add(Convert.ToHexString(frame.Payload));
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{frames.Count} of {count} frames released; the daemon said:\n{Daemon.Output}");
        }

        return frames;
    }

    /// <summary>True if a released frame arrives within <paramref name="seconds"/>.</summary>
    public async Task<bool> AnythingReleasedAsync(double seconds)
    {
        using var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try
        {
            using ChardevFrame? frame = await Outdev.Reader.ReadFrameAsync(quiet.Token);
            return frame is not null;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Sends a notify_dev message as Xen's libxl would: with the vnet word when vnet_hdr_support is on.</summary>
    public async Task SendNotifyAsync(string message)
    {
        var writer = new ChardevFrameWriter(Notify!.Output, Vnet);
        writer.Write(System.Text.Encoding.ASCII.GetBytes(message), 0);
        if (!await writer.FlushAsync())
        {
            throw new IOException("notify_dev closed");
        }
    }

    /// <summary>The next notify_dev message as text.</summary>
    public async Task<string> ReadNotifyAsync(double seconds = 10)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try
        {
            using ChardevFrame frame = (await Notify!.Reader.ReadFrameAsync(timeout.Token)) ?? throw new EndOfStreamException();
            return System.Text.Encoding.ASCII.GetString(frame.Payload);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no notify_dev message; the daemon said:\n{Daemon.Output}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }
    }

    private T Own<T>(T disposable)
        where T : IAsyncDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }
}
