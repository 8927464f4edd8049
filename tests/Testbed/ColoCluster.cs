using System.Globalization;
using System.Net;
using System.Text;

namespace ColoChardev.Testbed;

/// <summary>
/// A two-node Pacemaker/Corosync cluster running one COLO VM through our resource agent
/// (<c>scripts/qemu/colo-cluster.sh</c>): nodes <c>n1</c> and <c>n2</c>, each in network, mount and UTS namespaces
/// the script creates, and a client namespace. Nodes are killed and brought back by PID, as the script records them.
/// </summary>
public sealed class ColoCluster : IAsyncDisposable
{
    public static readonly string[] Nodes = ["n1", "n2"];
    private static readonly TimeSpan ScriptTimeout = TimeSpan.FromMinutes(4);
    private readonly Dictionary<string, string> _env;
    private readonly Action<string> _log;
    private bool _stopped;

    private ColoCluster(string name, string directory, Dictionary<string, string> env, Action<string> log)
    {
        Name = name;
        Directory = directory;
        _env = env;
        _log = log;
        ClientNamespace = new NetworkNamespace($"{name}-cl");
    }

    public string Name { get; }

    public string Directory { get; }

    public NetworkNamespace ClientNamespace { get; }

    public IPAddress GuestAddress { get; } = IPAddress.Parse("10.0.0.2");

    public static async Task<ColoCluster> StartAsync(Action<string> log)
    {
        string name = "c" + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray().AsSpan(0, 2));
        string directory = Path.Combine(Path.GetTempPath(), "colo-cluster-" + name);
        var environment = new Dictionary<string, string>
        {
            ["COLO_CLUSTER_DIR"] = directory,
            ["COLO_COMPARE_DIR"] = AppContext.BaseDirectory,
        };
        var cluster = new ColoCluster(name, directory, environment, log);
        (int code, string output) = await cluster.ScriptAsync(["start", "--name", name]).ConfigureAwait(false);
        log(output);
        if (code != 0)
        {
            string logs = cluster.Diagnostics();
            await cluster.DisposeAsync().ConfigureAwait(false);
            throw new InvalidOperationException($"colo-cluster.sh start failed ({code}):\n{output}\n{logs}");
        }

        return cluster;
    }

    /// <summary>The node the VM is promoted on, or null while none is.</summary>
    public async Task<string?> PromotedAsync()
    {
        (int _, string output) = await ScriptAsync(["promoted", "--name", Name]).ConfigureAwait(false);
        string node = output.Trim();
        return Nodes.Contains(node) ? node : null;
    }

    public static string Other(string node) => node == "n1" ? "n2" : "n1";

    /// <summary>Every process of the node killed, its links cut: a node lost.</summary>
    public Task KillNodeAsync(string node) => CheckedAsync(["kill-node", "--name", Name, node]);

    /// <summary>The node comes back: Corosync and Pacemaker start again, and with them the resource.</summary>
    public Task StartNodeAsync(string node) => CheckedAsync(["start-node", "--name", Name, node]);

    /// <summary>A command on a node (in its namespaces), its exit code and output.</summary>
    public Task<(int Code, string Output)> ExecAsync(string node, params string[] command) => ScriptAsync(["exec", "--name", Name, node, .. command]);

    /// <summary><c>crm_mon -1 -A</c> as a node sees the cluster.</summary>
    public async Task<string> ClusterStatusAsync(string node) => (await ExecAsync(node, "crm_mon", "-1", "-A").ConfigureAwait(false)).Output;

    /// <summary>One QMP command on a node's QEMU (the agent's monitor socket), its reply line.</summary>
    public async Task<string> QmpAsync(string node, string command) =>
        (await ExecAsync(node, Path.Combine(AppContext.BaseDirectory, "colo-compare"), "qmp", "unix:/run/colo-ha/vm1/qmp.sock", command).ConfigureAwait(false)).Output;

    /// <summary>A file of the VM's state folder on a node (its /run is its own: read through a process of the node).</summary>
    public string StateFile(string node, string file)
    {
        string path = $"/proc/{NodePid(node)}/root/run/colo-ha/vm1/{file}";
        return File.Exists(path) ? File.ReadAllText(path) : string.Empty;
    }

    /// <summary>
    /// The text at 512-byte sector <paramref name="slot"/> of a node's own disk image (the file behind its
    /// /var/lib/colo-ha/vm1.raw, read on the host), up to its first newline.
    /// </summary>
    public string DiskImageSlot(string node, int slot)
    {
        using var image = new FileStream(Path.Combine(Directory, node, "disks", "vm1.raw"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        byte[] sector = new byte[512];
        image.Position = slot * 512L;
        image.ReadExactly(sector);
        string text = Encoding.ASCII.GetString(sector).TrimEnd('\0');
        int newline = text.IndexOf('\n', StringComparison.Ordinal);
        return newline >= 0 ? text[..newline] : text;
    }

    /// <summary>The daemon's pid on a node, from the agent's pid file; 0 if none.</summary>
    public int DaemonPid(string node) =>
        int.TryParse(StateFile(node, "daemon.pid").Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ? pid : 0;

    /// <summary>The agent's lines in a node's Pacemaker log (what each action said).</summary>
    public string AgentLog(string node)
    {
        string path = Path.Combine(Directory, node, "var-log-pacemaker", "pacemaker.log");
        return File.Exists(path)
            ? string.Join('\n', File.ReadLines(path).Where(l => l.Contains("colo-compare:", StringComparison.Ordinal) && l.Contains("pacemaker-execd", StringComparison.Ordinal)))
            : string.Empty;
    }

    public string Diagnostics()
    {
        var text = new StringBuilder();
        foreach (string node in Nodes)
        {
            text.AppendLine($"--- {node}: agent").AppendLine(AgentLog(node));
            foreach (string file in (string[])["daemon.log", "qemu.log", "serial.log"])
            {
                string[] lines = StateFile(node, file).Split('\n');
                text.AppendLine($"--- {node}: {file} (last 20 of {lines.Length})").AppendJoin('\n', lines.TakeLast(20)).AppendLine();
            }
        }

        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        (int code, string output) = await ScriptAsync(["stop", "--name", Name]).ConfigureAwait(false);
        _log(output);
        if (code != 0)
        {
            throw new InvalidOperationException($"colo-cluster.sh stop failed ({code}): {output}");
        }

        if (File.Exists(Path.Combine("/var/run/netns", ClientNamespace.Name)))
        {
            throw new InvalidOperationException($"namespace {ClientNamespace.Name} is still there after stop");
        }

        System.IO.Directory.Delete(Directory, recursive: true);
    }

    private int NodePid(string node) =>
        int.TryParse(File.Exists(Path.Combine(Directory, node, "node.pid")) ? File.ReadAllText(Path.Combine(Directory, node, "node.pid")).Trim() : "", NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ? pid : 0;

    private async Task CheckedAsync(IEnumerable<string> arguments)
    {
        (int code, string output) = await ScriptAsync(arguments).ConfigureAwait(false);
        _log(output);
        if (code != 0)
        {
            throw new InvalidOperationException($"colo-cluster.sh {string.Join(' ', arguments)} failed ({code}): {output}\n{Diagnostics()}");
        }
    }

    private async Task<(int Code, string Output)> ScriptAsync(IEnumerable<string> arguments)
    {
        ProcessResult result = await ExternalProcess.RunAsync("bash", [RepositoryPaths.Script("qemu", "colo-cluster.sh"), .. arguments], ScriptTimeout, _env).ConfigureAwait(false);
        return (result.ExitCode, result.Output);
    }
}
