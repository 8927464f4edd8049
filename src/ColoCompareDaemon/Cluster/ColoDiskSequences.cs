using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ColoChardev.Qmp;

namespace ColoChardev.Daemon.Cluster;

/// <summary>Where the copy of the primary's disk to a waiting secondary stands.</summary>
internal enum DiskResync
{
    /// <summary>The copy was started by this call.</summary>
    Started,

    /// <summary>A copy is under way; the next monitor looks again.</summary>
    Copying,

    /// <summary>The secondary's image equals the primary's, and the job mirrors every new write.</summary>
    Ready,
}

/// <summary>
/// The QMP sequences of a VM with a replicated disk (parameter <c>disk</c>; docs/COLO-FT.txt's block replication, all
/// in QMP: blockdev-add and blockdev-del in place of COLO-FT.txt's HMP drive_add and drive_del). The secondary exports
/// its image over NBD; before COLO starts, the primary copies its disk there (blockdev-mirror, sync full: the images
/// need not match beforehand, so a node that was away starts from the survivor's disk), then, with the VM stopped,
/// ends the copy and adds the replication child to its quorum. NBD nodes have names so that <c>yank</c> (QEMU 6.0)
/// can cut a connection to a lost node: a write in flight to a node that is gone would otherwise hold the guest's disk,
/// and the drain of any change to the graph, until TCP gives up (minutes).
/// </summary>
internal static class ColoDiskSequences
{
    /// <summary>The NBD client nodes: the resync's target and the replication child's file.</summary>
    public const string ResyncTarget = "resync-target", ReplicationNbd = "replication0-nbd";

