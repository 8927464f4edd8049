using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using ColoChardev.ChardevProtocol.Endpoints;

namespace ColoChardev.Daemon.Cluster;

/// <summary>One of the two nodes a COLO VM runs on: its name as the cluster knows it and the address COLO's streams use.</summary>
internal sealed record ClusterNode(string Name, string Address);

/// <summary>
/// The parameters of <c>ocf:colochardev:colo</c>, checked and typed. <see cref="Definitions"/> is the one list both
/// the meta-data and the parser read, so a parameter cannot be documented and not parsed, or the other way round.
/// </summary>
internal sealed partial record ColoResourceParameters
{
    /// <summary>Where <c>dotnet publish</c> puts the daemon in docs/operations.md and the systemd unit.</summary>
    public const string DefaultColoCompare = "/usr/local/lib/colo-compare/colo-compare";

    /// <summary>Offsets from <c>base_port</c> on a node's COLO address.</summary>
    public const int MigrationPortOffset = 0, MirrorPortOffset = 1, SecondaryInPortOffset = 2, NbdPortOffset = 3, SecondaryQmpPortOffset = 4;

    public static readonly IReadOnlyList<ColoResourceParameter> Definitions =
    [
        new("vm_name", OcfContentType.String, "", true, "The VM's name",
            "Names the VM's state folder, sockets, tap and log. Letters, digits, '.', '_' and '-', at most 32.") { Unique = true },
        new("node_addresses", OcfContentType.String, "", true, "The two nodes and their COLO addresses",
            "'NODE=ADDRESS NODE=ADDRESS': each node's name as the cluster knows it (crm_node -n) and the address the other node reaches it on for migration, the mirrored client traffic, the secondary's output and QMP."),
        new("qemu_binary", OcfContentType.String, "qemu-system-x86_64", false, "QEMU's binary",
            "The qemu-system binary, a path or a name on PATH. The same version on both nodes."),
        new("qemu_options", OcfContentType.String, "", true, "The VM's own QEMU options",
            "Machine, CPU, memory, kernel: everything but the network, the replicated disk, the monitors and COLO, which the agent adds (-netdev tap with id hn0, the NIC device, the disk's drives and device, the chardevs and filters of docs/COLO-FT.txt, -qmp, -incoming on the secondary). A disk given here is not replicated: each node's guest would write its own. Split like sh words, without expansions."),
        new("nic_model", OcfContentType.String, "virtio-net-pci", false, "The NIC device",
            "The -device the VM's NIC is; the agent adds netdev=hn0 and the MAC address."),
        new("mac", OcfContentType.String, "", false, "The NIC's MAC address",
            "The same on both nodes. Empty: a locally administered address made from vm_name (52:54:00 and three bytes of its SHA-256)."),
        new("tap", OcfContentType.String, "", false, "The VM's tap device",
            "Made by QEMU on each node. Empty: 'colo-' and the first ten characters of vm_name."),
        new("bridge", OcfContentType.String, "", false, "The bridge the primary's tap joins",
            "The tap of the node that runs the primary is put on this bridge, the secondary's is kept off it (it receives the client traffic through the primary's filter-mirror). Empty: the agent leaves the tap alone."),
        new("base_port", OcfContentType.Integer, "9000", false, "The first of five TCP ports",
            "On each node's COLO address: +0 migration, +1 the primary's filter-mirror output, +2 the secondary's output to the daemon, +3 NBD (disks), +4 the secondary's QMP for the daemon and the peer."),
        new("checkpoint_interval", OcfContentType.Integer, "20000", false, "Periodic checkpoints (ms)",
            "x-checkpoint-delay: the daemon asks for extra checkpoints when the outputs diverge."),
        new("compare_timeout", OcfContentType.Integer, "3000", false, "colo-compare's compare_timeout (ms)",
            "How long a packet waits for its twin before a checkpoint is asked for."),
        new("expired_scan_cycle", OcfContentType.Integer, "1000", false, "colo-compare's expired_scan_cycle (ms)",
            "How often queues are scanned for timeouts."),
        new("max_queue_size", OcfContentType.Integer, "1024", false, "colo-compare's max_queue_size (packets)",
            "A flow's queue at this size asks for a checkpoint."),
        new("disk", OcfContentType.String, "", false, "The VM's replicated disk",
            "A raw image at this path on each node, each node's own copy, the same size on both. The primary writes it and, through QEMU's block replication (quorum, replication and NBD drives of docs/COLO-FT.txt), the secondary's copy too; before COLO starts, the primary copies its disk to the secondary's (drive-mirror, sync full), so a node that was away starts from the survivor's disk. Empty: a VM without disks."),
        new("disk_model", OcfContentType.String, "virtio-blk-pci", false, "The disk's device",
            "The -device the replicated disk is attached to; the agent adds drive=colo-disk0."),
        new("qemu_img", OcfContentType.String, "qemu-img", false, "qemu-img",
            "Makes the secondary's active and hidden disks (qcow2, in state_dir) at each start, when disk is set."),
        new("vnet_hdr", OcfContentType.Boolean, "false", false, "vnet_hdr_support on every filter",
            "Set vnet_hdr_support on the filters and the daemon alike."),
        new("colo_compare", OcfContentType.String, DefaultColoCompare, false, "The colo-compare executable",
            "The daemon that runs in place of -object colo-compare on the primary's node; the agent's logic is its 'ocf' subcommand."),
        new("daemon_options", OcfContentType.String, "", false, "More options for the daemon",
            "Added to the daemon's command line, e.g. '--metrics 127.0.0.1:9187 --capture /var/log/colo-compare/vm1 --bypass proto=tcp,port=3389'. The agent sets the chardevs, -object colo-compare, --qmp, --secondary-qmp, --restore-redirector and --control itself."),
        new("state_dir", OcfContentType.String, "", false, "The VM's state folder",
            "QMP sockets, the daemon's chardevs and control socket, pid files and logs (daemon.log and qemu.log are copied to NAME.1 and emptied at 8 MiB). Empty: /run/colo-ha/VM_NAME."),
        new("protect_delay", OcfContentType.Integer, "10", false, "Seconds a freshly booted primary runs alone",
            "A primary the agent booted (no secondary had the VM) is protected only once it has run this long, so COLO does not start while the guest boots: QEMU 11.1 under TCG, protected at once, lost its secondary to a guest panic (virtio ring) at the first checkpoint in the cluster test. A primary that took over by failover is protected as soon as a secondary waits."),
        new("monitor_timeout", OcfContentType.Integer, "5000", false, "How long monitor waits for an answer (ms)",
            "For QEMU's QMP and the daemon's control socket, in the monitor action."),
    ];

