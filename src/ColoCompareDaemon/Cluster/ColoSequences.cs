using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;

namespace ColoChardev.Daemon.Cluster;

/// <summary>
/// The QMP sequences of the agent, each the documented one (docs/operations.md, "Automatic failover"): a secondary
/// made ready, a primary protected (its COLO network added, COLO started), a primary leaving COLO, a secondary failing
/// over. The ids are QEMU's docs/COLO-FT.txt's.
/// </summary>
internal static class ColoSequences
{
    private static readonly string[] PrimaryFilters = ["m0", "redire0", "redire1"];
    private static readonly string[] PrimaryChardevs = ["mirror0", "compare0", "compare_out"];

    /// <summary>Migration states before COLO in which <c>migrate_cancel</c> ends the migration.</summary>
    private static readonly string[] MigrationStarting = ["setup", "active", "pre-switchover", "device", "wait-unplug"];

    /// <summary><c>x-colo</c> (with <c>return-path</c> from 11.0, which requires it) on either side.</summary>
    public static Task SetColoCapabilitiesAsync(QmpClient qmp, QmpVersion version, CancellationToken cancellationToken) =>
        qmp.MigrateSetCapabilitiesAsync(
            version.IsAtLeast(11, 0) ? [new("x-colo", true), new("return-path", true)] : [new("x-colo", true)], cancellationToken);

