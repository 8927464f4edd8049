using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>
/// QEMU 7.2 to 10.2's filter-redirector stops reading its indev after the peer leaves once (spec §1.4); 11.x's goes on
/// reading. A primary QEMU with the standard redirectors (redire0 reads compare_out, redire1 writes compare0) and a
/// socket netdev shows where released traffic goes: out of the netdev, to us.
/// </summary>
[Trait("Qemu", "real")]
public sealed class DaemonRedirectorTests : IDisposable
{
    private readonly string _directory = FreePort.TempSocketDirectory();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(120));

    public void Dispose()
    {
        _timeout.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private CancellationToken Token => _timeout.Token;

    [Fact]
    public async Task After_the_daemon_restarts_restore_redirector_makes_qemu_read_outdev_again()
    {
        using var wire = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        wire.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        wire.Listen(1);
        int wirePort = ((IPEndPoint)wire.LocalEndPoint!).Port;
        int compareOut = FreePort.Next();
        int compare0 = FreePort.Next();
        string qmp = Path.Combine(_directory, "primary.qmp");
        await using QemuProcess qemu = QemuProcess.Start([
            "-M", "pc", "-accel", "tcg", "-m", "32", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none",
            "-netdev", $"socket,id=hn0,connect=127.0.0.1:{wirePort}", "-device", "rtl8139,netdev=hn0,romfile=",
            "-chardev", $"socket,id=compare_out,host=127.0.0.1,port={compareOut},server=on,wait=off",
            "-chardev", $"socket,id=compare0,host=127.0.0.1,port={compare0},server=on,wait=off",
            "-object", "filter-redirector,id=redire0,netdev=hn0,queue=rx,indev=compare_out",
            "-object", "filter-redirector,id=redire1,netdev=hn0,queue=rx,outdev=compare0",
            "-qmp", $"unix:{qmp},server=on,wait=off"]);
        using Socket netdevPeer = await wire.AcceptAsync(Token);
        await (await QmpConnect.WhenReadyAsync(qmp, Token, qemu)).DisposeAsync();

        // The daemon's inputs are ours (no guest runs here); its outdev is QEMU's compare_out, read by redire0.
        await using var primaryServer = new ChardevEndpoint(ChardevSocketSpec.Parse("socket,id=compare0-stand-in,host=127.0.0.1,port=0,server=on,wait=off"));
        primaryServer.StartListening();

        async Task<bool> ThroughAsync(IEnumerable<string> extra, string payload)
        {
            int secondaryPort = FreePort.Next();
            await using DaemonProcess daemon = DaemonProcess.Start([
                "--primary-in", $"tcp:127.0.0.1:{primaryServer.ListenPort}",
                "--secondary-in", $"tcp:127.0.0.1:{secondaryPort},server,nowait",
                "--outdev", $"tcp:127.0.0.1:{compareOut}",
                "--summary-interval", "0", .. extra]);
            await using ChardevConnection toPrimary = await primaryServer.ConnectAsync(Token);
            await using var secondary = new ChardevEndpoint(ChardevSocketSpec.Parse($"tcp:127.0.0.1:{secondaryPort}"));
            await using ChardevConnection toSecondary = await secondary.ConnectAsync(Token);
            await daemon.WaitForLineAsync("'outdev': connected", TimeSpan.FromSeconds(20));
            if (extra.Any())
            {
                // 11.x: the daemon sees the version and leaves the redirector alone, saying so.
                await daemon.WaitForLineAsync(RedirectorSurvives ? "left as it is: QEMU " + QemuBinary.Version : "re-created over QMP", TimeSpan.FromSeconds(20));
            }

            // A frame that matches on both sides: the daemon releases it to compare_out, redire0 injects it, and the
            // socket netdev sends it to us.
            byte[] frame = new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Udp(7, 7, Encoding.ASCII.GetBytes(payload)).Build();
            toPrimary.Writer.Write(frame, 0);
            Assert.True(await toPrimary.Writer.FlushAsync(Token));
            toSecondary.Writer.Write(frame, 0);
            Assert.True(await toSecondary.Writer.FlushAsync(Token));
            bool arrived = await ReceiveFromNetdevAsync(netdevPeer, frame, TimeSpan.FromSeconds(3));
            Assert.Equal(0, await daemon.StopAsync(TimeSpan.FromSeconds(20)));
            if (!arrived && extra.Any())
            {
                await using ColoChardev.Qmp.QmpClient probe = await QmpConnect.WhenReadyAsync(qmp, Token, qemu);
                string chardevs = (await probe.ExecuteAsync("query-chardev", null, Token)).GetRawText();
                Assert.Fail(daemon.Output + "\n" + chardevs);
            }

            return arrived;
        }

        Assert.True(await ThroughAsync([], "first daemon"), "the first daemon's release never left QEMU");
        Assert.True(
            RedirectorSurvives == await ThroughAsync([], "second daemon, no restore"),
            RedirectorSurvives ? $"{QemuBinary.Label} did not read outdev again by itself" : $"{QemuBinary.Label} read outdev again without a restore");
        Assert.True(await ThroughAsync(["--qmp", "unix:" + qmp, "--restore-redirector", "redire0,before=redire1"], "third daemon, restored"), "the restored redirector does not read outdev");
        Assert.True(await ThroughAsync(["--qmp", "unix:" + qmp, "--restore-redirector", "redire0,before=redire1"], "fourth daemon, restored again"), "the redirector restored twice does not read outdev");
    }

    /// <summary>From 11.0 the redirector re-arms its indev when a new peer connects (upstream 5193528b9f).</summary>
    private static bool RedirectorSurvives => QemuBinary.AtLeast(11, 0);

    private static async Task<bool> ReceiveFromNetdevAsync(Socket peer, byte[] expected, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        byte[] buffer = new byte[4096];
        var received = new List<byte>();
        try
        {
            while (true)
            {
                int n = await peer.ReceiveAsync(buffer, SocketFlags.None, cancel.Token);
                received.AddRange(buffer.AsSpan(0, n).ToArray());
                while (received.Count >= 4)
                {
                    int length = BinaryPrimitives.ReadInt32BigEndian(received.GetRange(0, 4).ToArray());
                    if (received.Count < 4 + length)
                    {
                        break;
                    }

                    byte[] frame = received.GetRange(4, length).ToArray();
                    received.RemoveRange(0, 4 + length);
                    if (frame.AsSpan().SequenceEqual(expected))
                    {
                        return true;
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
