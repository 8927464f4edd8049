using System.Diagnostics;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;

namespace ColoChardev.Testbed;

/// <summary>A chardev of the daemon's, by QEMU's name for its role.</summary>
public enum ChardevRole
{
    PrimaryIn,
    SecondaryIn,
    OutDev,
    NotifyDev,
}

/// <summary>Who listens on the daemon's four chardevs, and over what.</summary>
public enum ChurnMode
{
    /// <summary>Every chardev a TCP server of the daemon's on 127.0.0.1; our peers connect.</summary>
    DaemonServesTcp,

    /// <summary>Every chardev a Unix-socket server of the daemon's.</summary>
    DaemonServesUnix,

    /// <summary>We listen on TCP; the daemon connects, with <c>reconnect=1</c> as QEMU users write it.</summary>
    DaemonConnectsTcp,

    /// <summary>We listen on Unix sockets; the daemon connects.</summary>
    DaemonConnectsUnix,
}

/// <summary>
/// One long-lived daemon with all four chardevs (primary_in, secondary_in, outdev, notify_dev) in one
/// <see cref="ChurnMode"/>, in QEMU's own <c>-chardev … -object colo-compare</c> syntax, and our peers on the other
/// side of each, which come and go as QEMUs, operators and sidecars do: <see cref="ConnectAsync"/> and
/// <see cref="CloseAsync"/> one role at a time. Where we listen, a close also closes our listener (a peer that
/// restarts), so the daemon must reconnect to a fresh one.
/// </summary>
public sealed class ChurnRig : IAsyncDisposable
{
    private readonly Dictionary<ChardevRole, Peer> _peers = [];
    private readonly string _directory = FreePort.TempSocketDirectory();

    private ChurnRig(ChurnMode mode)
    {
        Mode = mode;
        ControlPath = Path.Combine(_directory, "control.sock");
    }

    public ChurnMode Mode { get; }

    public DaemonProcess Daemon { get; private set; } = null!;

    /// <summary>The daemon's <c>--control</c> socket.</summary>
    public string ControlPath { get; }

    public bool DaemonServes => Mode is ChurnMode.DaemonServesTcp or ChurnMode.DaemonServesUnix;

    public static ChardevRole[] Roles { get; } = Enum.GetValues<ChardevRole>();

    /// <summary>Starts the daemon (our listeners first when the daemon connects) and connects every role.</summary>
    public static async Task<ChurnRig> StartAsync(ChurnMode mode, string objectOptions, IEnumerable<string> extra, CancellationToken token)
    {
        var rig = new ChurnRig(mode);
        try
        {
            var arguments = new List<string>();
            foreach (ChardevRole role in Roles)
            {
                var peer = new Peer(role, rig.Address(role));
                rig._peers[role] = peer;
                if (!rig.DaemonServes)
                {
                    peer.Listen();
                }

                arguments.AddRange(["-chardev", rig.DaemonSpec(peer)]);
            }

            arguments.AddRange(
            [
                "-object", "iothread,id=iothread1",
                "-object", "colo-compare,id=comp0,primary_in=pri,secondary_in=sec,outdev=out,notify_dev=ntf,iothread=iothread1" + objectOptions,
                "--control", rig.ControlPath, "--summary-interval", "1", .. extra,
            ]);
            rig.Daemon = DaemonProcess.Start(arguments);
            await rig.ConnectAllAsync(token);
            return rig;
        }
        catch
        {
            await rig.DisposeAsync();
            throw;
        }
    }

    /// <summary>Our live connection for <paramref name="role"/>.</summary>
    public ChardevConnection Connection(ChardevRole role) =>
        _peers[role].Connection ?? throw new InvalidOperationException($"{role} is not connected");

    /// <summary>Connects our peer for <paramref name="role"/> (a client connects; a server re-listens and accepts).</summary>
    public async Task ConnectAsync(ChardevRole role, CancellationToken token)
    {
        Peer peer = _peers[role];
        if (peer.Connection is not null)
        {
            return;
        }

        peer.Endpoint ??= DaemonServes ? peer.Client() : peer.Listen();
        try
        {
            peer.Connection = await peer.Endpoint.ConnectAsync(token).AsTask().WaitAsync(TimeSpan.FromSeconds(20), token);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{role}: no connection within 20 s; the daemon said:\n{Daemon.Output}");
        }
    }

    public async Task ConnectAllAsync(CancellationToken token)
    {
        foreach (ChardevRole role in Roles)
        {
            await ConnectAsync(role, token);
        }
    }

    /// <summary>
    /// Our peer for <paramref name="role"/> goes away: its connection closes (and, where we listen, its listener);
    /// with <paramref name="reset"/>, with a TCP RST instead of a FIN, as a crashed peer's does.
    /// </summary>
    public async Task CloseAsync(ChardevRole role, bool reset = false)
    {
        Peer peer = _peers[role];
        if (peer.Connection is not null)
        {
            if (reset)
            {
                peer.Connection.Abort();
            }

            await peer.Connection.DisposeAsync();
            peer.Connection = null;
        }

        if (!DaemonServes && peer.Endpoint is not null)
        {
            await peer.Endpoint.DisposeAsync();
            peer.Endpoint = null;
        }
    }

