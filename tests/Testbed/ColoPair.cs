using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using ColoChardev.Qmp;

namespace ColoChardev.Testbed;

/// <summary>Which VM of the pair.</summary>
public enum ColoVm
{
    Primary,
    Secondary,
}

/// <summary>How to start a pair.</summary>
public sealed record ColoPairOptions
{
    /// <summary>QEMU's own colo-compare instead of the daemon.</summary>
    public bool Builtin { get; init; }

    /// <summary>x-checkpoint-delay (periodic checkpoints), ms.</summary>
    public int CheckpointDelayMs { get; init; } = 20_000;

    /// <summary>Seconds between the daemon's summary lines.</summary>
    public int SummaryIntervalSeconds { get; init; } = 1;

    /// <summary>More daemon options (after the script's own).</summary>
    public IReadOnlyList<string> DaemonArguments { get; init; } = [];
}

/// <summary>
/// A real COLO pair (primary and secondary QEMU with the tiny guest, our daemon in place of colo-compare) started by
/// <c>scripts/qemu/colo-pair.sh</c> in a network namespace of its own; the test is the client inside it.
/// Everything is stopped by PID and the namespace deleted on dispose.
/// </summary>
public sealed class ColoPair : IColoPair
{
    private static readonly TimeSpan ScriptTimeout = TimeSpan.FromMinutes(4);
    private readonly Dictionary<string, string> _env;
    private readonly Action<string> _log;
    private bool _stopped;

    private ColoPair(string name, string directory, Dictionary<string, string> env, Action<string> log)
    {
        Name = name;
        Directory = directory;
        _env = env;
        _log = log;
        ClientNamespace = new NetworkNamespace(env["COLO_PAIR_NAMESPACE"]);
        GuestAddress = IPAddress.Parse(env["COLO_PAIR_GUEST_IP"]);
        GuestDirectory = env["COLO_PAIR_GUEST_DIR"];
    }

    public string Name { get; }

    /// <summary>The pair's state folder (sockets, PID files, logs).</summary>
    public string Directory { get; }

    public NetworkNamespace ClientNamespace { get; }

    public IPAddress GuestAddress { get; }

    /// <summary>Where the guest was built (vmlinuz, initramfs.img, payload.bin, busybox).</summary>
    public string GuestDirectory { get; }

    public string PrimaryQmp => _env["COLO_PAIR_PRIMARY_QMP"];

    public string SecondaryQmp => _env["COLO_PAIR_SECONDARY_QMP"];

    public string DaemonLogPath => _env["COLO_PAIR_DAEMON_LOG"];

    /// <summary>The 16 MiB file the guest serves as /payload.bin (its first 4 MiB as /4m.bin).</summary>
    public byte[] Payload => File.ReadAllBytes(Path.Combine(GuestDirectory, "payload.bin"));

    /// <summary>The guest's busybox, used on the host as the namespace's ping.</summary>
    public string Busybox => Path.Combine(GuestDirectory, "busybox");

    public static async Task<ColoPair> StartAsync(ColoPairOptions? options = null, Action<string>? log = null)
    {
        options ??= new ColoPairOptions();
        log ??= _ => { };
        string name = "t" + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray().AsSpan(0, 4));
        string directory = Path.Combine(Path.GetTempPath(), "colo-pair-" + name);
        var environment = new Dictionary<string, string>
        {
            ["COLO_PAIR_DIR"] = directory,
            ["COLO_COMPARE_DLL"] = DaemonProcess.AssemblyPath,
            ["COLO_SUMMARY_INTERVAL"] = options.SummaryIntervalSeconds.ToString(CultureInfo.InvariantCulture),
        };
        List<string> arguments = ["start", "--name", name, "--checkpoint-delay", options.CheckpointDelayMs.ToString(CultureInfo.InvariantCulture)];
        if (options.Builtin)
        {
            arguments.Add("--builtin");
        }

        if (options.DaemonArguments.Count > 0)
        {
            arguments.Add("--");
            arguments.AddRange(options.DaemonArguments);
        }

        (int code, string output) = await RunScriptAsync(environment, arguments).ConfigureAwait(false);
        log(output);
        if (code != 0)
        {
            string logs = Tails(directory);
            await RunScriptAsync(environment, ["stop", "--name", name]).ConfigureAwait(false);
            throw new InvalidOperationException($"colo-pair.sh start failed ({code}):\n{output}\n{logs}");
        }

        var pair = new ColoPair(name, directory, ReadEnv(Path.Combine(directory, "pair.env")), log);
        foreach ((string key, string value) in environment)
        {
            pair._env[key] = value;
        }