    /// <summary>On a secondary started with <c>-incoming defer</c>: its image exported, writable, on the COLO link.</summary>
    public static async Task ExportSecondaryDiskAsync(QmpClient qmp, ColoCommandLines lines, CancellationToken cancellationToken)
    {
        (string host, int port) = lines.NbdAddress(lines.Local);
        await qmp.ExecuteAsync("nbd-server-start", new JsonObject
        {
            ["addr"] = new JsonObject
            {
                ["type"] = "inet",
                ["data"] = new JsonObject { ["host"] = host, ["port"] = port.ToString(CultureInfo.InvariantCulture) },
            },
        }, cancellationToken).ConfigureAwait(false);
        await qmp.ExecuteAsync("block-export-add", new JsonObject
        {
            ["type"] = "nbd",
            ["id"] = ColoCommandLines.ParentId,
            ["node-name"] = ColoCommandLines.ParentNode,
            ["name"] = ColoCommandLines.ParentId,
            ["writable"] = true,
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A secondary taking over: its NBD server goes first (COLO-FT.txt), so a primary that is not quite dead writes no more.</summary>
    public static async Task StopSecondaryExportAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        try
        {
            await qmp.ExecuteAsync("nbd-server-stop", cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (QmpCommandException)
        {
            // Not running: stopped by an earlier attempt.
        }
    }

    /// <summary>
    /// Starts or follows the copy of the primary's disk to the peer's exported image: a job <c>resync</c>
    /// (blockdev-mirror onto an NBD node, sync full) that is ready once the images match.
    /// </summary>
    public static async Task<DiskResync> ResyncAsync(QmpClient qmp, ColoCommandLines lines, CancellationToken cancellationToken)
    {
        if (await JobAsync(qmp, cancellationToken).ConfigureAwait(false) is JsonElement job)
        {
            return job.TryGetProperty("ready", out JsonElement ready) && ready.ValueKind == JsonValueKind.True ? DiskResync.Ready : DiskResync.Copying;
        }

        // A target left by a copy that failed (its job is gone) is replaced: the peer may be a new QEMU.
        HashSet<string> nodes = await NodesAsync(qmp, cancellationToken).ConfigureAwait(false);
        if (nodes.Contains(ResyncTarget))
        {
            await qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = ResyncTarget }, cancellationToken).ConfigureAwait(false);
        }

        await qmp.ExecuteAsync("blockdev-add", NbdNode(ResyncTarget, lines), cancellationToken).ConfigureAwait(false);
        await qmp.ExecuteAsync("blockdev-mirror", new JsonObject
        {
            ["job-id"] = ColoCommandLines.ResyncJob,
            ["device"] = ColoCommandLines.DiskId,
            ["target"] = ResyncTarget,
            ["sync"] = "full",
        }, cancellationToken).ConfigureAwait(false);
        return DiskResync.Started;
    }

    /// <summary>How far the copy is, for the log: "offset of len bytes".</summary>
    public static async Task<string> ProgressAsync(QmpClient qmp, CancellationToken cancellationToken) =>
        await JobAsync(qmp, cancellationToken).ConfigureAwait(false) is JsonElement job
        && job.TryGetProperty("offset", out JsonElement offset) && job.TryGetProperty("len", out JsonElement length)
            ? $"{offset.GetRawText()} of {length.GetRawText()} bytes"
            : "not started";

    /// <summary>
    /// With the VM stopped and the copy ready: the copy ends (block-job-cancel of a ready mirror leaves the target
    /// consistent) and the replication child joins the quorum as <c>children.1</c>. Idempotent. Returns null, or why
    /// not (the caller resumes the VM and tries again later).
    /// </summary>
    public static async Task<string?> AttachReplicationAsync(QmpClient qmp, ColoCommandLines lines, CancellationToken cancellationToken)
    {
        if (await JobAsync(qmp, cancellationToken).ConfigureAwait(false) is not null)
        {
            await qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = ColoCommandLines.ResyncJob }, cancellationToken).ConfigureAwait(false);
            if (!await NoJobWithinAsync(qmp, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false))
            {
                return $"the disk copy job '{ColoCommandLines.ResyncJob}' did not end within 10 s of block-job-cancel";
            }
        }

        HashSet<string> nodes = await NodesAsync(qmp, cancellationToken).ConfigureAwait(false);
        if (nodes.Contains(ResyncTarget))
        {
            await qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = ResyncTarget }, cancellationToken).ConfigureAwait(false);
        }

        // A replication child from an interrupted attempt is taken out first: it may or may not be in the quorum.
        if (nodes.Contains(ColoCommandLines.ReplicationNode))
        {
            await DetachReplicationAsync(qmp, nodes, cancellationToken).ConfigureAwait(false);
        }

        JsonObject replication = new()
        {
            ["driver"] = "replication",
            ["node-name"] = ColoCommandLines.ReplicationNode,
            ["mode"] = "primary",
            ["file"] = NbdNode(ReplicationNbd, lines),
        };
        await qmp.ExecuteAsync("blockdev-add", replication, cancellationToken).ConfigureAwait(false);
        await qmp.ExecuteAsync("x-blockdev-change", new JsonObject { ["parent"] = ColoCommandLines.DiskId, ["node"] = ColoCommandLines.ReplicationNode }, cancellationToken).ConfigureAwait(false);
        return null;
    }

    /// <summary>
    /// The primary lets go of a secondary that is lost or gone: its NBD connections cut (yank), a copy under way
    /// cancelled, the replication child out of the quorum and deleted. Before <c>x-colo-lost-heartbeat</c>, as in
    /// COLO-FT.txt; idempotent.
    /// </summary>
    public static async Task ReleaseSecondaryAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        HashSet<string> nodes = await NodesAsync(qmp, cancellationToken).ConfigureAwait(false);
        JsonArray instances = [];
        foreach (string node in new[] { ResyncTarget, ReplicationNbd }.Where(nodes.Contains))
        {
            instances.Add(new JsonObject { ["type"] = "block-node", ["node-name"] = node });
        }

        if (instances.Count > 0)
        {
            try
            {
                await qmp.ExecuteAsync("yank", new JsonObject { ["instances"] = instances }, cancellationToken).ConfigureAwait(false);
            }
            catch (QmpCommandException)
            {
                // A node with no connection to cut has no yank instance; the steps below do not need one then, and a
                // refusal here must not keep the primary in COLO with a lost secondary.
            }
        }

        if (await JobAsync(qmp, cancellationToken).ConfigureAwait(false) is not null)
        {
            // A job that has not ended yet keeps its target: the blockdev-del below is refused and the next monitor
            // tries again.
            await qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = ColoCommandLines.ResyncJob, ["force"] = true }, cancellationToken).ConfigureAwait(false);
            await NoJobWithinAsync(qmp, TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
        }

        if (nodes.Contains(ResyncTarget))
        {
            await qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = ResyncTarget }, cancellationToken).ConfigureAwait(false);
        }

        if (nodes.Contains(ColoCommandLines.ReplicationNode))
        {
            await DetachReplicationAsync(qmp, nodes, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Whether a copy or a replication child towards the peer is in place.</summary>
    public static async Task<bool> HoldsSecondaryAsync(QmpClient qmp, CancellationToken cancellationToken) =>
        (await NodesAsync(qmp, cancellationToken).ConfigureAwait(false)).Overlaps([ResyncTarget, ColoCommandLines.ReplicationNode]);

    private static async Task DetachReplicationAsync(QmpClient qmp, HashSet<string> nodes, CancellationToken cancellationToken)
    {
        try
        {
            // The replication child is always the quorum's last, children.1 (quorum removes only its last child).
            await qmp.ExecuteAsync("x-blockdev-change", new JsonObject { ["parent"] = ColoCommandLines.DiskId, ["child"] = "children.1" }, cancellationToken).ConfigureAwait(false);
        }
        catch (QmpCommandException)
        {
            // Added but never attached (an interrupted attempt): only the node is left to delete.
        }

        await qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = ColoCommandLines.ReplicationNode }, cancellationToken).ConfigureAwait(false);
        nodes.Remove(ColoCommandLines.ReplicationNode);
    }

    private static JsonObject NbdNode(string nodeName, ColoCommandLines lines)
    {
        (string host, int port) = lines.NbdAddress(lines.Peer);
        return new JsonObject
        {
            ["driver"] = "nbd",
            ["node-name"] = nodeName,
            ["server"] = new JsonObject { ["type"] = "inet", ["host"] = host, ["port"] = port.ToString(CultureInfo.InvariantCulture) },
            ["export"] = ColoCommandLines.ParentId,
        };
    }

    private static async Task<JsonElement?> JobAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        JsonElement jobs = await qmp.ExecuteAsync("query-block-jobs", cancellationToken: cancellationToken).ConfigureAwait(false);
        if (jobs.ValueKind != JsonValueKind.Array)
        {
            throw new QmpProtocolException($"query-block-jobs returned {jobs.ValueKind}, not a list");
        }

        foreach (JsonElement job in jobs.EnumerateArray())
        {
            if (job.ValueKind == JsonValueKind.Object && job.TryGetProperty("device", out JsonElement id) && id.ValueKind == JsonValueKind.String && id.GetString() == ColoCommandLines.ResyncJob)
            {
                return job.Clone();
            }
        }

        return null;
    }

    /// <summary>Whether the copy job is gone within <paramref name="timeout"/>.</summary>
    private static async Task<bool> NoJobWithinAsync(QmpClient qmp, TimeSpan timeout, CancellationToken cancellationToken)
    {
        DateTime deadline = DateTime.UtcNow + timeout;
        while (await JobAsync(qmp, cancellationToken).ConfigureAwait(false) is not null)
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }

        return true;
    }

    private static async Task<HashSet<string>> NodesAsync(QmpClient qmp, CancellationToken cancellationToken) =>
        ColoSequences.Names(
            await qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true }, cancellationToken).ConfigureAwait(false),
            "node-name",
            "query-named-block-nodes");
}