    /// <summary>A secondary started with <c>-incoming defer</c>: COLO allowed, then listening for the primary.</summary>
    public static async Task PrepareSecondaryAsync(QmpClient qmp, ColoCommandLines lines, QmpVersion version, CancellationToken cancellationToken)
    {
        if (lines.HasDisk)
        {
            // Exported before the migration listens: a primary that finds the secondary waiting finds its disk too.
            await ColoDiskSequences.ExportSecondaryDiskAsync(qmp, lines, cancellationToken).ConfigureAwait(false);
        }

        await SetColoCapabilitiesAsync(qmp, version, cancellationToken).ConfigureAwait(false);
        await qmp.ExecuteAsync("migrate-incoming", new JsonObject { ["uri"] = lines.MigrationUri(lines.Local) }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The ids of QEMU's user-created objects (<c>qom-list /objects</c>): filters, iothreads.</summary>
    public static async Task<HashSet<string>> ObjectsAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        JsonElement list = await qmp.ExecuteAsync("qom-list", new JsonObject { ["path"] = "/objects" }, cancellationToken).ConfigureAwait(false);
        return Names(list, "name", "qom-list");
    }

    /// <summary>
    /// The <paramref name="member"/> strings of a reply's array of objects. A reply of another shape is a protocol
    /// error (QmpException, one sentence), never an exception the agent does not expect.
    /// </summary>
    internal static HashSet<string> Names(JsonElement reply, string member, string command)
    {
        if (reply.ValueKind != JsonValueKind.Array)
        {
            throw new QmpProtocolException($"{command} returned {reply.ValueKind}, not a list");
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (JsonElement item in reply.EnumerateArray())
        {
            if (item.ValueKind == JsonValueKind.Object && item.TryGetProperty(member, out JsonElement name) && name.ValueKind == JsonValueKind.String)
            {
                names.Add(name.GetString()!);
            }
        }

        return names;
    }

    /// <summary>
    /// The primary's COLO network, added to a running primary: the three chardevs (the mirror on the COLO address,
    /// the daemon's two on Unix sockets) and m0, redire0, redire1 in that order. On a former secondary they go before
    /// its <c>rew0</c>, which keeps rewriting the connections it opened.
    /// </summary>
    public static async Task AddPrimaryNetworkAsync(QmpClient qmp, ColoCommandLines lines, CancellationToken cancellationToken)
    {
        // Idempotent: what an interrupted attempt left in place is kept, the rest added.
        HashSet<string> objects = await ObjectsAsync(qmp, cancellationToken).ConfigureAwait(false);
        HashSet<string> chardevs = await ChardevsAsync(qmp, cancellationToken).ConfigureAwait(false);
        (string host, int port) = lines.MirrorAddress;
        (string Id, JsonObject Address)[] backends =
        [
            ("mirror0", new JsonObject
            {
                ["type"] = "inet",
                ["data"] = new JsonObject { ["host"] = host, ["port"] = port.ToString(CultureInfo.InvariantCulture) },
            }),
            ("compare0", Unix(lines.PrimaryInSocket)),
            ("compare_out", Unix(lines.OutdevSocket)),
        ];
        foreach ((string id, JsonObject address) in backends.Where(b => !chardevs.Contains(b.Id)))
        {
            await ChardevAddAsync(qmp, id, address, cancellationToken).ConfigureAwait(false);
        }

        (string Type, string Id, JsonObject Properties)[] filters =
        [
            ("filter-mirror", "m0", new JsonObject { ["queue"] = "tx", ["outdev"] = "mirror0" }),
            ("filter-redirector", "redire0", new JsonObject { ["queue"] = "rx", ["indev"] = "compare_out" }),
            ("filter-redirector", "redire1", new JsonObject { ["queue"] = "rx", ["outdev"] = "compare0" }),
        ];
        foreach ((string type, string id, JsonObject properties) in filters.Where(f => !objects.Contains(f.Id)))
        {
            properties["netdev"] = "hn0";
            if (lines.VnetHdrSupport)
            {
                properties["vnet_hdr_support"] = true;
            }

            if (objects.Contains("rew0"))
            {
                properties["insert"] = "before";
                properties["position"] = "id=rew0";
            }

            await qmp.ObjectAddAsync(type, id, properties, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Starts COLO from a primary whose COLO network and daemon are in place: capabilities, interval, migrate.</summary>
    public static async Task StartColoAsync(QmpClient qmp, ColoCommandLines lines, QmpVersion version, int checkpointInterval, CancellationToken cancellationToken)
    {
        await SetColoCapabilitiesAsync(qmp, version, cancellationToken).ConfigureAwait(false);
        await qmp.SetCheckpointDelayAsync((uint)checkpointInterval, cancellationToken).ConfigureAwait(false);
        await qmp.MigrateAsync(lines.MigrationUri(lines.Peer), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A primary leaves COLO (its secondary is lost) and runs plain: <c>x-colo-lost-heartbeat</c> (QEMU emits
    /// COLO_EXIT, the daemon releases what it holds and passes traffic through), then m0, redire1, redire0 and their
    /// chardevs are removed, so the guest's output goes straight to its tap again. The daemon is stopped after this.
    /// </summary>
    public static async Task LeaveColoAsPrimaryAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        ColoStatus status = await qmp.QueryColoStatusAsync(cancellationToken).ConfigureAwait(false);
        if (status.Mode == "primary")
        {
            await qmp.ColoLostHeartbeatAsync(cancellationToken).ConfigureAwait(false);
        }
        else if ((await qmp.QueryMigrateAsync(cancellationToken).ConfigureAwait(false)).Status is string migration && MigrationStarting.Contains(migration))
        {
            // COLO not reached yet: the migration towards a secondary that is gone could wait on TCP for minutes.
            await qmp.ExecuteAsync("migrate_cancel", cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        await RemoveAsync(qmp, ["m0", "redire1", "redire0"], PrimaryChardevs, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Whether any of the primary's COLO filters is in place.</summary>
    public static async Task<bool> HasPrimaryNetworkAsync(QmpClient qmp, CancellationToken cancellationToken) =>
        (await ObjectsAsync(qmp, cancellationToken).ConfigureAwait(false)).Overlaps(PrimaryFilters);

    /// <summary>
    /// The secondary takes over (its primary is lost): <c>x-colo-lost-heartbeat</c>, then its redirectors and their
    /// chardevs go (f2, f1, red1, red0); <c>rew0</c> stays for the connections it rewrites. The VM runs on here.
    /// </summary>
    public static async Task SecondaryFailoverAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        ColoStatus status = await qmp.QueryColoStatusAsync(cancellationToken).ConfigureAwait(false);
        if (status.Mode == "secondary")
        {
            await qmp.ColoLostHeartbeatAsync(cancellationToken).ConfigureAwait(false);
        }

        await RemoveAsync(qmp, ["f2", "f1"], ["red1", "red0"], cancellationToken).ConfigureAwait(false);
    }

    private static async Task RemoveAsync(QmpClient qmp, string[] objectIds, string[] chardevIds, CancellationToken cancellationToken)
    {
        HashSet<string> objects = await ObjectsAsync(qmp, cancellationToken).ConfigureAwait(false);
        foreach (string id in objectIds.Where(objects.Contains))
        {
            await qmp.ObjectDelAsync(id, cancellationToken).ConfigureAwait(false);
        }

        HashSet<string> labels = await ChardevsAsync(qmp, cancellationToken).ConfigureAwait(false);
        foreach (string id in chardevIds.Where(labels.Contains))
        {
            await qmp.ChardevRemoveAsync(id, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task<HashSet<string>> ChardevsAsync(QmpClient qmp, CancellationToken cancellationToken) =>
        Names(await qmp.ExecuteAsync("query-chardev", cancellationToken: cancellationToken).ConfigureAwait(false), "label", "query-chardev");

    private static Task<JsonElement> ChardevAddAsync(QmpClient qmp, string id, JsonObject address, CancellationToken cancellationToken) =>
        qmp.ExecuteAsync("chardev-add", new JsonObject
        {
            ["id"] = id,
            ["backend"] = new JsonObject
            {
                ["type"] = "socket",
                ["data"] = new JsonObject { ["addr"] = address, ["server"] = true, ["wait"] = false },
            },
        }, cancellationToken);

    private static JsonObject Unix(string path) => new() { ["type"] = "unix", ["data"] = new JsonObject { ["path"] = path } };
}
