using ColoChardev.Daemon.Configuration;
using ColoChardev.Qmp;

namespace ColoChardev.Daemon.Cluster;

/// <summary>
/// <c>colo-compare ocf ACTION</c>: the logic of the OCF resource agent <c>ocf:colochardev:colo</c>
/// (<c>packaging/pacemaker/colo</c> is its shell entry point). Parameters come from <c>OCF_RESKEY_*</c>; every failure
/// is one sentence on standard error (Pacemaker logs it with the action) and an OCF exit code.
/// </summary>
internal sealed partial class ColoResourceAgent(IReadOnlyDictionary<string, string> environment, TextWriter output, TextWriter error)
{
    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        var environment = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry entry in System.Environment.GetEnvironmentVariables())
        {
            environment[(string)entry.Key] = entry.Value as string ?? string.Empty;
        }

        if (args.Count != 1)
        {
            error.WriteLine("colo-compare: ocf needs one action: start, stop, monitor, promote, demote, notify, meta-data or validate-all");
            return OcfExitCode.Unimplemented;
        }

        return await new ColoResourceAgent(environment, output, error).RunAsync(args[0], cancellationToken).ConfigureAwait(false);
    }

    public async Task<int> RunAsync(string action, CancellationToken cancellationToken)
    {
        if (action == "meta-data")
        {
            output.Write(ColoResourceMetadata.Text());
            return OcfExitCode.Success;
        }

        if (action is not ("start" or "stop" or "monitor" or "promote" or "demote" or "notify" or "validate-all"))
        {
            error.WriteLine($"colo-compare: ocf action '{action}' is not one of start, stop, monitor, promote, demote, notify, meta-data, validate-all");
            return OcfExitCode.Unimplemented;
        }

        if (!ColoResourceParameters.TryParse(environment, out ColoResourceParameters? parameters, out string? problem))
        {
            // A stop or a probe of a resource that cannot be configured has nothing running: saying so lets the
            // cluster clean up instead of failing the stop (which would mean fencing).
            if (action == "stop" || (action == "monitor" && IsProbe))
            {
                error.WriteLine($"colo-compare: {problem}; nothing of it can be running");
                return action == "stop" ? OcfExitCode.Success : OcfExitCode.NotRunning;
            }

            error.WriteLine($"colo-compare: {problem}");
            return OcfExitCode.Configured;
        }

        if (action == "validate-all")
        {
            return await ValidateAsync(parameters!, cancellationToken).ConfigureAwait(false);
        }

        string localName = LocalNodeName ?? System.Environment.MachineName;
        if (parameters!.NodeNamed(localName) is not ClusterNode local)
        {
            error.WriteLine($"colo-compare: this node '{localName}' is not in node_addresses ({string.Join(", ", parameters.Nodes.Select(n => n.Name))})");
            return action == "stop" ? OcfExitCode.Success : action == "monitor" ? OcfExitCode.NotRunning : OcfExitCode.Args;
        }

        (QmpVersion? found, string? qemuProblem) = await QemuBinary.VersionAsync(parameters.QemuBinary, cancellationToken).ConfigureAwait(false);
        var node = new ColoNode(parameters, new ColoCommandLines(parameters, local, found ?? new QmpVersion(7, 2, 0)), error);
        if (found is not QmpVersion version)
        {
            // Without QEMU nothing of ours runs here, unless it was removed under a running VM: then say so.
            error.WriteLine($"colo-compare: {qemuProblem}");
            return (action, node.Qemu) switch
            {
                ("stop", null) => OcfExitCode.Success,
                ("monitor", null) => OcfExitCode.NotRunning,
                _ => OcfExitCode.Installed,
            };
        }

        try
        {
            return action switch
            {
                "start" => await StartAsync(node, version, cancellationToken).ConfigureAwait(false),
                "stop" => await StopAsync(node, cancellationToken).ConfigureAwait(false),
                "monitor" => await MonitorAsync(node, version, cancellationToken).ConfigureAwait(false),
                "promote" => await PromoteAsync(node, cancellationToken).ConfigureAwait(false),
                "demote" => await DemoteAsync(node, version, cancellationToken).ConfigureAwait(false),
                _ => await NotifyAsync(node, cancellationToken).ConfigureAwait(false),
            };
        }
        catch (Exception e) when (e is QmpException or IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            error.WriteLine($"colo-compare: {action} failed: {e.Message}");
            return OcfExitCode.Generic;
        }
    }

    /// <summary>A monitor with interval 0 is a probe: "is it running here?", asked before anything was started.</summary>
    private bool IsProbe => !environment.TryGetValue("OCF_RESKEY_CRM_meta_interval", out string? interval) || interval is "" or "0";

    /// <summary>This node's name as Pacemaker passes it to every action.</summary>
    private string? LocalNodeName => environment.TryGetValue("OCF_RESKEY_CRM_meta_on_node", out string? node) && node.Length > 0 ? node : null;

    /// <summary>
    /// validate-all: the parameters parse (done), this node is one of the two, QEMU and the daemon are installed, and
    /// the daemon accepts the command line the agent would give it (with <c>daemon_options</c>).
    /// </summary>
    private async Task<int> ValidateAsync(ColoResourceParameters parameters, CancellationToken cancellationToken)
    {
        ClusterNode local = parameters.Nodes[0];
        if (LocalNodeName is string name)
        {
            if (parameters.NodeNamed(name) is not ClusterNode named)
            {
                error.WriteLine($"colo-compare: this node '{name}' is not in node_addresses ({string.Join(", ", parameters.Nodes.Select(n => n.Name))})");
                return OcfExitCode.Args;
            }

            local = named;
        }

        (QmpVersion? found, string? qemuProblem) = await QemuBinary.VersionAsync(parameters.QemuBinary, cancellationToken).ConfigureAwait(false);
        if (found is not QmpVersion version)
        {
            error.WriteLine($"colo-compare: {qemuProblem}");
            return OcfExitCode.Installed;
        }

        if (!version.IsAtLeast(7, 2))
        {
            error.WriteLine($"colo-compare: qemu_binary '{parameters.QemuBinary}' is QEMU {version}; the agent knows COLO's commands from QEMU 7.2 on");
            return OcfExitCode.Installed;
        }

        if (!Executables.Exists(parameters.ColoCompare))
        {
            error.WriteLine($"colo-compare: colo_compare '{parameters.ColoCompare}' is not an executable file");
            return OcfExitCode.Installed;
        }

        if (parameters.Bridge is not null && !Executables.Exists("ip"))
        {
            error.WriteLine("colo-compare: parameter bridge needs the ip command (iproute2), which is not on PATH");
            return OcfExitCode.Installed;
        }

        if (parameters.Disk is string disk && !File.Exists(disk))
        {
            error.WriteLine($"colo-compare: disk '{disk}' does not exist on this node");
            return OcfExitCode.Installed;
        }

        if (parameters.Disk is not null && !Executables.Exists(parameters.QemuImg))
        {
            error.WriteLine($"colo-compare: qemu_img '{parameters.QemuImg}' is not an executable file (package qemu-utils); a secondary with a disk needs it");
            return OcfExitCode.Installed;
        }

        var lines = new ColoCommandLines(parameters, local, version);
        if (!CommandLine.TryParse(lines.Daemon(), out _, out string? daemonProblem))
        {
            error.WriteLine($"colo-compare: the daemon refuses its command line: {daemonProblem} (check daemon_options)");
            return OcfExitCode.Configured;
        }

        return OcfExitCode.Success;
    }
}