    public async Task CloseAllAsync(bool reset = false)
    {
        foreach (ChardevRole role in Roles)
        {
            await CloseAsync(role, reset);
        }
    }

    /// <summary>Sends frames (no vnet word) on <paramref name="role"/>.</summary>
    public async Task SendAsync(ChardevRole role, IEnumerable<byte[]> frames)
    {
        ChardevConnection connection = Connection(role);
        foreach (byte[] frame in frames)
        {
            connection.Writer.Write(frame, 0);
        }

        if (!await connection.Writer.FlushAsync())
        {
            throw new IOException($"{role}: the daemon closed the connection; it said:\n{Daemon.Output}");
        }
    }

    /// <summary>Reads <paramref name="count"/> frames from outdev, failing after <paramref name="seconds"/>.</summary>
    public async Task<List<byte[]>> ReadOutdevAsync(int count, double seconds = 20)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var frames = new List<byte[]>();
        try
        {
            while (frames.Count < count)
            {
                using ChardevFrame frame = (await Connection(ChardevRole.OutDev).Reader.ReadFrameAsync(timeout.Token))
                    ?? throw new EndOfStreamException($"outdev closed after {frames.Count} of {count} frames; the daemon said:\n{Daemon.Output}");
                frames.Add(frame.Payload.ToArray());
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{frames.Count} of {count} frames on outdev within {seconds} s; the daemon said:\n{Daemon.Output}");
        }

        return frames;
    }

    /// <summary>True when nothing arrives on outdev within <paramref name="seconds"/>.</summary>
    public async Task<bool> OutdevQuietAsync(double seconds)
    {
        using var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try
        {
            using ChardevFrame? frame = await Connection(ChardevRole.OutDev).Reader.ReadFrameAsync(quiet.Token);
            return false;
        }
        catch (OperationCanceledException)
        {
            return true;
        }
    }

    /// <summary>The next notify_dev message as text.</summary>
    public async Task<string> ReadNotifyAsync(double seconds = 20)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try
        {
            using ChardevFrame frame = (await Connection(ChardevRole.NotifyDev).Reader.ReadFrameAsync(timeout.Token)) ?? throw new EndOfStreamException("notify_dev closed");
            return System.Text.Encoding.ASCII.GetString(frame.Payload);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no notify_dev message within {seconds} s; the daemon said:\n{Daemon.Output}");
        }
    }

    public Task SendNotifyAsync(string message) => SendAsync(ChardevRole.NotifyDev, [System.Text.Encoding.ASCII.GetBytes(message)]);

    public async ValueTask DisposeAsync()
    {
        foreach (Peer peer in _peers.Values)
        {
            if (peer.Connection is not null)
            {
                await peer.Connection.DisposeAsync();
            }

            if (peer.Endpoint is not null)
            {
                await peer.Endpoint.DisposeAsync();
            }
        }

        if (Daemon is not null)
        {
            await Daemon.DisposeAsync();
        }

        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string Address(ChardevRole role) =>
        Mode is ChurnMode.DaemonServesUnix or ChurnMode.DaemonConnectsUnix
            ? "path=" + Path.Combine(_directory, role.ToString().ToLowerInvariant() + ".sock")
            : $"host=127.0.0.1,port={FreePort.Next()}";

    private string DaemonSpec(Peer peer)
    {
        string id = peer.Role switch
        {
            ChardevRole.PrimaryIn => "pri",
            ChardevRole.SecondaryIn => "sec",
            ChardevRole.OutDev => "out",
            _ => "ntf",
        };
        return $"socket,id={id},{peer.Address}," + (DaemonServes ? "server=on,wait=off" : "reconnect=1");
    }

    private sealed class Peer(ChardevRole role, string address)
    {
        public ChardevRole Role { get; } = role;

        public string Address { get; } = address;

        public ChardevEndpoint? Endpoint { get; set; }

        public ChardevConnection? Connection { get; set; }

        public ChardevEndpoint Client() =>
            new(ChardevSocketSpec.Parse($"socket,id=peer-{Role},{Address}"), new ChardevEndpointOptions { InitialBackoff = TimeSpan.FromMilliseconds(10), MaxBackoff = TimeSpan.FromMilliseconds(50) });

        public ChardevEndpoint Listen()
        {
            var endpoint = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=peer-{Role},{Address},server=on,wait=off"));
            var clock = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    endpoint.StartListening();
                    Endpoint = endpoint;
                    return endpoint;
                }
                catch (ChardevEndpointException) when (clock.Elapsed < TimeSpan.FromSeconds(5))
                {
                    // The old listener's port may linger for a moment.
                    Thread.Sleep(20);
                }
            }
        }
    }
}
