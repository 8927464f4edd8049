using System.Text.Json;
using System.Text.Json.Serialization;

namespace ColoChardev.Qmp.Colo;

/// <summary><c>query-status</c>: the VM's run state (<c>running</c>, <c>paused</c>, <c>colo</c> during a checkpoint, ...).</summary>
public sealed record VmStatus(
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("running")] bool Running);

/// <summary><c>query-colo-status</c>: <c>mode</c> is primary, secondary or none; <c>last-mode</c> and <c>reason</c> describe the last failover.</summary>
public sealed record ColoStatus(
    [property: JsonPropertyName("mode")] string Mode,
    [property: JsonPropertyName("last-mode")] string? LastMode,
    [property: JsonPropertyName("reason")] string Reason);

/// <summary>One entry of <c>query-chardev</c>. A socket chardev without a peer has a filename starting <c>disconnected:</c>.</summary>
public sealed record ChardevInfo(
    [property: JsonPropertyName("label")] string Label,
    [property: JsonPropertyName("filename")] string Filename,
    [property: JsonPropertyName("frontend-open")] bool FrontendOpen)
{
    /// <summary>A socket chardev with a peer (or any other chardev).</summary>
    [JsonIgnore]
    public bool IsConnected => !Filename.StartsWith("disconnected:", StringComparison.Ordinal);
}

/// <summary>One capability for <c>migrate-set-capabilities</c> (e.g. <c>x-colo</c>, <c>events</c>).</summary>
public sealed record MigrationCapability(
    [property: JsonPropertyName("capability")] string Capability,
    [property: JsonPropertyName("state")] bool State);

/// <summary>
/// <c>query-migrate-parameters</c> / <c>migrate-set-parameters</c>. Only <c>x-checkpoint-delay</c> is typed; every
/// other parameter is kept as JSON in <see cref="Other"/>.
/// </summary>
public sealed class MigrationParameters
{
    /// <summary>COLO's periodic checkpoint interval in ms (QEMU's default 20,000). Setting it, even to the current value, starts a checkpoint at once while in COLO state.</summary>
    [JsonPropertyName("x-checkpoint-delay")]
    public uint? XCheckpointDelay { get; init; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Other { get; set; }
}

/// <summary><c>query-migrate</c>: in COLO state only <c>status</c> (<c>colo</c>) is filled; other fields are kept as JSON.</summary>
public sealed class MigrationInfo
{
    [JsonPropertyName("status")]
    public string? Status { get; init; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Other { get; set; }
}

/// <summary>Data of <c>MIGRATION</c>: the new migration status (<c>colo</c>, <c>completed</c>, <c>failed</c>, ...).</summary>
public sealed record MigrationEventData([property: JsonPropertyName("status")] string Status);

/// <summary>Data of <c>MIGRATION_PASS</c>: the dirty-sync pass number (one per COLO checkpoint with the <c>events</c> capability).</summary>
public sealed record MigrationPassEventData([property: JsonPropertyName("pass")] long Pass);

/// <summary>Data of <c>COLO_EXIT</c>: which side left COLO (<c>primary</c>/<c>secondary</c>) and why (<c>request</c>/<c>error</c>).</summary>
public sealed record ColoExitEventData(
    [property: JsonPropertyName("mode")] string Mode,
    [property: JsonPropertyName("reason")] string Reason);

/// <summary>Data of <c>SHUTDOWN</c>.</summary>
public sealed record ShutdownEventData(
    [property: JsonPropertyName("guest")] bool Guest,
    [property: JsonPropertyName("reason")] string Reason);

internal sealed record UriArguments([property: JsonPropertyName("uri")] string Uri);

internal sealed record IdArguments([property: JsonPropertyName("id")] string Id);

internal sealed record CapabilitiesArguments([property: JsonPropertyName("capabilities")] IReadOnlyList<MigrationCapability> Capabilities);

/// <summary>Source-generated JSON metadata for the COLO layer (no reflection).</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(VmStatus))]
[JsonSerializable(typeof(ColoStatus))]
[JsonSerializable(typeof(ChardevInfo[]))]
[JsonSerializable(typeof(MigrationParameters))]
[JsonSerializable(typeof(MigrationInfo))]
[JsonSerializable(typeof(MigrationEventData))]
[JsonSerializable(typeof(MigrationPassEventData))]
[JsonSerializable(typeof(ColoExitEventData))]
[JsonSerializable(typeof(ShutdownEventData))]
[JsonSerializable(typeof(UriArguments))]
[JsonSerializable(typeof(IdArguments))]
[JsonSerializable(typeof(CapabilitiesArguments))]
[JsonSerializable(typeof(JsonElement))]
internal sealed partial class ColoJsonContext : JsonSerializerContext;
