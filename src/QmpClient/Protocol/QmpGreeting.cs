using System.Text.Json;

namespace ColoChardev.Qmp;

/// <summary>QEMU's version triple.</summary>
public readonly record struct QmpVersion(int Major, int Minor, int Micro)
{
    /// <summary>Whether this is <paramref name="major"/>.<paramref name="minor"/> or later (behaviour that changed in a release).</summary>
    public bool IsAtLeast(int major, int minor) => Major > major || (Major == major && Minor >= minor);

    public override string ToString() => $"{Major}.{Minor}.{Micro}";
}

/// <summary>The server's greeting: <c>{"QMP": {"version": {...}, "capabilities": [...]}}</c>.</summary>
public sealed record QmpGreeting(QmpVersion Version, string Package, IReadOnlyList<string> Capabilities)
{
    internal static QmpGreeting Parse(JsonElement qmp)
    {
        try
        {
            JsonElement version = qmp.GetProperty("version");
            JsonElement qemu = version.GetProperty("qemu");
            var parsed = new QmpVersion(qemu.GetProperty("major").GetInt32(), qemu.GetProperty("minor").GetInt32(), qemu.GetProperty("micro").GetInt32());
            string package = version.TryGetProperty("package", out JsonElement p) && p.ValueKind == JsonValueKind.String ? p.GetString()! : string.Empty;
            var capabilities = new List<string>();
            if (qmp.TryGetProperty("capabilities", out JsonElement list) && list.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement capability in list.EnumerateArray())
                {
                    if (capability.ValueKind == JsonValueKind.String)
                    {
                        capabilities.Add(capability.GetString()!);
                    }
                }
            }

            return new QmpGreeting(parsed, package, capabilities);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new QmpProtocolException($"malformed QMP greeting: {qmp.GetRawText()}", e);
        }
    }
}
