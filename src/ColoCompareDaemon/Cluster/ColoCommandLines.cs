using System.Globalization;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Qmp;

namespace ColoChardev.Daemon.Cluster;

/// <summary>
/// The command lines the agent runs: the primary QEMU, the secondary QEMU and the daemon, wired as QEMU's
/// docs/COLO-FT.txt wires a pair, with the daemon in place of <c>-object colo-compare</c>. The streams between the
/// nodes are TCP on the nodes' COLO addresses (<c>base_port</c> + offset); everything within a node is a Unix socket in
/// the state folder. A VM with a <c>disk</c> has COLO-FT.txt's drives: on the primary a quorum (<c>colo-disk0</c>) over
/// the local image, to which re-protection adds the replication child; on the secondary the same quorum over a
/// secondary replication drive whose chain ends in the local image (<c>parent0</c>, exported over NBD).
/// </summary>
internal sealed class ColoCommandLines(ColoResourceParameters parameters, ClusterNode local, QmpVersion version)
{
    public ClusterNode Local { get; } = local;
    public ClusterNode Peer { get; } = parameters.PeerOf(local);

    public string Dir => parameters.StateDir;
    public string QmpSocket => $"{Dir}/qmp.sock";
    public string DaemonQmpSocket => $"{Dir}/qmp-daemon.sock";
    public string ControlSocket => $"{Dir}/control.sock";
    public string PrimaryInSocket => $"{Dir}/primary-in.sock";
    public string OutdevSocket => $"{Dir}/outdev.sock";

    /// <summary>
    /// The secondary's active and hidden disks (qcow2, made afresh at each start): since the last checkpoint, what its
    /// own guest wrote, and what the primary's writes replaced in the local image.
    /// </summary>
    public string ActiveDisk => $"{Dir}/active-disk.qcow2";
    public string HiddenDisk => $"{Dir}/hidden-disk.qcow2";

    /// <summary>The ids of COLO-FT.txt: the disk the guest sees, the secondary's local image and the replication nodes.</summary>
    public const string DiskId = "colo-disk0", ParentId = "parent0", ParentNode = "parent0-disk", ReplicationNode = "replication0", ResyncJob = "resync";

    public bool HasDisk => parameters.Disk is not null;

    /// <summary>The secondary's NBD server on the COLO link, which exports its local image as <c>parent0</c>.</summary>
    public (string Host, int Port) NbdAddress(ClusterNode node) => (node.Address, parameters.BasePort + ColoResourceParameters.NbdPortOffset);

    /// <summary>QEMU writes its pid here (<c>-pidfile</c>); the agent finds its QEMU by it.</summary>
    public string QemuPidFile => $"{Dir}/qemu.pid";

    public string MigrationUri(ClusterNode node) => $"tcp:{Host(node)}:{Port(ColoResourceParameters.MigrationPortOffset)}";

    /// <summary>The secondary's QMP on the COLO link, which the primary's daemon uses as <c>--secondary-qmp</c>.</summary>
    public string SecondaryQmpAddress(ClusterNode node) => $"tcp:{Host(node)}:{Port(ColoResourceParameters.SecondaryQmpPortOffset)}";

    private string VnetHdr => parameters.VnetHdr ? ",vnet_hdr_support=on" : string.Empty;

    /// <summary>Chardev reconnect: seconds up to 10.1 (deprecated from 9.2, gone in 10.2), milliseconds from 9.2.</summary>
    private string Reconnect => version.IsAtLeast(9, 2) ? "reconnect-ms=1000" : "reconnect=1";

    /// <summary>
    /// What both roles share: the VM's own options, its NIC and tap, the local monitors. A cluster node has no
    /// display, so <c>-display none</c> unless the options choose one.
    /// </summary>
    private List<string> Common() =>
    [
        "-name", parameters.VmName,
        .. parameters.QemuOptions,
        .. parameters.QemuOptions.Any(o => o is "-display" or "-nographic" or "-vnc") ? Array.Empty<string>() : ["-display", "none"],
        "-pidfile", QemuPidFile,
        "-qmp", $"unix:{QmpSocket},server=on,wait=off",
        "-qmp", $"unix:{DaemonQmpSocket},server=on,wait=off",
        "-netdev", $"tap,id=hn0,ifname={parameters.Tap},script=no,downscript=no,vhost=off,vnet_hdr={(parameters.VnetHdr ? "on" : "off")}",
        "-device", $"{parameters.NicModel},id=e0,netdev=hn0,mac={parameters.Mac}",
        .. HasDisk ? ["-device", $"{parameters.DiskModel},id=d0,drive={DiskId}"] : Array.Empty<string>(),
    ];

