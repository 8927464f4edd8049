using System.Text;
using System.Text.Json;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>
/// The daemon as a real process (issue 8): events on its control socket (divergence, checkpoint request, checkpoint,
/// failover) and divergence captures read back by tshark. The checkpoint cycle comes from Xen's notify_dev or from a
/// scripted QMP monitor, as in <see cref="DaemonCheckpointTests"/>; the COLO pair test does the same with real QEMU.
/// </summary>
public sealed class DaemonEventsAndCaptureTests : IDisposable
{
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(120));
    private readonly string _directory = FreePort.TempSocketDirectory();

    public void Dispose()
    {
        _timeout.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private static byte[] Tcp(uint seq, string payload, byte mac = 1) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1").Tcp(80, 40000, seq, 5000, TcpControlBits.Ack | TcpControlBits.Psh, Encoding.ASCII.GetBytes(payload)).Build();

    private static byte[] Udp(string payload, byte mac = 1, ushort port = 53) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1").Udp(port, 40000, Encoding.ASCII.GetBytes(payload)).Build();

    [Fact]
    public async Task A_mismatch_is_announced_on_the_control_socket_and_captured_for_tshark_with_the_flows_queued_packets()
    {
        string control = Path.Combine(_directory, "control.sock");
        string captures = Path.Combine(_directory, "captures");
        await using DaemonRig rig = await DaemonRig.StartAsync(
            vnet: false,
            notify: true,
            ports => DaemonRig.QemuSyntax(ports.Primary, ports.Secondary, ports.Outdev, ports.Notify, ",compare_timeout=60000"),
            _timeout.Token,
            ["--control", control, "--capture", captures]);
        await rig.Daemon.WaitForLineAsync($"control socket at {control}", TimeSpan.FromSeconds(10));
        await using ControlSocketClient events = await ControlSocketClient.ConnectAsync(control, _timeout.Token);

        // Matching traffic: no event. Then a TCP flow whose secondary differs at byte 5 of its first segment.
        await rig.SendPrimaryAsync(Udp("same"));
        await rig.SendSecondaryAsync(Udp("same", mac: 2));
        Assert.Single(await rig.ReadReleasedAsync(1));
        byte[] p1 = Tcp(1000, "0123456789");
        byte[] p2 = Tcp(1010, "abcdefghij");
        byte[] s1 = Tcp(1000, "01234X6789", mac: 2);
        await rig.SendPrimaryAsync(p1, p2);
        await StatusAsync(events, nic => nic.GetProperty("queued").GetProperty("primary").GetInt64() == 2); // before the secondary's
        await rig.SendSecondaryAsync(s1);

        JsonElement divergence = await events.NextEventAsync("COLO_COMPARE_DIVERGENCE");
        Assert.Equal("comp0", divergence.GetProperty("id").GetString());
        Assert.Equal(1, divergence.GetProperty("number").GetInt64());
        Assert.Equal("Mismatch", divergence.GetProperty("reason").GetString());
        Assert.Equal("Tcp", divergence.GetProperty("protocol").GetString());
        Assert.Equal("tcp 10.0.0.10:80 > 10.0.0.1:40000", divergence.GetProperty("flow").GetString());
        Assert.Contains("TCP payload differs at sequence number 1005", divergence.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(2, divergence.GetProperty("primary-queued").GetInt32());
        Assert.True(divergence.GetProperty("captured").GetBoolean());
        JsonElement request = await events.NextEventAsync("COLO_COMPARE_CHECKPOINT_REQUEST");
        Assert.Equal("Mismatch", request.GetProperty("reason").GetString());
        Assert.True(request.GetProperty("sent").GetBoolean());

        Assert.Equal("DO_CHECKPOINT", await rig.ReadNotifyAsync());
        await rig.SendNotifyAsync("COLO_CHECKPOINT");
        JsonElement checkpoint = await events.NextEventAsync("COLO_COMPARE_CHECKPOINT");
        Assert.Equal(2, checkpoint.GetProperty("released").GetInt64());
        Assert.Equal(1, checkpoint.GetProperty("discarded").GetInt64());
        Assert.Equal("COLO_CHECKPOINT on notify_dev", checkpoint.GetProperty("flushed").GetString());
        Assert.Equal([Convert.ToHexString(p1), Convert.ToHexString(p2)], await rig.ReadReleasedAsync(2));

        // The capture: both sides in the order the daemon saw them, reason and diverging pair in the comments.
        JsonElement status = await StatusAsync(events, nic => nic.GetProperty("captures").GetProperty("written").GetInt64() > 0); // written in the background
        Assert.Equal(1, status.GetProperty("divergences").GetInt64());
        JsonElement capture = status.GetProperty("captures");
        Assert.Equal(1, capture.GetProperty("written").GetInt64());
        string file = capture.GetProperty("file").GetString()!;
        Assert.Equal(Path.Combine(captures, "comp0-000001.pcapng"), file);
        ProcessResult tshark = await ExternalProcess.RunAsync("tshark", ["-r", file, "-T", "fields", "-E", "separator=|", "-e", "frame.interface_name", "-e", "tcp.seq_raw", "-e", "frame.comment"], TimeSpan.FromSeconds(60));
        Assert.True(tshark.ExitCode == 0, tshark.Output);
        string[] rows = tshark.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, rows.Length);
        Assert.StartsWith("primary_in|1000|colo-compare divergence 1: Mismatch on tcp 10.0.0.10:80 > 10.0.0.1:40000; primary packet 1 of 2 queued, the diverging one. TCP payload differs", rows[0], StringComparison.Ordinal);
        Assert.StartsWith("primary_in|1010|", rows[1], StringComparison.Ordinal);
        Assert.StartsWith("secondary_in|1000|", rows[2], StringComparison.Ordinal);
        Assert.EndsWith("secondary packet 1 of 1 queued, the diverging one", rows[2].TrimEnd(), StringComparison.Ordinal);

        using JsonDocument scrape = JsonDocument.Parse((await ExternalProcess.RunAsync("dotnet", [DaemonProcess.AssemblyPath, "stats", control], TimeSpan.FromSeconds(30))).StandardOutput);
        Assert.Equal(1, scrape.RootElement.GetProperty("nics")[0].GetProperty("captures-written").GetInt64());
        Assert.Equal(0, await rig.Daemon.StopAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task Checkpoints_seen_over_qmp_and_failover_are_announced_with_what_they_released()
    {
        string control = Path.Combine(_directory, "control.sock");
        await using ScriptedQmpServer primary = ScriptedQmpServer.Start(Path.Combine(_directory, "p.qmp"));
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, ["--qmp", primary.Address, "--control", control, "--compare-timeout", "60000"]), _timeout.Token);
        await primary.WaitForClientAsync(TimeSpan.FromSeconds(10));
        await using ControlSocketClient events = await ControlSocketClient.ConnectAsync(control, _timeout.Token);

        await rig.SendPrimaryAsync(Udp("primary"));
        await rig.SendSecondaryAsync(Udp("second!", mac: 2));
        Assert.Equal("Udp", (await events.NextEventAsync("COLO_COMPARE_DIVERGENCE")).GetProperty("protocol").GetString());
        Assert.Equal("Mismatch", (await events.NextEventAsync("COLO_COMPARE_CHECKPOINT_REQUEST")).GetProperty("reason").GetString());
        await primary.SendEventAsync("STOP");
        await primary.SendEventAsync("RESUME");
        JsonElement checkpoint = await events.NextEventAsync("COLO_COMPARE_CHECKPOINT");
        Assert.Equal("requested, at the primary's RESUME", checkpoint.GetProperty("flushed").GetString());
        Assert.True(checkpoint.GetProperty("stopped-ms").GetDouble() > 0); // STOP to the flush at RESUME
        Assert.Equal(1, checkpoint.GetProperty("released").GetInt64());
        Assert.Single(await rig.ReadReleasedAsync(1));

        await rig.SendPrimaryAsync(Udp("waiting", port: 7), Udp("waiting too", port: 8));
        await rig.Daemon.WaitForLineAsync("in 3/", TimeSpan.FromSeconds(10));
        await primary.SendEventAsync("COLO_EXIT", """{"mode": "primary", "reason": "request"}""");
        JsonElement failover = await events.NextEventAsync("COLO_COMPARE_FAILOVER");
        Assert.Equal("primary", failover.GetProperty("mode").GetString());
        Assert.Equal("request", failover.GetProperty("reason").GetString());
        Assert.Equal(2, failover.GetProperty("released").GetInt64());
        Assert.Equal(2, (await rig.ReadReleasedAsync(2)).Count);

        // colo-compare events PATH NAME prints the named events as JSON lines until interrupted. It subscribes after
        // connecting, so checkpoints are repeated until it has seen one (each STOP/RESUME is one, failover or not).
        var printed = new StringWriter();
        TextWriter output = TextWriter.Synchronized(printed);
        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(_timeout.Token);
        Task<int> watching = Daemon.Program.RunAsync(["events", control, "COLO_COMPARE_CHECKPOINT"], output, TextWriter.Null, interrupt.Token);
        string text = string.Empty;
        for (int round = 0; round < 40 && !text.Contains("COLO_COMPARE_CHECKPOINT", StringComparison.Ordinal); round++)
        {
            await primary.SendEventAsync("STOP");
            await primary.SendEventAsync("RESUME");
            await Task.Delay(250, _timeout.Token);
            lock (output)
            {
                text = printed.ToString();
            }
        }

        await interrupt.CancelAsync();
        Assert.Equal(0, await watching);
        string line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0];
        using var json = JsonDocument.Parse(line);
        Assert.Equal("COLO_COMPARE_CHECKPOINT", json.RootElement.GetProperty("event").GetString());
        Assert.Equal("periodic, at the primary's RESUME", json.RootElement.GetProperty("data").GetProperty("flushed").GetString());
        Assert.DoesNotContain("COLO_COMPARE_DIVERGENCE", text, StringComparison.Ordinal);
    }

    /// <summary>The first NIC's status once <paramref name="condition"/> holds (10 s at most).</summary>
    private async Task<JsonElement> StatusAsync(ControlSocketClient control, Func<JsonElement, bool> condition)
    {
        for (int i = 0; ; i++)
        {
            JsonElement nic = (await control.ExecuteAsync("query-status")).GetProperty("nics")[0];
            if (condition(nic) || i == 200)
            {
                return nic;
            }

            await Task.Delay(50, _timeout.Token);
        }
    }

    [Fact]
    public async Task A_chardev_peer_leaving_and_coming_back_is_announced()
    {
        string control = Path.Combine(_directory, "control.sock");
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, ["--control", control]), _timeout.Token);
        await rig.Daemon.WaitForLineAsync($"control socket at {control}", TimeSpan.FromSeconds(10));
        await using ControlSocketClient events = await ControlSocketClient.ConnectAsync(control, _timeout.Token);

        // The secondary's red1 goes away (its QEMU restarted, say), then reconnects.
        await rig.Secondary.DisposeAsync();
        JsonElement gone = await events.NextEventAsync("COLO_COMPARE_CHARDEV");
        Assert.Equal(("secondary_in", false, 1), (gone.GetProperty("endpoint").GetString(), gone.GetProperty("connected").GetBoolean(), gone.GetProperty("connections").GetInt32()));
        Assert.Equal($"127.0.0.1:{rig.SecondaryPort}", gone.GetProperty("address").GetString());
        await using ChardevProtocol.Endpoints.ChardevConnection again = await rig.SecondaryClient.ConnectAsync(_timeout.Token);
        JsonElement back = await events.NextEventAsync("COLO_COMPARE_CHARDEV");
        Assert.Equal(("secondary_in", true, 2), (back.GetProperty("endpoint").GetString(), back.GetProperty("connected").GetBoolean(), back.GetProperty("connections").GetInt32()));
    }

    [Fact]
    public async Task A_capture_directory_that_cannot_be_written_stops_the_daemon_with_one_line()
    {
        string file = Path.Combine(_directory, "a-file");
        await File.WriteAllTextAsync(file, "not a directory");
        await using DaemonProcess daemon = DaemonProcess.Start(["--primary-in", "tcp:127.0.0.1:1", "--secondary-in", $"tcp:127.0.0.1:{FreePort.Next()},server", "--outdev", "tcp:127.0.0.1:3", "--capture", file]);
        Assert.Equal(1, await daemon.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"colo-compare: --capture {file}: cannot write there", daemon.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", daemon.Output, StringComparison.Ordinal);
    }
}
