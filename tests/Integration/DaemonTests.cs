using System.Net.Sockets;
using System.Text;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>The daemon as a real process over real sockets, driven the way QEMU's filters drive colo-compare.</summary>
public sealed class DaemonTests : IDisposable
{
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(120));

    public void Dispose() => _timeout.Dispose();

    private CancellationToken Token => _timeout.Token;

    private static byte[] Tcp(uint seq, string payload, int vnet = 0, byte mac = 1, ushort port = 80) =>
        new FrameBuilder().Vnet(vnet).SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", mac).Tcp(port, 40000, seq, 900, TcpControlBits.Ack | TcpControlBits.Psh, Encoding.ASCII.GetBytes(payload)).Build();

    private static byte[] Udp(string payload, int vnet = 0, byte mac = 1, ushort port = 53) =>
        new FrameBuilder().Vnet(vnet).SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", mac).Udp(port, 40000, Encoding.ASCII.GetBytes(payload)).Build();

    private static byte[] Icmp(string payload, int vnet = 0, byte mac = 1) =>
        new FrameBuilder().Vnet(vnet).SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", mac).Icmp(0, 0, 3, 1, Encoding.ASCII.GetBytes(payload)).Build();

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public async Task Matching_traffic_is_released_and_a_mismatch_asks_notify_dev_for_a_checkpoint_whose_completion_flushes(bool qemuSyntax, bool vnet)
    {
        int v = vnet ? 12 : 0;
        await using DaemonRig rig = await DaemonRig.StartAsync(
            vnet,
            notify: true,
            ports => qemuSyntax
                ? DaemonRig.QemuSyntax(ports.Primary, ports.Secondary, ports.Outdev, ports.Notify, vnet ? ",vnet_hdr_support=on" : string.Empty)
                : DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, ports.Notify, vnet ? ["--vnet-hdr-support"] : []),
            Token);

        // TCP, UDP and ICMP that match; then the segmentation case of QEMU commit f449c9e549.
        byte[][] primary = [Tcp(1000, "hello", v), Udp("dns", v), Icmp("ping", v), Tcp(1005, "123", v), Tcp(1008, "4567890", v)];
        await rig.SendPrimaryAsync(primary);
        await rig.SendSecondaryAsync(Tcp(1000, "hello", v, mac: 2), Udp("dns", v, mac: 2), Icmp("ping", v, mac: 2), Tcp(1005, "1234567890", v, mac: 2));
        List<string> released = await rig.ReadReleasedAsync(primary.Length);
        Assert.Equal(primary.Select(Convert.ToHexString).Order(), released.Order());

        // A mismatch: nothing released, DO_CHECKPOINT on notify_dev; COLO_CHECKPOINT makes the daemon flush.
        byte[] diverging = Udp("primary says", v, port: 54);
        await rig.SendPrimaryAsync(diverging);
        await rig.SendSecondaryAsync(Udp("second says", v, mac: 2, port: 54));
        Assert.Equal("DO_CHECKPOINT", await rig.ReadNotifyAsync());
        Assert.False(await rig.AnythingReleasedAsync(0.3));
        await rig.SendNotifyAsync("COLO_CHECKPOINTX"); // matched by exact length and bytes, as QEMU does: not a flush
        await rig.Daemon.WaitForLineAsync("unsupported instruction 'COLO_CHECKPOINTX'", TimeSpan.FromSeconds(10));
        Assert.False(await rig.AnythingReleasedAsync(0.3));
        await rig.SendNotifyAsync("COLO_CHECKPOINT");
        Assert.Equal([Convert.ToHexString(diverging)], await rig.ReadReleasedAsync(1));

        // The Xen handshake, with QEMU's framing quirk (our message carries the vnet word when vnet is on, the reply never does).
        await rig.SendNotifyAsync("COLO_USERSPACE_PROXY_INIT");
        Assert.Equal("COLO_COMPARE_GET_XEN_INIT", await rig.ReadNotifyAsync());
        Assert.Equal(0, await rig.Daemon.StopAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task A_lonely_packet_times_out_into_a_checkpoint_request()
    {
        await using DaemonRig rig = await DaemonRig.StartAsync(
            vnet: false,
            notify: true,
            ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, ports.Notify, ["--compare-timeout", "300", "--expired-scan-cycle", "100"]),
            Token);
        await rig.SendPrimaryAsync(Udp("nobody answers"));
        Assert.Equal("DO_CHECKPOINT", await rig.ReadNotifyAsync(10));
        await rig.SendNotifyAsync("COLO_CHECKPOINT");
        Assert.Single(await rig.ReadReleasedAsync(1));
        string summary = await rig.Daemon.WaitForLineAsync("checkpoints 1", TimeSpan.FromSeconds(5));
        Assert.Contains("mismatch 0, timeout ", summary, StringComparison.Ordinal);
        Assert.DoesNotContain("timeout 0,", summary, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sigterm_releases_every_queued_primary_packet_then_exits_0()
    {
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, []), Token);
        byte[][] queued = [.. Enumerable.Range(0, 50).Select(i => Udp($"waiting {i}", port: (ushort)(100 + i)))];
        await rig.SendPrimaryAsync(queued);
        await rig.Daemon.WaitForLineAsync("in 50/", TimeSpan.FromSeconds(10)); // the summary shows them accepted
        Assert.False(await rig.AnythingReleasedAsync(0.2));
        Task<List<string>> reading = rig.ReadReleasedAsync(50);
        Assert.Equal(0, await rig.Daemon.StopAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(queued.Select(Convert.ToHexString).Order(), (await reading).Order());
        Assert.Contains(rig.Daemon.Lines, l => l.Contains("50 queued primary frames released", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Without_any_checkpoint_channel_the_daemon_still_compares_and_counts_the_requests_it_could_not_send()
    {
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, []), Token);
        await rig.SendPrimaryAsync(Udp("x", port: 1));
        await rig.SendSecondaryAsync(Udp("y", mac: 2, port: 1));
        await rig.Daemon.WaitForLineAsync("no way to ask for one", TimeSpan.FromSeconds(10));
        await rig.SendPrimaryAsync(Udp("same", port: 2));
        await rig.SendSecondaryAsync(Udp("same", mac: 2, port: 2));
        Assert.Single(await rig.ReadReleasedAsync(1));
        await rig.Daemon.WaitForLineAsync("unsent 1", TimeSpan.FromSeconds(5));
    }

    [Trait("Qemu", "real")]
    [Fact]
    public async Task A_mismatch_asks_the_real_primary_qemu_for_a_checkpoint_by_re_sending_its_x_checkpoint_delay()
    {
        string directory = FreePort.TempSocketDirectory();
        try
        {
            string monitor = Path.Combine(directory, "primary.qmp");
            string second = Path.Combine(directory, "operator.qmp");
            await using QemuProcess qemu = QemuProcess.Start([
                "-M", "none", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none",
                "-trace", "qmp_enter_migrate_set_parameters",
                "-qmp", $"unix:{monitor},server=on,wait=off", "-qmp", $"unix:{second},server=on,wait=off"]);
            await using QmpClient operatorMonitor = await QmpConnect.WhenReadyAsync(second, Token, qemu);
            await operatorMonitor.SetCheckpointDelayAsync(7777, Token);
            await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, ["--qmp", "unix:" + monitor]), Token);
            await rig.Daemon.WaitForLineAsync("QMP primary monitor", TimeSpan.FromSeconds(10));
            int before = qemu.StandardError.Split('\n').Count(l => l.Contains("qmp_enter_migrate_set_parameters", StringComparison.Ordinal));

            await rig.SendPrimaryAsync(Tcp(1, "primary"));
            await rig.SendSecondaryAsync(Tcp(1, "second!", mac: 2));
            await rig.Daemon.WaitForLineAsync("checkpoint requested over QMP", TimeSpan.FromSeconds(10));
            string[] traced = qemu.StandardError.Split('\n').Where(l => l.Contains("qmp_enter_migrate_set_parameters", StringComparison.Ordinal)).ToArray();
            Assert.Equal(before + 1, traced.Length);
            Assert.Contains("\"x-checkpoint-delay\": 7777", traced[^1], StringComparison.Ordinal);
            Assert.Equal(7777u, (await operatorMonitor.QueryMigrateParametersAsync(Token)).XCheckpointDelay);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task Peers_that_disconnect_and_return_are_taken_back_and_malformed_frames_lose_nothing()
    {
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, []), Token);

        // Malformed packets: released uncompared from primary_in, dropped from secondary_in.
        byte[] runt = [1, 2, 3];
        await rig.SendPrimaryAsync(runt);
        await rig.SendSecondaryAsync(runt);
        Assert.Equal([Convert.ToHexString(runt)], await rig.ReadReleasedAsync(1));

        // An oversized frame on primary_in: that connection is closed and taken again; the next frames flow.
        rig.Primary.Writer.Write([0], 0);
        await rig.Primary.Output.WriteAsync(new byte[] { 0x00, 0x01, 0x11, 0x70, 9, 9, 9, 9 }, Token);
        await rig.Primary.Output.FlushAsync(Token);
        await rig.Daemon.WaitForLineAsync("70000", TimeSpan.FromSeconds(10));
        Assert.Single(await rig.ReadReleasedAsync(1)); // the 1-byte frame before it, released uncompared
        await rig.Primary.DisposeAsync(); // our server side of the old connection (one peer at a time, as QEMU's)
        await using (var primaryAgain = await rig.PrimaryServer.ConnectAsync(Token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Token))
        {
            primaryAgain.Writer.Write(Udp("after reconnect"), 0);
            Assert.True(await primaryAgain.Writer.FlushAsync(Token));
            await rig.SendSecondaryAsync(Udp("after reconnect", mac: 2));
            Assert.Single(await rig.ReadReleasedAsync(1));
        }

        // A zero-length frame on secondary_in is counted, never a crash; the secondary then leaves and comes back.
        await rig.Secondary.Output.WriteAsync(new byte[4], Token);
        await rig.Secondary.Output.FlushAsync(Token);
        await rig.Secondary.DisposeAsync();
        await using var secondaryAgain = await rig.SecondaryClient.ConnectAsync(Token);
        byte[] late = Udp("late", port: 99);
        await using (var primaryThird = await rig.PrimaryServer.ConnectAsync(Token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Token))
        {
            primaryThird.Writer.Write(late, 0);
            Assert.True(await primaryThird.Writer.FlushAsync(Token));
            secondaryAgain.Writer.Write(Udp("late", mac: 2, port: 99), 0);
            Assert.True(await secondaryAgain.Writer.FlushAsync(Token));
            Assert.Equal([Convert.ToHexString(late)], await rig.ReadReleasedAsync(1));
        }

        Assert.False(rig.Daemon.HasExited, rig.Daemon.Output);
    }

    [Fact]
    public async Task A_stalled_outdev_reader_pauses_the_inputs_for_stall_ms_then_what_cannot_be_held_is_counted()
    {
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, []), Token, ["--outdev-backlog-mb", "1", "--outdev-stall-ms", "300"]);
        // We never read outdev from here on. 20,000 matching 1,400-byte packets are ~28 MB: far more than the
        // socket buffers and the 1 MB backlog. The inputs pause (back-pressure) until outdev has taken nothing for
        // 300 ms, then flow again and released frames beyond the backlog are dropped, counted.
        byte[] payload = new byte[1400];
        const int Count = 20_000;
        for (int i = 0; i < Count; i += 100)
        {
            byte[][] primary = [.. Enumerable.Range(i, 100).Select(n => new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Udp((ushort)(1 + (n % 50000)), 9, payload).Build())];
            byte[][] secondary = [.. primary.Select(f => (byte[])f.Clone())];
            await rig.SendPrimaryAsync(primary).WaitAsync(TimeSpan.FromSeconds(30), Token);
            await rig.SendSecondaryAsync(secondary).WaitAsync(TimeSpan.FromSeconds(30), Token);
        }

        string summary = await rig.Daemon.WaitForLineAsync($"in {Count}/{Count}", TimeSpan.FromSeconds(30));
        Assert.Contains($"released {Count}", summary, StringComparison.Ordinal);
        int dropped = int.Parse(summary.Split("dropped ")[^1].Split(',')[0], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(dropped > 0, summary);
        Assert.Contains(rig.Daemon.Lines, l => l.Contains("outdev took no bytes for", StringComparison.Ordinal));
        Assert.Contains(rig.Daemon.Lines, l => l.Contains("outdev backlog is full", StringComparison.Ordinal));
        using var process = System.Diagnostics.Process.GetProcessById(rig.Daemon.ProcessId);
        Assert.True(process.WorkingSet64 < 400L * 1024 * 1024, $"the daemon uses {process.WorkingSet64 / (1024 * 1024)} MB");
    }

    [Fact]
    public async Task Under_systemd_the_daemon_reports_ready_once_its_endpoints_are_open()
    {
        string directory = FreePort.TempSocketDirectory();
        try
        {
            string notifyPath = Path.Combine(directory, "notify.sock");
            using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            notify.Bind(new UnixDomainSocketEndPoint(notifyPath));
            int secondary = FreePort.Next();
            await using DaemonProcess daemon = DaemonProcess.Start(
                DaemonRig.PlainSyntax(FreePort.Next(), secondary, FreePort.Next(), 0, []),
                new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notifyPath },
                shellPrefix: "SYSTEMD_EXEC_PID=$$; export SYSTEMD_EXEC_PID;"); // as systemd 248+ sets it
            byte[] buffer = new byte[256];
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(Token);
            wait.CancelAfter(TimeSpan.FromSeconds(30));
            int n = await notify.ReceiveAsync(buffer, SocketFlags.None, wait.Token);
            Assert.Contains("READY=1", Encoding.ASCII.GetString(buffer, 0, n), StringComparison.Ordinal);

            // Ready means listening: the secondary_in server accepts a connection.
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await probe.ConnectAsync(System.Net.IPAddress.Loopback, secondary, Token);
            Assert.Equal(0, await daemon.StopAsync(TimeSpan.FromSeconds(20)));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Theory]
    [InlineData("--frobnicate", "'--frobnicate'")]
    [InlineData("-object colo-compare,id=c,primary_in=a,secondary_in=b,outdev=c", "primary_in=a names no -chardev")]
    [InlineData("--primary-in tcp:127.0.0.1:1 --secondary-in tcp:127.0.0.1:2", "'--outdev' is required")]
    [InlineData("--primary-in tcp:127.0.0.1:1 --secondary-in tcp:127.0.0.1:2 --outdev tcp:127.0.0.1:3 --compare-timeout 0", "'--compare-timeout=0'")]
    [InlineData("-chardev socket,id=a,host=127.0.0.1,port=1,colour=red", "'colour=red'")]
    [InlineData("--primary-in tcp:127.0.0.1:1 --secondary-in tcp:127.0.0.1:2 --outdev tcp:127.0.0.1:3 --outdev-stall-ms 0", "'--outdev-stall-ms=0'")]
    [InlineData("--primary-in tcp:127.0.0.1:1 --secondary-in tcp:127.0.0.1:2 --outdev tcp:127.0.0.1:3 --metrics 70000", "'--metrics=70000'")]
    [InlineData("--primary-in tcp:127.0.0.1:1 --secondary-in tcp:127.0.0.1:2 --outdev tcp:127.0.0.1:3 --bypass proto=tcp,port=99999", "port '99999'")]
    [InlineData("--primary-in tcp:127.0.0.1:1 --secondary-in tcp:127.0.0.1:2 --outdev tcp:127.0.0.1:3 --queue-budget-mb", "'--queue-budget-mb' needs a value")]
    [InlineData("-chardev socket,id=a,path=/x,port=1", "both a TCP address (host/port) and a Unix path")]
    public async Task A_bad_argument_gets_one_clear_line_naming_it_and_exit_code_2(string arguments, string named)
    {
        await using DaemonProcess daemon = DaemonProcess.Start(arguments.Split(' '));
        Assert.Equal(2, await daemon.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        string line = Assert.Single(daemon.Lines, l => l.Length > 0);
        Assert.Contains(named, line, StringComparison.Ordinal);
        Assert.Equal(line, Assert.Single(daemon.ErrorLines));
    }
}