    /// <summary>
    /// A primary booted fresh, plain: no filters and no daemon until a secondary waits for it (re-protection adds
    /// them over QMP when the promoted monitor protects the VM), so its guest is reachable while it runs alone.
    /// </summary>
    public List<string> Primary() =>
    [
        .. Common(),
        .. HasDisk
            ? ["-drive", $"if=none,id={DiskId},driver=quorum,read-pattern=fifo,vote-threshold=1,children.0.file.filename={QemuOpts.Escape(parameters.Disk!)},children.0.driver=raw"]
            : Array.Empty<string>(),
    ];

    /// <summary>The mirror's address on this node, which the secondary's <c>red0</c> connects to.</summary>
    public (string Host, int Port) MirrorAddress => (Local.Address, parameters.BasePort + ColoResourceParameters.MirrorPortOffset);

    public bool VnetHdrSupport => parameters.VnetHdr;

    /// <summary>
    /// A secondary waiting for the primary's state. <c>-incoming defer</c>: the agent sets <c>x-colo</c> first and
    /// only then listens (<c>migrate-incoming</c>), so a primary can never migrate into a secondary that would refuse
    /// COLO (10.0 and later require <c>x-colo</c> on both sides).
    /// </summary>
    public List<string> Secondary() =>
    [
        .. Common(),
        "-qmp", $"{SecondaryQmpAddress(Local)},server=on,wait=off",
        "-chardev", $"socket,id=red0,host={Host(Peer)},port={Port(ColoResourceParameters.MirrorPortOffset)},{Reconnect}",
        "-chardev", $"socket,id=red1,host={Host(Peer)},port={Port(ColoResourceParameters.SecondaryInPortOffset)},{Reconnect}",
        "-object", $"filter-redirector,id=f1,netdev=hn0,queue=tx,indev=red0{VnetHdr}",
        "-object", $"filter-redirector,id=f2,netdev=hn0,queue=rx,outdev=red1{VnetHdr}",
        "-object", $"filter-rewriter,id=rew0,netdev=hn0,queue=all{VnetHdr}",
        .. HasDisk ? SecondaryDrives() : [],
        "-incoming", "defer",
    ];

    /// <summary>
    /// The secondary's disk: its local image (<c>parent0</c>), under the hidden and active qcow2 disks that hold what
    /// the primary and its own guest wrote since the last checkpoint, under the replication drive, under the quorum the
    /// guest sees.
    /// </summary>
    private string[] SecondaryDrives() =>
    [
        "-drive", $"if=none,id={ParentId},node-name={ParentNode},driver=raw,file.filename={QemuOpts.Escape(parameters.Disk!)}",
        "-drive", $"if=none,id=childs0,driver=replication,mode=secondary,top-id={DiskId},file.driver=qcow2,file.file.filename={QemuOpts.Escape(ActiveDisk)},file.backing.driver=qcow2,file.backing.file.filename={QemuOpts.Escape(HiddenDisk)},file.backing.backing={ParentId}",
        "-drive", $"if=none,id={DiskId},driver=quorum,read-pattern=fifo,vote-threshold=1,children.0=childs0",
    ];

    /// <summary>The daemon on the primary's node: QEMU's colo-compare arguments plus its monitors and control socket.</summary>
    public List<string> Daemon() =>
    [
        "-chardev", $"socket,id=compare0-0,path={PrimaryInSocket}",
        "-chardev", $"socket,id=compare1,host={Host(Local)},port={Port(ColoResourceParameters.SecondaryInPortOffset)},server=on,wait=off",
        "-chardev", $"socket,id=compare_out0,path={OutdevSocket}",
        "-object", string.Create(CultureInfo.InvariantCulture,
            $"colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,compare_timeout={parameters.CompareTimeout},expired_scan_cycle={parameters.ExpiredScanCycle},max_queue_size={parameters.MaxQueueSize}{VnetHdr}"),
        "--qmp", $"unix:{DaemonQmpSocket}",
        "--secondary-qmp", SecondaryQmpAddress(Peer),
        "--restore-redirector", "redire0,before=redire1",
        "--control", ControlSocket,
        .. parameters.DaemonOptions,
    ];

    private static string Host(ClusterNode node) => node.Address.Contains(':', StringComparison.Ordinal) ? $"[{node.Address}]" : node.Address;

    private string Port(int offset) => (parameters.BasePort + offset).ToString(CultureInfo.InvariantCulture);
}
