using System.Text.Json.Nodes;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;

namespace ColoChardev.Daemon.Cluster;

/// <summary>The agent's actions on this node. Each is idempotent: Pacemaker may repeat any of them.</summary>
internal sealed partial class ColoResourceAgent
{
    /// <summary>Promotion scores: a running primary stays; a secondary in COLO holds the VM's state; a waiting one does not.</summary>
    public const int ScorePrimary = 100, ScoreInColo = 50, ScoreWaiting = 5;

    /// <summary>Migration states in which a <c>migrate</c> towards the secondary is still under way or COLO runs.</summary>
    private static readonly string[] MigrationUnderWay = ["setup", "active", "pre-switchover", "device", "wait-unplug", "colo"];

    private static readonly TimeSpan ActionTimeout = TimeSpan.FromSeconds(10);

    /// <summary>start: a secondary, waiting for a primary's state (Unpromoted).</summary>
    private async Task<int> StartAsync(ColoNode node, QmpVersion version, CancellationToken cancellationToken)
    {
        if (node.Qemu is not null)
        {
            return OcfExitCode.Success;
        }

        node.PrepareStateDir();
        if (await node.MakeReplicationDisksAsync(cancellationToken).ConfigureAwait(false) is string diskProblem)
        {
            error.WriteLine($"colo-compare: {diskProblem}");
            return OcfExitCode.Generic;
        }

        if (await node.StartQemuAsync(node.Lines.Secondary(), cancellationToken).ConfigureAwait(false) is string problem)
        {
            error.WriteLine($"colo-compare: {problem}");
            return OcfExitCode.Generic;
        }

        await TapAsync(node, onBridge: false, cancellationToken).ConfigureAwait(false);
        await using (QmpClient qmp = await node.QmpAsync(ActionTimeout, cancellationToken).ConfigureAwait(false))
        {
            await ColoSequences.PrepareSecondaryAsync(qmp, node.Lines, version, cancellationToken).ConfigureAwait(false);
        }

        node.Role = ColoRole.Secondary;
        node.BootedAsPrimary = false;
        await PromotionScoreAsync(node, ScoreWaiting, cancellationToken).ConfigureAwait(false);
        error.WriteLine($"colo-compare: secondary of {node.Lines.Peer.Name} waiting on {node.Lines.MigrationUri(node.Lines.Local)}");
        return OcfExitCode.Success;
    }

    /// <summary>stop: the daemon first (it releases what it holds), then QEMU.</summary>
    private async Task<int> StopAsync(ColoNode node, CancellationToken cancellationToken)
    {
        await node.StopDaemonAsync(cancellationToken).ConfigureAwait(false);
        await node.StopQemuAsync(cancellationToken).ConfigureAwait(false);
        node.Role = ColoRole.None;
        node.BootedAsPrimary = false;
        if (InCluster)
        {
            await node.RunAsync("crm_attribute", ["--promotion", "--delete"], cancellationToken).ConfigureAwait(false);
        }

        return OcfExitCode.Success;
    }

    /// <summary>
    /// monitor: QEMU alive and answering QMP within monitor_timeout. A secondary reports its promotion score; a
    /// primary is kept protected: a lost daemon is restarted, COLO that ended leaves the primary plain, and a plain
    /// primary whose peer waits is protected again (re-protection).
    /// </summary>
    private async Task<int> MonitorAsync(ColoNode node, QmpVersion version, CancellationToken cancellationToken)
    {
        ColoRole role = node.Role;
        if (node.Qemu is null)
        {
            await node.StopDaemonAsync(cancellationToken).ConfigureAwait(false);
            return OcfExitCode.NotRunning;
        }

        node.TrimLogs();
        var timeout = TimeSpan.FromMilliseconds(node.Parameters.MonitorTimeout);
        try
        {
            await using QmpClient qmp = await node.QmpAsync(timeout, cancellationToken).ConfigureAwait(false);
            ColoStatus colo = await qmp.QueryColoStatusAsync(cancellationToken).ConfigureAwait(false);
            if (role != ColoRole.Primary)
            {
                await PromotionScoreAsync(node, colo.Mode == "secondary" ? ScoreInColo : ScoreWaiting, cancellationToken).ConfigureAwait(false);
                return OcfExitCode.Success;
            }

            await KeepProtectedAsync(node, qmp, colo, version, cancellationToken).ConfigureAwait(false);
            return OcfExitCode.RunningPromoted;
        }
        catch (QmpCommandException e)
        {
            // QEMU answers; one of the monitor's own steps was refused (a race with QEMU leaving COLO by itself, say).
            // The VM is fine: failing the monitor would make the cluster stop it. The next monitor looks again.
            error.WriteLine($"colo-compare: monitor: {e.Message}; trying again at the next monitor");
            return role == ColoRole.Primary ? OcfExitCode.RunningPromoted : OcfExitCode.Success;
        }
        catch (Exception e) when (e is QmpException or IOException or System.Net.Sockets.SocketException)
        {
            error.WriteLine($"colo-compare: QEMU (pid {node.Qemu}) does not answer on {node.Lines.QmpSocket}: {e.Message}");
            return role == ColoRole.Primary ? OcfExitCode.FailedPromoted : OcfExitCode.Generic;
        }
    }

