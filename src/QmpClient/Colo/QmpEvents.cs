using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace ColoChardev.Qmp.Colo;

/// <summary>The event names COLO needs, and typed views of their data.</summary>
public static class QmpEvents
{
    public const string Stop = "STOP";
    public const string Resume = "RESUME";
    public const string Migration = "MIGRATION";
    public const string MigrationPass = "MIGRATION_PASS";
    public const string ColoExit = "COLO_EXIT";
    public const string Shutdown = "SHUTDOWN";

    public static MigrationEventData MigrationData(this QmpEvent e) => Data(e, Migration, ColoJsonContext.Default.MigrationEventData);

    public static MigrationPassEventData MigrationPassData(this QmpEvent e) => Data(e, MigrationPass, ColoJsonContext.Default.MigrationPassEventData);

    public static ColoExitEventData ColoExitData(this QmpEvent e) => Data(e, ColoExit, ColoJsonContext.Default.ColoExitEventData);

    public static ShutdownEventData ShutdownData(this QmpEvent e) => Data(e, Shutdown, ColoJsonContext.Default.ShutdownEventData);

    private static T Data<T>(QmpEvent e, string name, JsonTypeInfo<T> info)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (e.Name != name)
        {
            throw new ArgumentException($"expected a {name} event, got {e.Name}", nameof(e));
        }

        try
        {
            return e.Data.Deserialize(info) ?? throw new QmpProtocolException($"{name} event without data");
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            throw new QmpProtocolException($"{name} event with unexpected data: {e.ToJson()}", ex);
        }
    }
}
