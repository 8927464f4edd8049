using System.Text.Json;
using System.Text.Json.Nodes;

namespace ColoChardev.Qmp.Colo;

/// <summary>The QMP commands COLO needs, typed. A thin layer: each is one <see cref="QmpClient"/> call.</summary>
public static class QmpColoCommands
{
    public static Task<VmStatus> QueryStatusAsync(this QmpClient client, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("query-status", ColoJsonContext.Default.VmStatus, cancellationToken);

    public static Task<ColoStatus> QueryColoStatusAsync(this QmpClient client, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("query-colo-status", ColoJsonContext.Default.ColoStatus, cancellationToken);

    public static Task<ChardevInfo[]> QueryChardevAsync(this QmpClient client, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("query-chardev", ColoJsonContext.Default.ChardevInfoArray, cancellationToken);

    public static Task<MigrationParameters> QueryMigrateParametersAsync(this QmpClient client, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("query-migrate-parameters", ColoJsonContext.Default.MigrationParameters, cancellationToken);

    public static Task<MigrationInfo> QueryMigrateAsync(this QmpClient client, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("query-migrate", ColoJsonContext.Default.MigrationInfo, cancellationToken);

    public static Task MigrateSetCapabilitiesAsync(this QmpClient client, IReadOnlyList<MigrationCapability> capabilities, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("migrate-set-capabilities", new CapabilitiesArguments(capabilities), ColoJsonContext.Default.CapabilitiesArguments, ColoJsonContext.Default.JsonElement, cancellationToken);

    /// <summary>Sets migration parameters; only those given (non-null) are sent.</summary>
    public static Task MigrateSetParametersAsync(this QmpClient client, MigrationParameters parameters, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("migrate-set-parameters", parameters, ColoJsonContext.Default.MigrationParameters, ColoJsonContext.Default.JsonElement, cancellationToken);

    /// <summary>
    /// Sets <c>x-checkpoint-delay</c>. On a primary in COLO state this starts a checkpoint at once and re-arms the
    /// periodic timer, even when the value is unchanged (spec §4.2): the way to ask QEMU for a checkpoint.
    /// </summary>
    public static Task SetCheckpointDelayAsync(this QmpClient client, uint milliseconds, CancellationToken cancellationToken = default) =>
        client.MigrateSetParametersAsync(new MigrationParameters { XCheckpointDelay = milliseconds }, cancellationToken);

    public static Task MigrateAsync(this QmpClient client, string uri, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("migrate", new UriArguments(uri), ColoJsonContext.Default.UriArguments, ColoJsonContext.Default.JsonElement, cancellationToken);

    /// <summary>Failover: leaves COLO on this side (<c>x-colo-lost-heartbeat</c>).</summary>
    public static Task ColoLostHeartbeatAsync(this QmpClient client, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("x-colo-lost-heartbeat", null, cancellationToken);

    /// <summary><c>object-add</c> with QEMU 7.2's flat arguments: <c>qom-type</c>, <c>id</c> and the object's properties.</summary>
    public static Task ObjectAddAsync(this QmpClient client, string qomType, string id, JsonObject? properties = null, CancellationToken cancellationToken = default)
    {
        var arguments = new JsonObject { ["qom-type"] = qomType, ["id"] = id };
        if (properties is not null)
        {
            foreach ((string name, JsonNode? value) in properties)
            {
                arguments[name] = value?.DeepClone();
            }
        }

        return Client(client).ExecuteAsync("object-add", arguments, cancellationToken);
    }

    public static Task ObjectDelAsync(this QmpClient client, string id, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("object-del", new IdArguments(id), ColoJsonContext.Default.IdArguments, ColoJsonContext.Default.JsonElement, cancellationToken);

    public static Task ChardevRemoveAsync(this QmpClient client, string id, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("chardev-remove", new JsonObject { ["id"] = id }, cancellationToken);

    /// <summary>
    /// <c>yank</c>, out of band when negotiated (it must overtake commands stuck behind a hung migration socket):
    /// unsticks the given instances, by default the migration.
    /// </summary>
    public static Task<JsonElement> YankAsync(this QmpClient client, JsonArray? instances = null, CancellationToken cancellationToken = default)
    {
        var arguments = new JsonObject { ["instances"] = instances ?? new JsonArray(new JsonObject { ["type"] = "migration" }) };
        return Client(client).OobEnabled
            ? client.ExecuteOobAsync("yank", arguments, cancellationToken)
            : client.ExecuteAsync("yank", arguments, cancellationToken);
    }

    public static Task StopAsync(this QmpClient client, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("stop", null, cancellationToken);

    public static Task ContAsync(this QmpClient client, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("cont", null, cancellationToken);

    public static Task QuitAsync(this QmpClient client, CancellationToken cancellationToken = default) =>
        Client(client).ExecuteAsync("quit", null, cancellationToken);

    private static QmpClient Client(QmpClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client;
    }
}