    private async Task KeepProtectedAsync(ColoNode node, QmpClient qmp, ColoStatus colo, QmpVersion version, CancellationToken cancellationToken)
    {
        await PromotionScoreAsync(node, ScorePrimary, cancellationToken).ConfigureAwait(false);
        MigrationInfo migration = await qmp.QueryMigrateAsync(cancellationToken).ConfigureAwait(false);
        bool underWay = colo.Mode == "primary" || MigrationUnderWay.Contains(migration.Status);
        if (colo.Mode == "primary")
        {
            // COLO runs, so the migration resumed the VM the agent had stopped.
            node.PausedForProtection = false;
        }

        if (underWay && await PeerLostAsync(node, cancellationToken).ConfigureAwait(false))
        {
            // A node lost without fencing gets no stop, so no notification: the membership says it.
            error.WriteLine($"colo-compare: node {node.Lines.Peer.Name} left the cluster: leaving COLO");
            await GoPlainAsync(node, qmp, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (underWay)
        {
            if (!await node.DaemonAnswersAsync(TimeSpan.FromMilliseconds(node.Parameters.MonitorTimeout), cancellationToken).ConfigureAwait(false))
            {
                error.WriteLine("colo-compare: the daemon is lost; restarting it (--restore-redirector repairs redire0)");
                // Short grace: a daemon that does not answer releases nothing; stop and start fit the monitor's 20 s.
                await node.StopDaemonAsync(cancellationToken, TimeSpan.FromSeconds(3)).ConfigureAwait(false);
                if (await node.StartDaemonAsync(cancellationToken).ConfigureAwait(false) is string restartProblem)
                {
                    error.WriteLine($"colo-compare: {restartProblem}");
                }
            }

            return;
        }

        if (await ColoSequences.HasPrimaryNetworkAsync(qmp, cancellationToken).ConfigureAwait(false) || node.PausedForProtection)
        {
            error.WriteLine($"colo-compare: COLO is not running (last mode {colo.LastMode}, reason {colo.Reason}, migration {migration.Status}); running plain until the secondary waits again");
            await GoPlainAsync(node, qmp, cancellationToken).ConfigureAwait(false);
        }

        if (node.BootedAsPrimary && node.QemuAge < TimeSpan.FromSeconds(node.Parameters.ProtectDelay))
        {
            return;
        }

        if (!await PeerWaitsAsync(node, cancellationToken).ConfigureAwait(false))
        {
            if (node.Lines.HasDisk && await ColoDiskSequences.HoldsSecondaryAsync(qmp, cancellationToken).ConfigureAwait(false))
            {
                error.WriteLine($"colo-compare: the secondary on {node.Lines.Peer.Name} went away during the disk copy; letting it go");
                await ColoDiskSequences.ReleaseSecondaryAsync(qmp, cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        string? problem;
        try
        {
            problem = await ProtectAsync(node, qmp, version, cancellationToken).ConfigureAwait(false);
        }
        catch (QmpCommandException e)
        {
            problem = e.Message;
        }

        if (problem is not null)
        {
            // The VM runs on, plain; the next monitor tries again. A failed attempt must not fail the monitor:
            // the cluster would recover the primary by stopping it.
            error.WriteLine($"colo-compare: re-protection failed: {problem}; running plain, trying again at the next monitor");
            await GoPlainAsync(node, qmp, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Protects the VM again, its peer's secondary waiting: with a disk, first the copy of the disk (over as many
    /// monitors as it takes, the VM running); then the COLO network and the daemon; with a disk, the VM stopped, the
    /// copy ended and the replication child attached; then COLO (the migration resumes the VM once COLO runs).
    /// Returns null, or why it failed.
    /// </summary>
    private async Task<string?> ProtectAsync(ColoNode node, QmpClient qmp, QmpVersion version, CancellationToken cancellationToken)
    {
        if (node.Lines.HasDisk)
        {
            DiskResync resync = await ColoDiskSequences.ResyncAsync(qmp, node.Lines, cancellationToken).ConfigureAwait(false);
            // A small disk is copied within this monitor; a large one over as many as it takes.
            for (int look = 0; resync != DiskResync.Ready && look < 20; look++)
            {
                await Task.Delay(150, cancellationToken).ConfigureAwait(false);
                resync = await ColoDiskSequences.ResyncAsync(qmp, node.Lines, cancellationToken).ConfigureAwait(false);
            }

            string progress = await ColoDiskSequences.ProgressAsync(qmp, cancellationToken).ConfigureAwait(false);
            error.WriteLine($"colo-compare: the secondary on {node.Lines.Peer.Name} waits: copying the disk to it first ({progress}{(resync == DiskResync.Ready ? ", ready" : string.Empty)})");
            if (resync != DiskResync.Ready)
            {
                return null;
            }
        }

        error.WriteLine($"colo-compare: the secondary on {node.Lines.Peer.Name} waits: protecting the VM again");
        await ColoSequences.AddPrimaryNetworkAsync(qmp, node.Lines, cancellationToken).ConfigureAwait(false);
        if (await node.StartDaemonAsync(cancellationToken).ConfigureAwait(false) is string problem)
        {
            return problem;
        }

        if (node.Lines.HasDisk)
        {
            node.PausedForProtection = true;
            await qmp.StopAsync(cancellationToken).ConfigureAwait(false);
            if (await ColoDiskSequences.AttachReplicationAsync(qmp, node.Lines, cancellationToken).ConfigureAwait(false) is string attachProblem)
            {
                return attachProblem;
            }
        }

        await ColoSequences.StartColoAsync(qmp, node.Lines, version, node.Parameters.CheckpointInterval, cancellationToken).ConfigureAwait(false);
        return null;
    }

    /// <summary>
    /// Leaves COLO, lets go of the secondary's disk, removes the primary's COLO network, resumes a VM the agent had
    /// stopped for an attempt that failed, then stops the daemon (after redire1 is gone, so no output is dropped).
    /// </summary>
    private static async Task GoPlainAsync(ColoNode node, QmpClient qmp, CancellationToken cancellationToken)
    {
        try
        {
            if (node.Lines.HasDisk)
            {
                await ColoDiskSequences.ReleaseSecondaryAsync(qmp, cancellationToken).ConfigureAwait(false);
            }

            await ColoSequences.LeaveColoAsPrimaryAsync(qmp, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            // Even if a step above was refused (the next monitor retries it): a VM the agent stopped never stays
            // stopped because letting go of its secondary did not finish.
            if (node.PausedForProtection)
            {
                VmStatus status = await qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false);
                if (status.Status != "running")
                {
                    await qmp.ContAsync(cancellationToken).ConfigureAwait(false);
                }

                node.PausedForProtection = false;
            }
        }

        await node.StopDaemonAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Whether the cluster's membership (<c>crm_node -l</c>) lists the peer node as anything but a member.</summary>
    private async Task<bool> PeerLostAsync(ColoNode node, CancellationToken cancellationToken)
    {
        if (!InCluster || await node.OutputAsync("crm_node", ["-l"], cancellationToken).ConfigureAwait(false) is not string members)
        {
            return false;
        }

        // "ID NAME STATE" per node, STATE "member" or "lost".
        string[]? peer = members.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .FirstOrDefault(fields => fields.Length >= 3 && fields[1] == node.Lines.Peer.Name);
        return peer is not null && peer[2] != "member";
    }

    /// <summary>Whether the peer runs a secondary that waits for the primary's state (its QMP on the COLO link says <c>inmigrate</c>).</summary>
    private static async Task<bool> PeerWaitsAsync(ColoNode node, CancellationToken cancellationToken)
    {
        try
        {
            var options = new QmpClientOptions { ConnectTimeout = TimeSpan.FromSeconds(2), CommandTimeout = TimeSpan.FromSeconds(2) };
            await using QmpClient peer = await QmpClient.ConnectAsync(node.Lines.SecondaryQmpAddress(node.Lines.Peer), options, cancellationToken).ConfigureAwait(false);
            VmStatus status = await peer.QueryStatusAsync(cancellationToken).ConfigureAwait(false);
            return status.Status == "inmigrate";
        }
        catch (Exception e) when (e is QmpException or IOException or System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// promote: a secondary that was in COLO takes over (failover: the VM keeps its state and its connections); a
    /// secondary that never received the VM, or nothing, is replaced by a primary booted fresh.
    /// </summary>
    private async Task<int> PromoteAsync(ColoNode node, CancellationToken cancellationToken)
    {
        if (node.Qemu is not null && node.Role == ColoRole.Primary)
        {
            return OcfExitCode.Success;
        }

        if (node.Qemu is not null)
        {
            await using QmpClient qmp = await node.QmpAsync(ActionTimeout, cancellationToken).ConfigureAwait(false);
            ColoStatus colo = await qmp.QueryColoStatusAsync(cancellationToken).ConfigureAwait(false);
            VmStatus status = await qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false);
            if (colo.Mode == "secondary" || status.Status != "inmigrate")
            {
                error.WriteLine($"colo-compare: failover: the secondary takes over (COLO mode {colo.Mode}, VM {status.Status})");
                if (node.Lines.HasDisk)
                {
                    await ColoDiskSequences.StopSecondaryExportAsync(qmp, cancellationToken).ConfigureAwait(false);
                }
                await ColoSequences.SecondaryFailoverAsync(qmp, cancellationToken).ConfigureAwait(false);
                await TapAsync(node, onBridge: true, cancellationToken).ConfigureAwait(false);
                node.BootedAsPrimary = false;
                // The guest's MAC now comes from this node's port: tell the switches (gratuitous ARP/RARP rounds).
                await qmp.ExecuteAsync("announce-self", new JsonObject { ["initial"] = 50, ["max"] = 550, ["rounds"] = 5, ["step"] = 100 }, cancellationToken).ConfigureAwait(false);
                return await BecamePrimaryAsync(node, cancellationToken).ConfigureAwait(false);
            }

            error.WriteLine("colo-compare: the secondary never received the VM; booting it here");
        }

        await node.StopQemuAsync(cancellationToken).ConfigureAwait(false);
        node.PrepareStateDir();
        if (await node.StartQemuAsync(node.Lines.Primary(), cancellationToken).ConfigureAwait(false) is string problem)
        {
            error.WriteLine($"colo-compare: {problem}");
            return OcfExitCode.Generic;
        }

        await TapAsync(node, onBridge: true, cancellationToken).ConfigureAwait(false);
        node.BootedAsPrimary = true;
        return await BecamePrimaryAsync(node, cancellationToken).ConfigureAwait(false);
    }

    private async Task<int> BecamePrimaryAsync(ColoNode node, CancellationToken cancellationToken)
    {
        node.Role = ColoRole.Primary;
        await PromotionScoreAsync(node, ScorePrimary, cancellationToken).ConfigureAwait(false);
        return OcfExitCode.Success;
    }

    /// <summary>demote: the primary's state cannot move back; it stops and waits as a fresh secondary.</summary>
    private async Task<int> DemoteAsync(ColoNode node, QmpVersion version, CancellationToken cancellationToken)
    {
        if (node.Role != ColoRole.Primary)
        {
            return node.Qemu is null ? OcfExitCode.NotRunning : OcfExitCode.Success;
        }

        await node.StopDaemonAsync(cancellationToken).ConfigureAwait(false);
        await node.StopQemuAsync(cancellationToken).ConfigureAwait(false);
        return await StartAsync(node, version, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// notify: after the peer's instance stopped (its node lost, or recovered), a protected primary leaves COLO at
    /// once instead of waiting for a checkpoint to fail; the daemon passes traffic through until it is stopped.
    /// </summary>
    private async Task<int> NotifyAsync(ColoNode node, CancellationToken cancellationToken)
    {
        string type = Variable("OCF_RESKEY_CRM_meta_notify_type");
        string operation = Variable("OCF_RESKEY_CRM_meta_notify_operation");
        string[] stopped = Variable("OCF_RESKEY_CRM_meta_notify_stop_uname").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (type == "post" && operation == "stop" && node.Role == ColoRole.Primary && node.Qemu is not null && stopped.Contains(node.Lines.Peer.Name))
        {
            error.WriteLine($"colo-compare: the secondary on {node.Lines.Peer.Name} stopped: leaving COLO");
            await using QmpClient qmp = await node.QmpAsync(ActionTimeout, cancellationToken).ConfigureAwait(false);
            await GoPlainAsync(node, qmp, cancellationToken).ConfigureAwait(false);
        }

        return OcfExitCode.Success;
    }

    /// <summary>The primary's tap joins the bridge; a secondary's stays off it (its input comes through the mirror).</summary>
    private static async Task TapAsync(ColoNode node, bool onBridge, CancellationToken cancellationToken)
    {
        if (node.Parameters.Bridge is not string bridge)
        {
            return;
        }

        string[] master = onBridge ? ["link", "set", node.Parameters.Tap, "master", bridge] : ["link", "set", node.Parameters.Tap, "nomaster"];
        await node.RunAsync("ip", master, cancellationToken).ConfigureAwait(false);
        await node.RunAsync("ip", ["link", "set", node.Parameters.Tap, "up"], cancellationToken).ConfigureAwait(false);
    }

    private async Task PromotionScoreAsync(ColoNode node, int score, CancellationToken cancellationToken)
    {
        if (InCluster)
        {
            await node.RunAsync("crm_attribute", ["--promotion", "--update", score.ToString(System.Globalization.CultureInfo.InvariantCulture)], cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Run by Pacemaker (or crm_resource) for a configured resource: promotion scores can be set.</summary>
    private bool InCluster => Variable("OCF_RESOURCE_INSTANCE").Length > 0;

    private string Variable(string name) => environment.TryGetValue(name, out string? value) ? value : string.Empty;
}
