using System.Text.Json;

namespace ColoChardev.Qmp;

/// <summary>
/// An asynchronous event: <c>{"event": NAME, "data": {...}, "timestamp": {"seconds": s, "microseconds": us}}</c>.
/// <see cref="Data"/> is independent of the connection (safe to keep).
/// </summary>
public sealed record QmpEvent(string Name, JsonElement Data, long Seconds, long Microseconds)
{
    /// <summary>QEMU's host-clock timestamp of the event.</summary>
    public DateTimeOffset Timestamp => DateTimeOffset.FromUnixTimeSeconds(Seconds).AddTicks(Microseconds * 10);

    /// <summary>The event as one line of JSON, in QMP's own shape.</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            writer.WriteString("event", Name);
            if (Data.ValueKind != JsonValueKind.Undefined)
            {
                writer.WritePropertyName("data");
                Data.WriteTo(writer);
            }

            writer.WriteStartObject("timestamp");
            writer.WriteNumber("seconds", Seconds);
            writer.WriteNumber("microseconds", Microseconds);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    internal static QmpEvent Parse(JsonElement message, string name)
    {
        JsonElement data = message.TryGetProperty("data", out JsonElement d) ? d.Clone() : default;
        long seconds = 0;
        long microseconds = 0;
        if (message.TryGetProperty("timestamp", out JsonElement timestamp) && timestamp.ValueKind == JsonValueKind.Object)
        {
            if (timestamp.TryGetProperty("seconds", out JsonElement s) && s.TryGetInt64(out long sv))
            {
                seconds = sv;
            }

            if (timestamp.TryGetProperty("microseconds", out JsonElement us) && us.TryGetInt64(out long usv))
            {
                microseconds = usv;
            }
        }

        return new QmpEvent(name, data, seconds, microseconds);
    }
}