    /// <summary>Options of the daemon that the agent sets; <c>daemon_options</c> may not.</summary>
    private static readonly string[] AgentOwnedOptions =
        ["-chardev", "--chardev", "-object", "--object", "--qmp", "--secondary-qmp", "--restore-redirector", "--control",
         "--primary-in", "--secondary-in", "--outdev", "--notify-dev", "--compare-timeout", "--expired-scan-cycle",
         "--max-queue-size", "--vnet-hdr-support"];

    public required string VmName { get; init; }
    public required IReadOnlyList<ClusterNode> Nodes { get; init; }
    public required string QemuBinary { get; init; }
    public required IReadOnlyList<string> QemuOptions { get; init; }
    public required string NicModel { get; init; }
    public required string Mac { get; init; }
    public required string Tap { get; init; }
    public required string? Bridge { get; init; }
    public required int BasePort { get; init; }
    public required int CheckpointInterval { get; init; }
    public required int CompareTimeout { get; init; }
    public required int ExpiredScanCycle { get; init; }
    public required int MaxQueueSize { get; init; }
    public required bool VnetHdr { get; init; }

    /// <summary>The replicated disk's path on each node, or null for a VM without disks.</summary>
    public required string? Disk { get; init; }
    public required string DiskModel { get; init; }
    public required string QemuImg { get; init; }
    public required string ColoCompare { get; init; }
    public required IReadOnlyList<string> DaemonOptions { get; init; }
    public required string StateDir { get; init; }
    public required int MonitorTimeout { get; init; }
    public required int ProtectDelay { get; init; }

