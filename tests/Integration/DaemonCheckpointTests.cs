using System.Text;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>
/// The daemon's checkpoint cycle over QMP. A standalone QEMU never checkpoints, so the COLO events come from scripted
/// monitors here (the only fake peer in these tests, for events that need a running COLO pair); a real QEMU shows
/// that an operator's stop/cont is not taken for a checkpoint.
/// </summary>
public sealed class DaemonCheckpointTests : IDisposable
{
    private readonly string _directory = FreePort.TempSocketDirectory();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(90));

    public void Dispose()
    {
        _timeout.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private CancellationToken Token => _timeout.Token;

    private static byte[] Udp(string payload, byte mac = 1, ushort port = 53) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1").Udp(port, 40000, Encoding.ASCII.GetBytes(payload)).Build();

    [Fact]
    public Task Queued_packets_leave_at_the_secondarys_RESUME_never_at_STOP_or_MIGRATION_PASS() =>
        // The checkpoint as QEMU 7.2 reports it: secondary STOP, primary STOP, MIGRATION_PASS, secondary RESUME, primary RESUME.
        CheckpointReleasesAtTheSecondarysResumeAsync(migrationPass: true, status: "colo");

    [Fact]
    public Task A_checkpoint_without_MIGRATION_PASS_over_before_query_status_answers_is_still_seen_as_qemu_11_reports_it() =>
        // QEMU 11.1.3's checkpoint: secondary STOP, primary STOP, secondary RESUME, primary RESUME, a few ms in all.
        CheckpointReleasesAtTheSecondarysResumeAsync(migrationPass: false, status: "running");

    /// <summary>A request, then one checkpoint as the monitors report it: released at the secondary's RESUME, not before.</summary>
    private async Task CheckpointReleasesAtTheSecondarysResumeAsync(bool migrationPass, string status)
    {
        await using ScriptedQmpServer primary = ScriptedQmpServer.Start(Path.Combine(_directory, "p.qmp"));
        await using ScriptedQmpServer secondary = ScriptedQmpServer.Start(Path.Combine(_directory, "s.qmp"));
        primary.Status = status;
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, ["--qmp", primary.Address, "--secondary-qmp", secondary.Address]), Token);
        await primary.WaitForClientAsync(TimeSpan.FromSeconds(10));
        await secondary.WaitForClientAsync(TimeSpan.FromSeconds(10));

        byte[] held = Udp("primary");
        await rig.SendPrimaryAsync(held);
        await rig.SendSecondaryAsync(Udp("second!", mac: 2));
        await rig.Daemon.WaitForLineAsync("checkpoint requested over QMP", TimeSpan.FromSeconds(10));
        Assert.Contains("query-migrate-parameters", primary.Commands);
        Assert.Contains("migrate-set-parameters", primary.Commands);

        await secondary.SendEventAsync("STOP");
        if (!migrationPass)
        {
            await Task.Delay(100, Token); // the secondary's STOP is read first, as on a real pair
        }

        await primary.SendEventAsync("STOP");
        if (migrationPass)
        {
            await primary.SendEventAsync("MIGRATION_PASS", """{"pass": 1}""");
        }

        Assert.False(await rig.AnythingReleasedAsync(0.5), "released before the secondary held the new state");
        await secondary.SendEventAsync("RESUME");
        Assert.Equal([Convert.ToHexString(held)], await rig.ReadReleasedAsync(1));
        await primary.SendEventAsync("RESUME");
        await rig.Daemon.WaitForLineAsync("checkpoint completed (requested, at the secondary's RESUME)", TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task A_misbehaving_monitor_never_stops_the_comparison_and_a_request_lost_with_it_is_asked_again_on_the_next()
    {
        await using ScriptedQmpServer primary = ScriptedQmpServer.Start(Path.Combine(_directory, "p.qmp"));
        primary.Misbehave(QmpMisbehaviour.GarbageGreeting, QmpMisbehaviour.GreetingThenSilence, QmpMisbehaviour.CloseOnCheckpointRequest);
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, ["--qmp", primary.Address]), Token);

        // A greeting that is not JSON: logged, retried; meanwhile matching traffic is compared and released.
        await rig.Daemon.WaitForLineAsync("QMP primary monitor " + primary.Address + ":", TimeSpan.FromSeconds(10));
        byte[] during = Udp("while the monitor is broken", port: 1);
        await rig.SendPrimaryAsync(during);
        await rig.SendSecondaryAsync(Udp("while the monitor is broken", mac: 2, port: 1));
        Assert.Equal([Convert.ToHexString(during)], await rig.ReadReleasedAsync(1));

        // A greeting, then silence: the handshake times out (5 s), logged, retried.
        await WaitForAsync(() => primary.Sessions >= 3, "a third session");
        await WaitForAsync(() => rig.Daemon.Lines.Count(l => l.Contains("QMP primary monitor " + primary.Address + ":", StringComparison.Ordinal) && l.Contains("retrying", StringComparison.Ordinal)) == 2, "two failures logged");

        // The third session closes in the middle of the checkpoint request: lost with it, asked again on the next.
        await primary.WaitForClientAsync(TimeSpan.FromSeconds(10));
        byte[] diverging = Udp("primary says", port: 2);
        await rig.SendPrimaryAsync(diverging);
        await rig.SendSecondaryAsync(Udp("secondary says", mac: 2, port: 2));
        await WaitForAsync(() => primary.Sessions >= 4 && primary.Connected, "a fourth, well-behaved session");
        await WaitForAsync(() => primary.Commands.Count(c => c == "migrate-set-parameters") >= 2, "the checkpoint request asked again");
        Assert.False(await rig.AnythingReleasedAsync(0.2));
        await primary.SendEventAsync("STOP");
        await primary.SendEventAsync("RESUME");
        Assert.Equal([Convert.ToHexString(diverging)], await rig.ReadReleasedAsync(1));
        Assert.False(rig.Daemon.HasExited, rig.Daemon.Output);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Nothing_is_written_to_a_new_outdev_connection_until_its_redirector_is_restored_and_a_reading_one_is_never_re_created(bool peerReads)
    {
        // Found by the soak run: over a Unix socket the daemon cannot see whether QEMU holds its new connection yet, and
        // it used to re-create the redirector a second time, blindly, seconds later; deleting a redirector in the middle
        // of a frame left its successor reading from mid-frame ("oversized packet received, connection terminated") and
        // the guest's output went nowhere. Now the first write waits for the first re-creation, and a second one comes
        // only if the peer reads nothing of the connection for a second (a deaf redirector, which holds no frame).
        await using ScriptedQmpServer primary = ScriptedQmpServer.Start(Path.Combine(_directory, "p.qmp"));
        primary.ObjectAddDelay = TimeSpan.FromMilliseconds(300);
        string outdevPath = Path.Combine(_directory, "outdev.sock");
        await using var outdev = new ChardevProtocol.Endpoints.ChardevEndpoint(ChardevProtocol.Endpoints.ChardevSocketSpec.Parse($"unix:{outdevPath},server,nowait"));
        outdev.StartListening();
        int primaryPort = FreePort.Next();
        int secondaryPort = FreePort.Next();
        await using DaemonProcess daemon = DaemonProcess.Start([
            "--primary-in", $"tcp:127.0.0.1:{primaryPort},server,nowait", "--secondary-in", $"tcp:127.0.0.1:{secondaryPort},server,nowait",
            "--outdev", $"unix:{outdevPath}", "--qmp", primary.Address, "--restore-redirector", "redire0,before=redire1", "--summary-interval", "0"]);
        await using ChardevProtocol.Endpoints.ChardevConnection reader = await outdev.ConnectAsync(Token);
        await using var p = new ChardevProtocol.Endpoints.ChardevEndpoint(ChardevProtocol.Endpoints.ChardevSocketSpec.Parse($"tcp:127.0.0.1:{primaryPort}"));
        await using var s = new ChardevProtocol.Endpoints.ChardevEndpoint(ChardevProtocol.Endpoints.ChardevSocketSpec.Parse($"tcp:127.0.0.1:{secondaryPort}"));
        await using ChardevProtocol.Endpoints.ChardevConnection toPrimary = await p.ConnectAsync(Token);
        await using ChardevProtocol.Endpoints.ChardevConnection toSecondary = await s.ConnectAsync(Token);

        // A matching pair from the moment outdev is connected: released at once, written only after the re-creation.
        byte[] first = Udp("released while the redirector is re-created", port: 1);
        toPrimary.Writer.Write(first, 0);
        Assert.True(await toPrimary.Writer.FlushAsync(Token));
        toSecondary.Writer.Write(Udp("released while the redirector is re-created", mac: 2, port: 1), 0);
        Assert.True(await toSecondary.Writer.FlushAsync(Token));
        if (!peerReads)
        {
            // A deaf redirector: nothing read for a while, then the re-created one reads.
            await Task.Delay(2500, Token);
        }

        using ChardevProtocol.Framing.ChardevFrame arrived = (await reader.Reader.ReadFrameAsync(Token))!.Value;
        DateTime received = DateTime.UtcNow;
        Assert.Equal(Convert.ToHexString(first), Convert.ToHexString(arrived.Payload));
        await daemon.WaitForLineAsync("re-created over QMP", TimeSpan.FromSeconds(10));
        await Task.Delay(peerReads ? 5500 : 500, Token); // past the whole watch when it reads

        (string Command, DateTime At)[] adds = [.. primary.Answered.Where(a => a.Command == "object-add")];
        (string Command, DateTime At)[] dels = [.. primary.Answered.Where(a => a.Command == "object-del")];
        Assert.True(received >= adds[0].At, $"the first frame reached outdev {(adds[0].At - received).TotalMilliseconds:F0} ms before the redirector was re-created");
        if (peerReads)
        {
            Assert.Single(adds); // read from the start: never re-created again, so never cut
        }
        else
        {
            Assert.Equal(2, adds.Length); // nothing read for a second: deaf, re-created once more
            Assert.True(dels[1].At - adds[0].At >= TimeSpan.FromSeconds(1), "re-created again before a second without reads");
        }

        Assert.DoesNotContain(daemon.Lines, l => l.Contains("outdev took no bytes", StringComparison.Ordinal)); // holding is not a stall
    }

    private async Task WaitForAsync(Func<bool> condition, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"{what} did not happen within 30 s");
            await Task.Delay(50, Token);
        }
    }

    [Fact]
    public async Task Without_a_secondary_monitor_the_primarys_RESUME_is_the_flush_point_and_periodic_checkpoints_count_too()
    {
        await using ScriptedQmpServer primary = ScriptedQmpServer.Start(Path.Combine(_directory, "p.qmp"));
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, ["--qmp", primary.Address]), Token);
        await primary.WaitForClientAsync(TimeSpan.FromSeconds(10));
        byte[] lonely = Udp("lonely");
        await rig.SendPrimaryAsync(lonely);
        await rig.Daemon.WaitForLineAsync("in 1/", TimeSpan.FromSeconds(10)); // data and events travel on different sockets
        await primary.SendEventAsync("STOP"); // a periodic checkpoint, not requested by us
        await primary.SendEventAsync("MIGRATION_PASS", """{"pass": 2}""");
        Assert.False(await rig.AnythingReleasedAsync(0.5));
        await primary.SendEventAsync("RESUME");
        Assert.Equal([Convert.ToHexString(lonely)], await rig.ReadReleasedAsync(1));
        await rig.Daemon.WaitForLineAsync("checkpoint completed (periodic, at the primary's RESUME)", TimeSpan.FromSeconds(5));
    }

    [Theory]
    [InlineData("""{"mode": "primary", "reason": "request"}""")]
    [InlineData("""{"mode": 42}""")] // malformed data: still the end of COLO
    public async Task COLO_EXIT_on_the_primary_releases_everything_and_passes_primary_traffic_through(string data)
    {
        await using ScriptedQmpServer primary = ScriptedQmpServer.Start(Path.Combine(_directory, "p.qmp"));
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, ["--qmp", primary.Address]), Token);
        await primary.WaitForClientAsync(TimeSpan.FromSeconds(10));
        byte[] queued = Udp("queued");
        await rig.SendPrimaryAsync(queued);
        await rig.Daemon.WaitForLineAsync("in 1/", TimeSpan.FromSeconds(10));
        await primary.SendEventAsync("COLO_EXIT", data);
        Assert.Equal([Convert.ToHexString(queued)], await rig.ReadReleasedAsync(1));
        await rig.Daemon.WaitForLineAsync("COLO_EXIT on the primary", TimeSpan.FromSeconds(5));
        byte[] alone = Udp("no secondary any more", port: 7);
        await rig.SendPrimaryAsync(alone);
        Assert.Equal([Convert.ToHexString(alone)], await rig.ReadReleasedAsync(1));
    }

    [Trait("Qemu", "real")]
    [Fact]
    public async Task An_operators_stop_and_cont_on_a_real_qemu_is_not_taken_for_a_checkpoint()
    {
        string monitor = Path.Combine(_directory, "primary.qmp");
        string operatorPath = Path.Combine(_directory, "operator.qmp");
        await using QemuProcess qemu = QemuProcess.StartWithMonitors($"unix:{monitor},server=on,wait=off", $"unix:{operatorPath},server=on,wait=off");
        await using QmpClient operatorMonitor = await QmpConnect.WhenReadyAsync(operatorPath, Token, qemu);
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, ["--qmp", "unix:" + monitor]), Token);
        await rig.Daemon.WaitForLineAsync("QMP primary monitor", TimeSpan.FromSeconds(10));
        await rig.SendPrimaryAsync(Udp("unmatched"));
        await rig.Daemon.WaitForLineAsync("in 1/", TimeSpan.FromSeconds(10));
        await operatorMonitor.StopAsync(Token);
        await operatorMonitor.ContAsync(Token);
        Assert.False(await rig.AnythingReleasedAsync(1), "an operator's stop/cont released an unmatched packet");
        Assert.DoesNotContain(rig.Daemon.Lines, l => l.Contains("checkpoint completed", StringComparison.Ordinal));
    }
}
