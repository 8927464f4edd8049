using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>
/// The control socket of the daemon as a real process (issue 8): <c>colo-compare status|stats PATH</c> against a
/// running daemon, and the socket's QMP-shaped protocol spoken by hand, bad lines included.
/// </summary>
public sealed class DaemonControlTests : IDisposable
{
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(120));
    private readonly string _directory = FreePort.TempSocketDirectory();

    public void Dispose()
    {
        _timeout.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private static byte[] Udp(string payload, byte mac = 1, ushort port = 53) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", mac).Udp(port, 40000, Encoding.ASCII.GetBytes(payload)).Build();

    [Fact]
    public async Task Status_and_stats_show_a_running_daemon_and_qom_set_changes_its_timeouts()
    {
        string path = Path.Combine(_directory, "control.sock");
        await using DaemonRig rig = await DaemonRig.StartAsync(
            vnet: false,
            notify: true,
            // A held mismatch is asked for again every compare_timeout: 60 s keeps it to one request on a busy machine.
            ports => DaemonRig.QemuSyntax(ports.Primary, ports.Secondary, ports.Outdev, ports.Notify, ",compare_timeout=60000"),
            _timeout.Token,
            ["--control", path]);
        await rig.Daemon.WaitForLineAsync($"control socket at {path}", TimeSpan.FromSeconds(10));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, OperatingSystem.IsWindows() ? UnixFileMode.None : File.GetUnixFileMode(path));

        await rig.SendPrimaryAsync([.. Enumerable.Range(0, 10).Select(i => Udp($"answer {i}", port: (ushort)(100 + i)))]);
        await rig.SendSecondaryAsync([.. Enumerable.Range(0, 10).Select(i => Udp($"answer {i}", mac: 2, port: (ushort)(100 + i)))]);
        Assert.Equal(10, (await rig.ReadReleasedAsync(10)).Count);
        await rig.SendPrimaryAsync(Udp("primary says", port: 7));
        await rig.SendSecondaryAsync(Udp("second says", mac: 2, port: 7));
        Assert.Equal("DO_CHECKPOINT", await rig.ReadNotifyAsync());

        using JsonDocument stats = await CommandAsync("stats", path);
        JsonElement nic = stats.RootElement.GetProperty("nics")[0];
        Assert.Equal("comp0", nic.GetProperty("id").GetString());
        Assert.Equal(11, nic.GetProperty("primary-in").GetInt64());
        Assert.Equal(11, nic.GetProperty("secondary-in").GetInt64());
        Assert.Equal(10, nic.GetProperty("released-by").GetProperty("Matched").GetInt64());
        Assert.Equal(10, nic.GetProperty("outdev-written").GetInt64());
        Assert.Equal(1, nic.GetProperty("mismatches").GetProperty("Udp").GetInt64());
        Assert.Equal(1, nic.GetProperty("checkpoint-requests").GetProperty("Mismatch").GetInt64());

        using JsonDocument status = await CommandAsync("status", path);
        JsonElement s = status.RootElement.GetProperty("nics")[0];
        Assert.False(status.RootElement.GetProperty("failed-over").GetBoolean());
        Assert.Equal(60000, s.GetProperty("compare_timeout").GetInt64());
        foreach (string endpoint in new[] { "primary_in", "secondary_in", "outdev", "notify_dev" })
        {
            Assert.True(s.GetProperty("endpoints").GetProperty(endpoint).GetProperty("connected").GetBoolean(), endpoint);
        }

        Assert.Equal(1, s.GetProperty("queued").GetProperty("primary").GetInt64());
        JsonElement request = Assert.Single(s.GetProperty("checkpoint-requests").EnumerateArray());
        Assert.Equal("Mismatch", request.GetProperty("reason").GetString());
        Assert.Contains(":7", request.GetProperty("flow").GetString(), StringComparison.Ordinal);

        // The protocol by hand: greeting, negotiation first, a bad line answered and survived, qom-set checked.
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), _timeout.Token);
        await using var stream = new NetworkStream(socket);
        using var reader = new StreamReader(stream);
        async Task<JsonElement> AskAsync(string line)
        {
            await stream.WriteAsync(Encoding.UTF8.GetBytes(line + "\n"), _timeout.Token);
            string reply = await reader.ReadLineAsync(_timeout.Token) ?? throw new EndOfStreamException("the control socket closed");
            return JsonDocument.Parse(reply).RootElement.Clone();
        }

        JsonElement greeting = JsonDocument.Parse((await reader.ReadLineAsync(_timeout.Token))!).RootElement;
        Assert.Equal("colo-compare", greeting.GetProperty("QMP").GetProperty("version").GetProperty("package").GetString());
        Assert.Equal("CommandNotFound", (await AskAsync("""{"execute":"query-status"}""")).GetProperty("error").GetProperty("class").GetString());
        JsonElement negotiated = await AskAsync("""{"execute":"qmp_capabilities","id":"a1"}""");
        Assert.Equal(JsonValueKind.Object, negotiated.GetProperty("return").ValueKind);
        Assert.Equal("a1", negotiated.GetProperty("id").GetString());
        Assert.Contains("JSON parse error", (await AskAsync("this is not json")).GetProperty("error").GetProperty("desc").GetString(), StringComparison.Ordinal);
        Assert.Equal("CommandNotFound", (await AskAsync("""{"execute":"device_del"}""")).GetProperty("error").GetProperty("class").GetString());
        Assert.Equal("DeviceNotFound", (await AskAsync("""{"execute":"qom-set","arguments":{"path":"nothere","property":"compare_timeout","value":400}}""")).GetProperty("error").GetProperty("class").GetString());
        Assert.Contains("max_queue_size=0 must be greater than 0", (await AskAsync("""{"execute":"qom-set","arguments":{"path":"comp0","property":"max_queue_size","value":0}}""")).GetProperty("error").GetProperty("desc").GetString(), StringComparison.Ordinal);
        Assert.Contains("max_queue_size=4294967296 must be between 1 and 2147483647", (await AskAsync("""{"execute":"qom-set","arguments":{"path":"comp0","property":"max_queue_size","value":4294967296}}""")).GetProperty("error").GetProperty("desc").GetString(), StringComparison.Ordinal);
        Assert.Contains("whole number", (await AskAsync("""{"execute":"qom-set","arguments":{"path":"comp0","property":"compare_timeout","value":"soon"}}""")).GetProperty("error").GetProperty("desc").GetString(), StringComparison.Ordinal);
        Assert.True((await AskAsync("""{"execute":"qom-set","arguments":{"path":"/objects/comp0","property":"compare_timeout","value":400}}""")).TryGetProperty("return", out _));
        Assert.True((await AskAsync("""{"execute":"qom-set","arguments":{"path":"comp0","property":"max_queue_size","value":"64"}}""")).TryGetProperty("return", out _));

        using JsonDocument after = await CommandAsync("status", path);
        JsonElement changed = after.RootElement.GetProperty("nics")[0];
        Assert.Equal(400, changed.GetProperty("compare_timeout").GetInt64());
        Assert.Equal(64, changed.GetProperty("max_queue_size").GetInt64());
        await rig.Daemon.WaitForLineAsync("compare_timeout set to 400 over the control socket", TimeSpan.FromSeconds(5));

        Assert.Equal(0, await rig.Daemon.StopAsync(TimeSpan.FromSeconds(20)));
        Assert.False(File.Exists(path), "the daemon removes its control socket when it stops");
    }

    [Fact]
    public async Task Bypass_rules_from_the_command_line_and_the_control_socket_pass_flows_uncompared_without_checkpoints()
    {
        string path = Path.Combine(_directory, "control.sock");
        await using DaemonRig rig = await DaemonRig.StartAsync(
            vnet: false,
            notify: true,
            ports => DaemonRig.QemuSyntax(ports.Primary, ports.Secondary, ports.Outdev, ports.Notify, string.Empty),
            _timeout.Token,
            ["--control", path, "--bypass", "proto=udp,port=53"]);
        await rig.Daemon.WaitForLineAsync($"control socket at {path}", TimeSpan.FromSeconds(10));

        // Port 53 is bypassed: different answers, released at once, no checkpoint asked for.
        byte[] dns = Udp("primary's answer", port: 53);
        await rig.SendPrimaryAsync(dns);
        Assert.Equal([Convert.ToHexString(dns)], await rig.ReadReleasedAsync(1));
        await rig.SendSecondaryAsync(Udp("secondary's answer", mac: 2, port: 53));

        // Port 54 is not: the same difference asks for a checkpoint.
        await rig.SendPrimaryAsync(Udp("primary says", port: 54));
        await rig.SendSecondaryAsync(Udp("second says", mac: 2, port: 54));
        Assert.Equal("DO_CHECKPOINT", await rig.ReadNotifyAsync());
        await rig.SendNotifyAsync("COLO_CHECKPOINT");
        Assert.Single(await rig.ReadReleasedAsync(1));

        // Added at run time, port 54 passes too, starting with what it has queued (which must not be overtaken);
        // the rule shows in query-bypass and status; removing it is logged.
        byte[] queued = Udp("queued before the rule", port: 54);
        await rig.SendPrimaryAsync(queued);
        await rig.Daemon.WaitForLineAsync("queued 1/0", TimeSpan.FromSeconds(10));
        ProcessResult added = await ExternalProcess.RunAsync("dotnet", [DaemonProcess.AssemblyPath, "qmp", $"unix:{path}", "bypass-add", """{"path": "comp0", "rule": "port=54,proto=udp"}"""], TimeSpan.FromSeconds(30));
        Assert.True(added.ExitCode == 0, added.Output);
        Assert.Equal([Convert.ToHexString(queued)], await rig.ReadReleasedAsync(1));
        ProcessResult twice = await ExternalProcess.RunAsync("dotnet", [DaemonProcess.AssemblyPath, "qmp", $"unix:{path}", "bypass-add", """{"path": "comp0", "rule": "proto=udp,port=54"}"""], TimeSpan.FromSeconds(30));
        Assert.Contains("is already there", twice.StandardOutput, StringComparison.Ordinal);
        byte[] late = Udp("primary, later", port: 54);
        await rig.SendPrimaryAsync(late);
        Assert.Equal([Convert.ToHexString(late)], await rig.ReadReleasedAsync(1));
        await rig.SendSecondaryAsync(Udp("secondary, later!", mac: 2, port: 54));
        Assert.False(await rig.AnythingReleasedAsync(0.3));

        using JsonDocument status = await CommandAsync("status", path);
        JsonElement nic = status.RootElement.GetProperty("nics")[0];
        Assert.Equal(["proto=udp,port=53", "proto=udp,port=54"], nic.GetProperty("bypass").EnumerateArray().Select(r => r.GetString()));
        Assert.Single(nic.GetProperty("checkpoint-requests").EnumerateArray()); // only port 54's first difference
        using JsonDocument stats = await CommandAsync("stats", path);
        JsonElement counts = stats.RootElement.GetProperty("nics")[0];
        Assert.Equal(3, counts.GetProperty("released-by").GetProperty("Bypass").GetInt64());
        Assert.Equal(2, counts.GetProperty("secondary-dropped-by").GetProperty("Bypass").GetInt64());
        Assert.Equal(1, counts.GetProperty("mismatches").GetProperty("Udp").GetInt64());

        ProcessResult removed = await ExternalProcess.RunAsync("dotnet", [DaemonProcess.AssemblyPath, "qmp", $"unix:{path}", "bypass-del", """{"path": "comp0", "rule": "proto=udp,port=54"}"""], TimeSpan.FromSeconds(30));
        Assert.True(removed.ExitCode == 0, removed.Output);
        await rig.Daemon.WaitForLineAsync("bypass rule removed: proto=udp,port=54", TimeSpan.FromSeconds(5));
        ProcessResult bad = await ExternalProcess.RunAsync("dotnet", [DaemonProcess.AssemblyPath, "qmp", $"unix:{path}", "bypass-add", """{"path": "comp0", "rule": "port=99999"}"""], TimeSpan.FromSeconds(30));
        Assert.Contains("port '99999' is not PORT or LOW-HIGH", bad.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_bypass_rule_on_the_command_line_is_refused()
    {
        await using DaemonProcess daemon = DaemonProcess.Start(["--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2,server", "--outdev", "tcp:127.0.0.1:3", "--bypass", "proto=icmp,port=7"]);
        Assert.Equal(2, await daemon.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains("bypass rule 'proto=icmp,port=7': protocol 1 has no ports", daemon.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_without_a_daemon_says_so_and_fails()
    {
        ProcessResult result = await ExternalProcess.RunAsync("dotnet", [DaemonProcess.AssemblyPath, "status", Path.Combine(_directory, "nobody.sock")], TimeSpan.FromSeconds(30));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("is the daemon running with --control?", result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_control_path_that_cannot_be_a_socket_stops_the_daemon_with_one_line()
    {
        string path = Path.Combine(_directory, "a-file");
        await File.WriteAllTextAsync(path, "not a socket");
        await using DaemonProcess daemon = DaemonProcess.Start(["--primary-in", "tcp:127.0.0.1:1", "--secondary-in", $"tcp:127.0.0.1:{FreePort.Next()},server", "--outdev", "tcp:127.0.0.1:3", "--control", path]);
        Assert.Equal(1, await daemon.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"colo-compare: --control {path}: cannot listen there (a file that is not a socket is in the way)", daemon.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", daemon.Output, StringComparison.Ordinal);
        Assert.Equal("not a socket", await File.ReadAllTextAsync(path));
    }

    private static async Task<JsonDocument> CommandAsync(string command, string path)
    {
        ProcessResult result = await ExternalProcess.RunAsync("dotnet", [DaemonProcess.AssemblyPath, command, path], TimeSpan.FromSeconds(30));
        Assert.True(result.ExitCode == 0, result.Output);
        return JsonDocument.Parse(result.StandardOutput);
    }
}