    /// <summary>The node of the two that is not <paramref name="local"/>.</summary>
    public ClusterNode PeerOf(ClusterNode local) => Nodes[0] == local ? Nodes[1] : Nodes[0];

    /// <summary>This node, by the name Pacemaker gives the action (<c>OCF_RESKEY_CRM_meta_on_node</c>), or null.</summary>
    public ClusterNode? NodeNamed(string? name) => Nodes.FirstOrDefault(n => n.Name == name);

    /// <summary>
    /// Reads <c>OCF_RESKEY_*</c> from <paramref name="environment"/>. A missing or malformed value is one sentence in
    /// <paramref name="error"/>, naming the parameter; the cluster shows it as the action's reason.
    /// </summary>
    public static bool TryParse(IReadOnlyDictionary<string, string> environment, out ColoResourceParameters? parameters, out string? error)
    {
        ArgumentNullException.ThrowIfNull(environment);
        parameters = null;
        try
        {
            parameters = Parse(name => Value(environment, name));
            error = null;
            return true;
        }
        catch (FormatException e)
        {
            error = e.Message;
            return false;
        }
    }

    private static string Value(IReadOnlyDictionary<string, string> environment, string name)
    {
        ColoResourceParameter definition = Definitions.First(d => d.Name == name);
        string value = environment.TryGetValue(definition.EnvironmentName, out string? set) ? set.Trim() : string.Empty;
        if (value.Length == 0 && definition.Required)
        {
            throw new FormatException($"parameter {name} is required: {definition.ShortDescription.ToLowerInvariant()}");
        }

        return value.Length > 0 ? value : definition.Default;
    }

    private static ColoResourceParameters Parse(Func<string, string> value)
    {
        string vmName = value("vm_name");
        if (!NamePattern().IsMatch(vmName) || vmName.Length > 32)
        {
            throw new FormatException($"parameter vm_name '{vmName}' must be 1 to 32 letters, digits, '.', '_' or '-'");
        }

        string tap = value("tap");
        tap = tap.Length > 0 ? tap : "colo-" + vmName[..Math.Min(10, vmName.Length)];
        if (!NamePattern().IsMatch(tap) || tap.Length > 15)
        {
            throw new FormatException($"parameter tap '{tap}' must be a network interface name of 1 to 15 letters, digits, '.', '_' or '-'");
        }

        string bridge = value("bridge");
        if (bridge.Length > 0 && (!NamePattern().IsMatch(bridge) || bridge.Length > 15))
        {
            throw new FormatException($"parameter bridge '{bridge}' must be a network interface name of 1 to 15 letters, digits, '.', '_' or '-'");
        }

        int basePort = Integer(value, "base_port", 1, 65_535 - SecondaryQmpPortOffset);
        string stateDir = value("state_dir");
        stateDir = stateDir.Length > 0 ? stateDir : $"/run/colo-ha/{vmName}";
        if (!stateDir.StartsWith('/'))
        {
            throw new FormatException($"parameter state_dir '{stateDir}' must be an absolute path");
        }

        // Its sockets go into QEMU's and the daemon's option strings (-qmp unix:PATH,server=on, path=PATH).
        if (stateDir.Contains(',', StringComparison.Ordinal))
        {
            throw new FormatException($"parameter state_dir '{stateDir}' may not contain a comma");
        }

        // The longest socket path the agent makes in it must fit sockaddr_un (107 bytes and a NUL).
        if (Encoding.UTF8.GetByteCount(stateDir) > 107 - "/secondary-in.sock".Length)
        {
            throw new FormatException($"parameter state_dir '{stateDir}' is too long for the sockets in it (at most {107 - "/secondary-in.sock".Length} bytes)");
        }

        string disk = value("disk");
        if (disk.Length > 0 && !disk.StartsWith('/'))
        {
            throw new FormatException($"parameter disk '{disk}' must be an absolute path");
        }

        return new ColoResourceParameters
        {
            VmName = vmName,
            Nodes = NodesOf(value("node_addresses")),
            QemuBinary = value("qemu_binary"),
            QemuOptions = Words(value, "qemu_options"),
            NicModel = value("nic_model"),
            Mac = MacOf(value("mac"), vmName),
            Tap = tap,
            Bridge = bridge.Length > 0 ? bridge : null,
            BasePort = basePort,
            CheckpointInterval = Integer(value, "checkpoint_interval", 1, 3_600_000),
            CompareTimeout = Integer(value, "compare_timeout", 1, 3_600_000),
            ExpiredScanCycle = Integer(value, "expired_scan_cycle", 1, 3_600_000),
            MaxQueueSize = Integer(value, "max_queue_size", 1, 1 << 20),
            VnetHdr = Boolean(value, "vnet_hdr"),
            Disk = disk.Length > 0 ? disk : null,
            DiskModel = value("disk_model"),
            QemuImg = value("qemu_img"),
            ColoCompare = value("colo_compare"),
            DaemonOptions = DaemonOptionsOf(value),
            StateDir = stateDir.TrimEnd('/'),
            MonitorTimeout = Integer(value, "monitor_timeout", 100, 600_000),
            ProtectDelay = Integer(value, "protect_delay", 0, 3600),
        };
    }

