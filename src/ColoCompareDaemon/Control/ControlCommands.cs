using System.Globalization;
using System.Text.Json;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Daemon.Engine;
using ColoChardev.Daemon.Nic;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Control;

/// <summary>
/// The control socket's commands, one table: the queries (<c>query-status</c>, <c>query-stats</c>,
/// <c>query-bypass</c>, written by <see cref="StatusView"/>) and the changes to a running NIC, named by its
/// colo-compare object id as QEMU's QOM path (<c>comp0</c> or <c>/objects/comp0</c>): <c>qom-set</c> of
/// compare_timeout, expired_scan_cycle and max_queue_size, <c>bypass-add</c>/<c>bypass-del</c>, and
/// <c>chardev-drop-peer</c>. Every change is logged.
/// </summary>
internal sealed class ControlCommands : IQmpCommands
{
    private readonly IReadOnlyList<ComparedNic> _nics;
    private readonly ILogger _logger;
    private readonly Dictionary<string, Func<JsonElement, QmpReply>> _table;

    public ControlCommands(IReadOnlyList<ComparedNic> nics, StatusView status, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(status);
        _nics = nics;
        _logger = logger;
        _table = new(StringComparer.Ordinal)
        {
            ["query-status"] = _ => QmpReply.Return(status.WriteStatus),
            ["query-stats"] = _ => QmpReply.Return(status.WriteStats),
            ["qom-set"] = QomSet,
            ["query-bypass"] = _ => QmpReply.Return(status.WriteBypass),
            ["bypass-add"] = a => ChangeBypass(a, add: true),
            ["bypass-del"] = a => ChangeBypass(a, add: false),
            ["chardev-drop-peer"] = DropPeer,
        };
        Names = [.. _table.Keys];
    }

    public IReadOnlyList<string> Names { get; }

    public QmpReply Execute(string command, JsonElement arguments) =>
        _table.TryGetValue(command, out Func<JsonElement, QmpReply>? run) ? run(arguments) : QmpReply.Error("CommandNotFound", $"The command {command} has not been found");

    private QmpReply QomSet(JsonElement arguments)
    {
        if (!TryStrings(arguments, "property", out string? path, out string? property) || !arguments.TryGetProperty("value", out JsonElement value))
        {
            return QmpReply.Generic("qom-set needs arguments {\"path\": OBJECT-ID, \"property\": NAME, \"value\": NUMBER}");
        }

        if (FindNic(path) is not ComparedNic nic)
        {
            return NotFound(path);
        }

        long number;
        if (value.ValueKind == JsonValueKind.Number ? !value.TryGetInt64(out number)
            : value.ValueKind != JsonValueKind.String || !long.TryParse(value.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out number))
        {
            return QmpReply.Generic($"Parameter 'value' expects a whole number, got {value.GetRawText()}");
        }

        if (nic.Admin.SetProperty(property, number) is string problem)
        {
            return QmpReply.Generic(problem);
        }

        DaemonLog.PropertySet(_logger, nic.Id, property, number);
        return QmpReply.Empty;
    }

    private QmpReply ChangeBypass(JsonElement arguments, bool add)
    {
        if (!TryStrings(arguments, "rule", out string? path, out string? text))
        {
            return QmpReply.Generic("bypass-add and bypass-del need arguments {\"path\": OBJECT-ID, \"rule\": \"proto=tcp,host=...,port=...\"}");
        }

        if (FindNic(path) is not ComparedNic nic)
        {
            return NotFound(path);
        }

        BypassRule rule;
        try
        {
            rule = BypassRule.Parse(text);
        }
        catch (FormatException e)
        {
            return QmpReply.Generic(e.Message);
        }

        if (add ? !nic.Admin.AddBypass(rule) : !nic.Admin.RemoveBypass(rule))
        {
            return QmpReply.Generic(add ? $"bypass rule '{rule.Text}' is already there" : $"no bypass rule '{rule.Text}' on '{nic.Id}'");
        }

        DaemonLog.BypassChanged(_logger, nic.Id, add ? "added" : "removed", rule.Text);
        return QmpReply.Empty;
    }

    /// <summary>
    /// Drops one chardev's current peer (with a TCP reset), as if it had left: for an operator who wants a stuck
    /// peer to reconnect, and for drills. The chardev is named by role (primary_in, secondary_in, outdev, notify_dev).
    /// </summary>
    private QmpReply DropPeer(JsonElement arguments)
    {
        if (!TryStrings(arguments, "chardev", out string? path, out string? role))
        {
            return QmpReply.Generic("chardev-drop-peer needs arguments {\"path\": OBJECT-ID, \"chardev\": \"primary_in\"|\"secondary_in\"|\"outdev\"|\"notify_dev\"}");
        }

        if (FindNic(path) is not ComparedNic nic)
        {
            return NotFound(path);
        }

        ChardevEndpoint? endpoint = nic.Endpoints.All.Where(e => e.Name == role).Select(e => e.Endpoint).FirstOrDefault();
        if (endpoint is null)
        {
            return QmpReply.Generic($"'{nic.Id}' has no chardev '{role}' (primary_in, secondary_in, outdev or notify_dev)");
        }

        bool dropped = endpoint.DropPeer();
        DaemonLog.PeerDropped(_logger, nic.Id, role, dropped);
        return QmpReply.Return(w =>
        {
            w.WriteStartObject();
            w.WriteBoolean("dropped", dropped);
            w.WriteEndObject();
        });
    }

    /// <summary>The arguments every change takes: an object with a string <c>path</c> and the string <paramref name="name"/>.</summary>
    private static bool TryStrings(JsonElement arguments, string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? path, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? value)
    {
        path = value = null;
        if (arguments.ValueKind != JsonValueKind.Object
            || !arguments.TryGetProperty("path", out JsonElement p) || p.ValueKind != JsonValueKind.String
            || !arguments.TryGetProperty(name, out JsonElement v) || v.ValueKind != JsonValueKind.String)
        {
            return false;
        }

        (path, value) = (p.GetString()!, v.GetString()!);
        return true;
    }

    private QmpReply NotFound(string path) =>
        QmpReply.Error("DeviceNotFound", $"Device '{path}' not found (colo-compare objects: {string.Join(", ", _nics.Select(n => n.Id))})");

    private ComparedNic? FindNic(string path)
    {
        string target = path.TrimStart('/');
        target = target.StartsWith("objects/", StringComparison.Ordinal) ? target["objects/".Length..] : target;
        return _nics.FirstOrDefault(n => n.Id == target);
    }
}