        return pair;
    }

    /// <summary>The PID the pair recorded for a VM (we started it; only we kill it).</summary>
    public int ProcessId(ColoVm vm) => int.Parse(File.ReadAllText(Path.Combine(Directory, vm == ColoVm.Primary ? "primary.pid" : "secondary.pid")).Trim(), CultureInfo.InvariantCulture);

    /// <summary>The daemon's PID (daemon.pid), 0 when the pair runs QEMU's own colo-compare or the daemon is stopped.</summary>
    public int DaemonProcessId
    {
        get
        {
            string file = Path.Combine(Directory, "daemon.pid");
            return File.Exists(file) ? int.Parse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture) : 0;
        }
    }

    /// <summary>Whether the daemon the pair started (daemon.pid) still runs.</summary>
    public bool IsDaemonRunning => DaemonProcessId > 0 && System.IO.Directory.Exists($"/proc/{DaemonProcessId}");

    /// <summary>kill -9 one VM, as a crash would, and waits until it is gone.</summary>
    public async Task KillAsync(ColoVm vm)
    {
        int pid = ProcessId(vm);
        using Process process = Process.GetProcessById(pid);
        string cmdline = await File.ReadAllTextAsync($"/proc/{pid}/cmdline").ConfigureAwait(false);
        if (!cmdline.Contains(Directory, StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"PID {pid} is not the {vm} QEMU this pair started");
        }

        process.Kill();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
    }

    public async Task<QmpClient> ConnectQmpAsync(ColoVm vm, CancellationToken cancellationToken) =>
        await QmpConnect.WhenReadyAsync(vm == ColoVm.Primary ? PrimaryQmp : SecondaryQmp, cancellationToken).ConfigureAwait(false);

    /// <summary>Stops only the daemon (SIGTERM by PID).</summary>
    public Task StopDaemonAsync() => ScriptAsync("daemon-stop");

    /// <summary>Starts the daemon again with the same arguments; returns once QEMU sees it connected.</summary>
    public Task StartDaemonAsync() => ScriptAsync("daemon-start");

    /// <summary>The network half of a failover to the secondary (colo-pair.sh takeover): its tap replaces the primary's on the bridge.</summary>
    public Task TakeOverNetworkAsync() => ScriptAsync("takeover");

    /// <summary>busybox ping from the client address; returns the replies received.</summary>
    public Task<int> PingAsync(int count) => ClientNamespace.PingAsync(Busybox, GuestAddress, count, _log);

    /// <summary>The daemon's log so far.</summary>
    public string DaemonLog()
    {
        if (!File.Exists(DaemonLogPath))
        {
            return string.Empty; // QEMU's own colo-compare (--builtin), or the daemon has not started yet
        }

        using var stream = new FileStream(DaemonLogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }

    /// <summary>Waits for a daemon summary line written after this call (the daemon writes one per summary interval).</summary>
    public Task<DaemonSummary> NextSummaryAsync(TimeSpan timeout) => DaemonSummary.NextAsync(DaemonLog, timeout, Diagnostics);

    /// <summary>The last lines of every log of the pair, for failure messages.</summary>
    public string Diagnostics() => Tails(Directory);

    public async ValueTask DisposeAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        _log(Tails(Directory));
        (int code, string output) = await ScriptResultAsync("stop").ConfigureAwait(false);
        _log(output);
        if (code != 0)
        {
            throw new InvalidOperationException($"colo-pair.sh stop failed ({code}): {output}");
        }

        if (File.Exists(Path.Combine("/var/run/netns", ClientNamespace.Name)))
        {
            throw new InvalidOperationException($"namespace {ClientNamespace.Name} is still there after stop");
        }

        // The logs went to the test's output above; the state folder goes with the pair.
        System.IO.Directory.Delete(Directory, recursive: true);
    }

    private async Task ScriptAsync(string command)
    {
        (int code, string output) = await ScriptResultAsync(command).ConfigureAwait(false);
        _log(output);
        if (code != 0)
        {
            throw new InvalidOperationException($"colo-pair.sh {command} failed ({code}): {output}\n{Tails(Directory)}");
        }
    }

    private Task<(int Code, string Output)> ScriptResultAsync(string command) =>
        RunScriptAsync(_env, [command, "--name", Name]);

    private static async Task<(int Code, string Output)> RunScriptAsync(IReadOnlyDictionary<string, string> environment, IEnumerable<string> arguments)
    {
        ProcessResult result = await ExternalProcess.RunAsync("bash", [RepositoryPaths.Script("qemu", "colo-pair.sh"), .. arguments], ScriptTimeout, environment).ConfigureAwait(false);
        return (result.ExitCode, result.Output);
    }

    private static Dictionary<string, string> ReadEnv(string path)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in File.ReadAllLines(path))
        {
            int eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                values[line[..eq]] = line[(eq + 1)..];
            }
        }

        return values;
    }

    private static string Tails(string directory)
    {
        if (!System.IO.Directory.Exists(directory))
        {
            return "";
        }

        var text = new StringBuilder();
        foreach (string file in System.IO.Directory.GetFiles(directory, "*.log").Concat(System.IO.Directory.GetFiles(directory, "*.serial")).Order(StringComparer.Ordinal))
        {
            string[] lines = File.ReadAllLines(file);
            text.Append("--- ").Append(file).Append(" (last 40 of ").Append(lines.Length).AppendLine(" lines)");
            foreach (string line in lines.TakeLast(40))
            {
                text.AppendLine(line);
            }
        }

        return text.ToString();
    }
}