    private static List<ClusterNode> NodesOf(string text)
    {
        var nodes = new List<ClusterNode>();
        foreach (string entry in text.Split([' ', '\t', ','], StringSplitOptions.RemoveEmptyEntries))
        {
            int equals = entry.IndexOf('=', StringComparison.Ordinal);
            string name = equals > 0 ? entry[..equals] : string.Empty;
            string address = equals > 0 ? entry[(equals + 1)..].Trim('[', ']') : string.Empty;
            if (name.Length == 0 || address.Length == 0 || Uri.CheckHostName(address) == UriHostNameType.Unknown)
            {
                throw new FormatException($"parameter node_addresses: '{entry}' is not NODE=ADDRESS");
            }

            nodes.Add(new ClusterNode(name, address));
        }

        if (nodes.Count != 2 || nodes[0].Name == nodes[1].Name)
        {
            throw new FormatException($"parameter node_addresses '{text}' must name two different nodes, as 'NODE=ADDRESS NODE=ADDRESS'");
        }

        return nodes;
    }

    private static string MacOf(string text, string vmName)
    {
        if (text.Length == 0)
        {
            byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(vmName));
            return string.Create(CultureInfo.InvariantCulture, $"52:54:00:{hash[0]:x2}:{hash[1]:x2}:{hash[2]:x2}");
        }

        if (!MacPattern().IsMatch(text) || (Convert.ToByte(text[..2], 16) & 1) != 0)
        {
            throw new FormatException($"parameter mac '{text}' must be a unicast MAC address, six hexadecimal bytes separated by ':'");
        }

        return text.ToLowerInvariant();
    }

    private static List<string> Words(Func<string, string> value, string name)
    {
        string text = value(name);
        return ShellWords.TrySplit(text, out List<string> words, out string? problem)
            ? words
            : throw new FormatException($"parameter {name} {problem}");
    }

    private static List<string> DaemonOptionsOf(Func<string, string> value)
    {
        List<string> words = Words(value, "daemon_options");
        foreach (string word in words)
        {
            string option = word.Split('=', 2)[0];
            if (AgentOwnedOptions.Contains(option))
            {
                throw new FormatException($"parameter daemon_options may not set {option}: the agent sets it from the other parameters");
            }
        }

        return words;
    }

    private static int Integer(Func<string, string> value, string name, int min, int max)
    {
        string text = value(name);
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int number) && number >= min && number <= max
            ? number
            : throw new FormatException($"parameter {name} '{text}' must be a whole number from {min} to {max}");
    }

    /// <summary>QEMU's spellings (<see cref="QemuOpts.TryParseBoolean"/>) and OCF's 1/0.</summary>
    private static bool Boolean(Func<string, string> value, string name)
    {
        string text = value(name).ToLowerInvariant();
        return text is "1" or "0"
            ? text == "1"
            : QemuOpts.TryParseBoolean(text, out bool result) ? result : throw new FormatException($"parameter {name} '{text}' must be true or false");
    }

    [GeneratedRegex("^[A-Za-z0-9._-]+$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")]
    private static partial Regex MacPattern();
}
