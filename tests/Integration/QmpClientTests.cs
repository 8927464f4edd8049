using System.Text.Json;
using System.Text.Json.Nodes;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>The QMP client against real QEMU (7.2, 10.0 or 11.1 by QEMU_VERSION; <c>-M none</c>, one or more <c>-qmp unix:</c> monitors).</summary>
[Trait("Qemu", "real")]
public sealed class QmpClientTests : IAsyncLifetime
{
    private readonly string _directory = FreePort.TempSocketDirectory();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));
    private QemuProcess _qemu = null!;

    private string Monitor(int n) => Path.Combine(_directory, $"qmp{n}.sock");

    private CancellationToken Token => _timeout.Token;

    public Task InitializeAsync()
    {
        _qemu = QemuProcess.StartWithMonitors($"unix:{Monitor(1)},server=on,wait=off", $"unix:{Monitor(2)},server=on,wait=off");
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _qemu.DisposeAsync();
        _timeout.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>Connects once QEMU has created the socket.</summary>
    private Task<QmpClient> ConnectAsync(int monitor = 1) => QmpConnect.WhenReadyAsync(Monitor(monitor), Token, _qemu);

    [Fact]
    public async Task The_greeting_gives_qemus_version_and_oob_is_negotiated()
    {
        await using QmpClient qmp = await ConnectAsync();
        Assert.Equal(QemuBinary.Version.Major, qmp.Greeting.Version.Major);
        Assert.Equal(QemuBinary.Version.Minor, qmp.Greeting.Version.Minor);
        Assert.Equal(QemuBinary.Version.Build, qmp.Greeting.Version.Micro);
        Assert.Contains("Debian", qmp.Greeting.Package, StringComparison.Ordinal);
        Assert.Contains("oob", qmp.Greeting.Capabilities);
        Assert.True(qmp.OobEnabled);
    }

    [Fact]
    public async Task Query_status_says_running()
    {
        await using QmpClient qmp = await ConnectAsync();
        VmStatus status = await qmp.QueryStatusAsync(Token);
        Assert.Equal("running", status.Status);
        Assert.True(status.Running);
    }

    [Fact]
    public async Task An_unknown_command_gives_CommandNotFound()
    {
        await using QmpClient qmp = await ConnectAsync();
        QmpCommandException error = await Assert.ThrowsAsync<QmpCommandException>(() => qmp.ExecuteAsync("no-such-cmd", null, Token));
        Assert.Equal("CommandNotFound", error.ErrorClass);
        Assert.Equal("no-such-cmd", error.Command);
        Assert.Contains("no-such-cmd", error.Description, StringComparison.Ordinal);
        VmStatus stillFine = await qmp.QueryStatusAsync(Token);
        Assert.True(stillFine.Running);
    }

    [Fact]
    public async Task Stop_and_cont_deliver_STOP_then_RESUME_to_every_subscriber()
    {
        await using QmpClient qmp = await ConnectAsync();
        using QmpEventSubscription first = qmp.Subscribe(QmpEvents.Stop, QmpEvents.Resume);
        using QmpEventSubscription second = qmp.Subscribe();
        await qmp.StopAsync(Token);
        Assert.Equal("paused", (await qmp.QueryStatusAsync(Token)).Status);
        await qmp.ContAsync(Token);
        foreach (QmpEventSubscription subscription in new[] { first, second })
        {
            QmpEvent stop = await subscription.ReadAsync(Token);
            QmpEvent resume = await subscription.ReadAsync(Token);
            Assert.Equal(QmpEvents.Stop, stop.Name);
            Assert.Equal(QmpEvents.Resume, resume.Name);
            Assert.True(stop.Timestamp <= resume.Timestamp);
            Assert.True(Math.Abs((stop.Timestamp - DateTimeOffset.UtcNow).TotalMinutes) < 10, $"timestamp {stop.Timestamp} is not now");
        }
    }

    [Fact]
    public async Task Two_hundred_concurrent_commands_are_all_answered_correctly()
    {
        await using QmpClient qmp = await ConnectAsync();
        // Twenty iothreads with different poll-max-ns values: each reply can be checked against its request.
        for (int i = 0; i < 20; i++)
        {
            await qmp.ObjectAddAsync("iothread", $"io{i}", new JsonObject { ["poll-max-ns"] = 1000 + i }, Token);
        }

        Task<JsonElement>[] gets = Enumerable.Range(0, 200)
            .Select(n => qmp.ExecuteAsync("qom-get", new JsonObject { ["path"] = $"/objects/io{n % 20}", ["property"] = "poll-max-ns" }, Token))
            .ToArray();
        JsonElement[] results = await Task.WhenAll(gets);
        for (int n = 0; n < 200; n++)
        {
            Assert.Equal(1000 + (n % 20), results[n].GetInt32());
        }
    }

    [Fact]
    public async Task Object_add_and_object_del_create_and_remove_a_real_object()
    {
        await using QmpClient qmp = await ConnectAsync();
        static async Task<bool> ExistsAsync(QmpClient qmp, string id, CancellationToken token)
        {
            JsonElement list = await qmp.ExecuteAsync("qom-list", new JsonObject { ["path"] = "/objects" }, token);
            return list.EnumerateArray().Any(p => p.GetProperty("name").GetString() == id);
        }

        await qmp.ObjectAddAsync("iothread", "colo-test", null, Token);
        Assert.True(await ExistsAsync(qmp, "colo-test", Token));
        await qmp.ObjectDelAsync("colo-test", Token);
        Assert.False(await ExistsAsync(qmp, "colo-test", Token));
        QmpCommandException again = await Assert.ThrowsAsync<QmpCommandException>(() => qmp.ObjectDelAsync("colo-test", Token));
        Assert.Equal("GenericError", again.ErrorClass);
    }

    [Fact]
    public async Task Qemu_killed_mid_command_fails_pending_commands_with_the_lost_connection_and_its_cause()
    {
        await using QmpClient qmp = await ConnectAsync();
        using QmpEventSubscription events = qmp.Subscribe();
        await _qemu.SignalAsync("STOP"); // frozen: the command below stays unanswered
        Task<VmStatus> pending = qmp.QueryStatusAsync(Token);
        await Task.Delay(200, Token);
        Assert.False(pending.IsCompleted);
        await _qemu.KillAsync();
        QmpConnectionLostException lost = await Assert.ThrowsAsync<QmpConnectionLostException>(() => pending);
        Assert.NotNull(lost.InnerException);
        await Assert.ThrowsAsync<QmpConnectionLostException>(async () => await events.ReadAsync(Token));
        await Assert.ThrowsAsync<QmpConnectionLostException>(() => qmp.QueryStatusAsync(Token));
        await Assert.ThrowsAnyAsync<QmpException>(() => qmp.Completion);
    }

    [Fact]
    public async Task Two_clients_on_two_monitors_both_see_the_same_events()
    {
        await using QmpClient one = await ConnectAsync(1);
        await using QmpClient two = await ConnectAsync(2);
        using QmpEventSubscription a = one.Subscribe(QmpEvents.Stop, QmpEvents.Resume);
        using QmpEventSubscription b = two.Subscribe(QmpEvents.Stop, QmpEvents.Resume);
        await one.StopAsync(Token);
        await two.ContAsync(Token);
        foreach (QmpEventSubscription subscription in new[] { a, b })
        {
            Assert.Equal(QmpEvents.Stop, (await subscription.ReadAsync(Token)).Name);
            Assert.Equal(QmpEvents.Resume, (await subscription.ReadAsync(Token)).Name);
        }
    }

    [Fact]
    public async Task The_colo_layer_reads_and_sets_what_colo_needs()
    {
        await using QmpClient qmp = await ConnectAsync();
        ColoStatus colo = await qmp.QueryColoStatusAsync(Token);
        Assert.Equal("none", colo.Mode);
        Assert.Equal("none", colo.Reason);

        MigrationParameters parameters = await qmp.QueryMigrateParametersAsync(Token);
        Assert.Equal(20_000u, parameters.XCheckpointDelay);
        Assert.NotNull(parameters.Other);
        Assert.True(parameters.Other!.ContainsKey("max-bandwidth"));
        await qmp.SetCheckpointDelayAsync(5000, Token);
        Assert.Equal(5000u, (await qmp.QueryMigrateParametersAsync(Token)).XCheckpointDelay);

        // Outside COLO, failover is refused (7.2 to 11.1 say so alike).
        QmpCommandException notColo = await Assert.ThrowsAsync<QmpCommandException>(() => qmp.ColoLostHeartbeatAsync(Token));
        Assert.Contains("colo", notColo.Description, StringComparison.OrdinalIgnoreCase);

        ChardevInfo[] chardevs = await qmp.QueryChardevAsync(Token);
        Assert.Contains(chardevs, c => c.Label.StartsWith("compat_monitor", StringComparison.Ordinal) || c.Filename.StartsWith("unix:", StringComparison.Ordinal));

        JsonElement yanked = await qmp.YankAsync([], Token); // out of band, nothing to yank
        Assert.Equal(JsonValueKind.Object, yanked.ValueKind);
        Assert.Null((await qmp.QueryMigrateAsync(Token)).Status);
    }

    [Fact]
    public async Task A_failed_migration_is_reported_through_MIGRATION_events()
    {
        await using QmpClient qmp = await ConnectAsync();
        await qmp.MigrateSetCapabilitiesAsync([new MigrationCapability("events", true)], Token);
        using QmpEventSubscription migration = qmp.Subscribe(QmpEvents.Migration);
        int closedPort = FreePort.Next();
        await qmp.MigrateAsync($"tcp:127.0.0.1:{closedPort}", Token);
        string status;
        do
        {
            status = (await migration.ReadAsync(Token)).MigrationData().Status;
        }
        while (status != "failed");

        Assert.Equal("failed", (await qmp.QueryMigrateAsync(Token)).Status);
    }

    [Fact]
    public async Task Chardev_remove_and_quit_with_its_SHUTDOWN_event()
    {
        await using QmpClient qmp = await ConnectAsync();
        await qmp.ExecuteAsync("chardev-add", JsonNode.Parse("""{"id": "spare", "backend": {"type": "null", "data": {}}}""")!.AsObject(), Token);
        Assert.Contains((await qmp.QueryChardevAsync(Token)), c => c.Label == "spare");
        await qmp.ChardevRemoveAsync("spare", Token);
        Assert.DoesNotContain((await qmp.QueryChardevAsync(Token)), c => c.Label == "spare");

        using QmpEventSubscription shutdown = qmp.Subscribe(QmpEvents.Shutdown);
        await qmp.QuitAsync(Token);
        ShutdownEventData data = (await shutdown.ReadAsync(Token)).ShutdownData();
        Assert.False(data.Guest);
        Assert.Equal("host-qmp-quit", data.Reason);
        await _qemu.WaitForExitAsync(Token);
    }

    [Fact]
    public async Task A_monitor_where_qemu_is_the_client_is_accepted_by_a_listener()
    {
        string path = Path.Combine(_directory, "dial.sock");
        await using QmpListener listener = QmpListener.Listen("unix:" + path);
        await using QemuProcess dialer = QemuProcess.StartWithMonitors($"unix:{path},server=off");
        await using QmpClient qmp = await listener.AcceptAsync(cancellationToken: Token);
        Assert.Equal(QemuBinary.Version.Major, qmp.Greeting.Version.Major);
        Assert.True((await qmp.QueryStatusAsync(Token)).Running);
    }

    private async Task<(int Code, string Output, string Error)> RunToolAsync(CancellationToken token, params string[] args)
    {
        // Make sure QEMU listens before the tool connects (it does not retry, by design).
        await (await ConnectAsync(1)).DisposeAsync();

        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = await Daemon.Program.RunAsync(["qmp", .. args], output, error, token);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task The_qmp_tool_runs_a_command_and_prints_the_reply_as_json()
    {
        (int code, string output, _) = await RunToolAsync(Token, "unix:" + Monitor(1), "query-status");
        Assert.Equal(0, code);
        using JsonDocument reply = JsonDocument.Parse(output);
        Assert.Equal("running", reply.RootElement.GetProperty("return").GetProperty("status").GetString());

        (code, _, _) = await RunToolAsync(Token, Monitor(1), "migrate-set-parameters", """{"x-checkpoint-delay": 1234}""");
        Assert.Equal(0, code);
        (_, output, _) = await RunToolAsync(Token, Monitor(1), "query-migrate-parameters");
        using JsonDocument parameters = JsonDocument.Parse(output);
        Assert.Equal(1234, parameters.RootElement.GetProperty("return").GetProperty("x-checkpoint-delay").GetInt32());
    }

    [Fact]
    public async Task The_qmp_tool_prints_qmp_errors_and_refuses_bad_arguments()
    {
        (int code, string output, string error) = await RunToolAsync(Token, "unix:" + Monitor(1), "no-such-cmd");
        Assert.True(code == 1 && output.Length > 0, $"exit {code}, output '{output}', error '{error}'");
        using JsonDocument reply = JsonDocument.Parse(output);
        Assert.Equal("CommandNotFound", reply.RootElement.GetProperty("error").GetProperty("class").GetString());
        Assert.Contains("no-such-cmd", error, StringComparison.Ordinal);

        (code, _, error) = await RunToolAsync(Token, "unix:" + Monitor(1), "qom-list", "{not json");
        Assert.Equal(2, code);
        Assert.Contains("'{not json'", error, StringComparison.Ordinal);

        (code, _, error) = await RunToolAsync(Token, "unix:" + Path.Combine(_directory, "nobody.sock"), "query-status");
        Assert.Equal(1, code);
        Assert.Contains("nobody.sock", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_qmp_tool_watches_events_as_json_lines_until_interrupted()
    {
        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(Token);
        await using QmpClient driver = await ConnectAsync(2);
        Task<(int Code, string Output, string Error)> watching = RunToolAsync(interrupt.Token, "unix:" + Monitor(1), "--events", "RESUME");
        // The watcher subscribes once it has connected: keep pausing and resuming for a second meanwhile.
        for (int i = 0; i < 20; i++)
        {
            await driver.StopAsync(Token);
            await driver.ContAsync(Token);
            await Task.Delay(50, Token);
        }

        await interrupt.CancelAsync();
        (int code, string output, _) = await watching;
        Assert.Equal(0, code);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        foreach (string line in lines)
        {
            using JsonDocument e = JsonDocument.Parse(line);
            Assert.Equal("RESUME", e.RootElement.GetProperty("event").GetString());
            Assert.True(e.RootElement.GetProperty("timestamp").GetProperty("seconds").GetInt64() > 0);
        }
    }
}
