using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;
using ColoChardev.QmpClient.Tests.Protocol;

namespace ColoChardev.QmpClient.Tests.Colo;

/// <summary>
/// COLO_EXIT and MIGRATION_PASS need a running COLO pair to be produced by QEMU; their exact JSON (spec §4.3, §4.4,
/// observed on 7.2.22) is replayed here by the scripted server. STOP, RESUME, MIGRATION and SHUTDOWN are tested
/// against real QEMU in tests/Integration.
/// </summary>
public class ColoEventDataTests
{
    [Fact]
    public async Task Colo_exit_and_migration_pass_events_give_their_typed_data()
    {
        FakeQmpServer server = FakeQmpServer.Create();
        await using (server)
        {
            Task<Qmp.QmpClient> connecting = Qmp.QmpClient.StartAsync(server.ClientStream);
            await server.HandshakeAsync();
            await using Qmp.QmpClient client = await connecting;
            using QmpEventSubscription events = client.Subscribe(QmpEvents.ColoExit, QmpEvents.MigrationPass, QmpEvents.Migration);
            await server.SendLineAsync("""{"timestamp": {"seconds": 1700000000, "microseconds": 1}, "event": "MIGRATION", "data": {"status": "colo"}}""");
            await server.SendLineAsync("""{"timestamp": {"seconds": 1700000001, "microseconds": 2}, "event": "MIGRATION_PASS", "data": {"pass": 7}}""");
            await server.SendLineAsync("""{"timestamp": {"seconds": 1700000002, "microseconds": 3}, "event": "COLO_EXIT", "data": {"mode": "primary", "reason": "request"}}""");
            Assert.Equal("colo", (await events.ReadAsync()).MigrationData().Status);
            Assert.Equal(7, (await events.ReadAsync()).MigrationPassData().Pass);
            QmpEvent exit = await events.ReadAsync();
            ColoExitEventData data = exit.ColoExitData();
            Assert.Equal("primary", data.Mode);
            Assert.Equal("request", data.Reason);
            Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1700000002).AddTicks(30), exit.Timestamp);
            Assert.Throws<ArgumentException>(() => exit.MigrationPassData());
        }
    }

    [Fact]
    public async Task An_event_with_unexpected_data_is_a_protocol_error_naming_it()
    {
        FakeQmpServer server = FakeQmpServer.Create();
        await using (server)
        {
            Task<Qmp.QmpClient> connecting = Qmp.QmpClient.StartAsync(server.ClientStream);
            await server.HandshakeAsync();
            await using Qmp.QmpClient client = await connecting;
            using QmpEventSubscription events = client.Subscribe(QmpEvents.ColoExit);
            await server.SendLineAsync("""{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "COLO_EXIT", "data": {"mode": 42}}""");
            QmpProtocolException error = Assert.Throws<QmpProtocolException>(() => events.ReadAsync().AsTask().GetAwaiter().GetResult().ColoExitData());
            Assert.Contains("COLO_EXIT", error.Message, StringComparison.Ordinal);
        }
    }
}
