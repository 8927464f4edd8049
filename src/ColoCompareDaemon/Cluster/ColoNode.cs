using System.Diagnostics;
using System.Globalization;
using ColoChardev.Qmp;
using static Tmds.Linux.LibC;

namespace ColoChardev.Daemon.Cluster;

/// <summary>What this node runs for the VM: the role it last took on.</summary>
internal enum ColoRole
{
    None,
    Secondary,
    Primary,
}

/// <summary>
/// One node's share of a COLO VM: its QEMU and (as primary) the daemon, known by the pid files in the state folder
/// and checked against <c>/proc/PID/cmdline</c> before any signal, so a recycled pid is never taken for ours.
/// </summary>
internal sealed class ColoNode(ColoResourceParameters parameters, ColoCommandLines lines, TextWriter log)
{
    public ColoCommandLines Lines { get; } = lines;

    public ColoResourceParameters Parameters => parameters;

    private string Dir => Lines.Dir;
    private string QemuPidFile => Lines.QemuPidFile;
    private string DaemonPidFile => $"{Dir}/daemon.pid";
    private string RoleFile => $"{Dir}/role";
    private string QemuLog => $"{Dir}/qemu.log";
    private string DaemonLog => $"{Dir}/daemon.log";

    public ColoRole Role
    {
        get => File.Exists(RoleFile) && Enum.TryParse(File.ReadAllText(RoleFile).Trim(), ignoreCase: true, out ColoRole role) ? role : ColoRole.None;
        set
        {
            if (value != ColoRole.None)
            {
                File.WriteAllText(RoleFile, value.ToString().ToLowerInvariant() + "\n");
            }
            else if (File.Exists(RoleFile))
            {
                File.Delete(RoleFile);
            }
        }
    }

    /// <summary>The running QEMU's pid: its pid file names it and its command line names that pid file.</summary>
    public int? Qemu => Alive(QemuPidFile, QemuPidFile);

    /// <summary>The running daemon's pid: its command line names the control socket in this state folder.</summary>
    public int? Daemon => Alive(DaemonPidFile, Lines.ControlSocket);

    /// <summary>The state folder, readable by its owner only (it holds QEMU's monitors).</summary>
    /// <summary>Past this size daemon.log and qemu.log are copied to NAME.1 and emptied.</summary>
    public const long LogLimitBytes = 8L << 20;

    /// <summary>
    /// Bounds the logs of a VM that runs for months (the state folder is usually in /run, which is memory): as
    /// logrotate's copytruncate, so the daemon's shell-opened O_APPEND descriptor goes on writing at the new end.
    /// Lines written between the copy and the truncation are lost; nothing else is.
    /// </summary>
    public void TrimLogs()
    {
        foreach (string path in (string[])[DaemonLog, QemuLog])
        {
            var file = new FileInfo(path);
            if (file.Exists && file.Length > LogLimitBytes)
            {
                File.Copy(path, path + ".1", overwrite: true);
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
                stream.SetLength(0);
            }
        }
    }

    /// <summary>How long ago this node's QEMU was started (its pid file is written then).</summary>
    public TimeSpan QemuAge => DateTime.UtcNow - File.GetLastWriteTimeUtc(QemuPidFile);

    /// <summary>Whether the agent booted this node's QEMU as a primary (not a secondary that took over).</summary>
    public bool BootedAsPrimary
    {
        get => File.Exists($"{Dir}/booted-as-primary");
        set => Mark($"{Dir}/booted-as-primary", value);
    }

    /// <summary>
    /// Whether the agent stopped the VM to attach the disk's replication child: until COLO runs, a monitor that finds
    /// the VM paused and no migration under way resumes it (the attempt failed, or the agent was killed mid-way).
    /// </summary>
    public bool PausedForProtection
    {
        get => File.Exists($"{Dir}/paused-for-protection");
        set => Mark($"{Dir}/paused-for-protection", value);
    }

    /// <summary>A fact kept across agent runs as an empty file in the state folder: there or not.</summary>
    private static void Mark(string path, bool value)
    {
        if (value)
        {
            File.WriteAllText(path, string.Empty);
        }
        else if (File.Exists(path))
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// The secondary's active and hidden disks, made afresh (qcow2, the size of the local image) before its QEMU
    /// starts; null, or why not.
    /// </summary>
    public async Task<string?> MakeReplicationDisksAsync(CancellationToken cancellationToken)
    {
        if (parameters.Disk is not string disk)
        {
            return null;
        }

        if (!File.Exists(disk))
        {
            return $"disk '{disk}' does not exist on this node";
        }

        string size = new FileInfo(disk).Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (string path in (string[])[Lines.ActiveDisk, Lines.HiddenDisk])
        {
            File.Delete(path);
            CommandResult result;
            try
            {
                result = await CommandRun.RunAsync(parameters.QemuImg, ["create", "-q", "-f", "qcow2", path, size], cancellationToken).ConfigureAwait(false);
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                return $"qemu_img '{parameters.QemuImg}' cannot be run: {e.Message}";
            }

            if (result.ExitCode != 0)
            {
                return $"qemu-img could not make {path}: {result.LastLine}";
            }
        }

        return null;
    }

    public void PrepareStateDir()
    {
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("the COLO resource agent runs on Linux");
        }

        Directory.CreateDirectory(Dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    /// <summary>
    /// Starts QEMU with <c>-daemonize</c>: the command returns once QEMU has initialised (a bad option or a taken port
    /// fails here, with QEMU's own message) and QEMU keeps none of the agent's file descriptors.
    /// </summary>
    public async Task<string?> StartQemuAsync(IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        File.Delete(QemuPidFile);
        string[] command = [.. arguments, "-daemonize"];
        await File.AppendAllTextAsync(QemuLog, $"{DateTime.UtcNow:O} {parameters.QemuBinary} {string.Join(' ', command)}\n", cancellationToken).ConfigureAwait(false);
        CommandResult result = await CommandRun.RunAsync(parameters.QemuBinary, command, cancellationToken).ConfigureAwait(false);
        await File.AppendAllTextAsync(QemuLog, result.Output + result.Error, cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0 || Qemu is null)
        {
            return $"QEMU did not start: {result.LastLine}";
        }

        return null;
    }

    /// <summary>
    /// Starts the daemon in a session of its own, its output appended to daemon.log; returns once its control
    /// socket answers, or the reason it did not.
    /// </summary>
    public async Task<string?> StartDaemonAsync(CancellationToken cancellationToken)
    {
        File.Delete(DaemonPidFile);
        // sh writes its own pid and execs the daemon, so the pid is the daemon's; setsid --fork detaches it from the
        // agent, whose standard output Pacemaker reads to the end.
        string[] arguments = ["--fork", "sh", "-c", "echo $$ > \"$0\"; log=\"$1\"; shift; exec \"$@\" >> \"$log\" 2>&1 < /dev/null", DaemonPidFile, DaemonLog, parameters.ColoCompare, .. Lines.Daemon()];
        await File.AppendAllTextAsync(DaemonLog, $"{DateTime.UtcNow:O} {parameters.ColoCompare} {string.Join(' ', Lines.Daemon())}\n", cancellationToken).ConfigureAwait(false);
        await CommandRun.RunAsync("setsid", arguments, cancellationToken).ConfigureAwait(false);

        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            if (Daemon is not null && await DaemonAnswersAsync(TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false))
            {
                return null;
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(1) && Daemon is null)
            {
                break;
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }

        string last = File.Exists(DaemonLog) ? File.ReadLines(DaemonLog).LastOrDefault() ?? string.Empty : string.Empty;
        return $"the daemon did not start: {last}";
    }

    /// <summary>Whether the daemon's control socket answers <c>query-status</c> within <paramref name="timeout"/>.</summary>
    public async Task<bool> DaemonAnswersAsync(TimeSpan timeout, CancellationToken cancellationToken) =>
        await DaemonStatusAsync(timeout, cancellationToken).ConfigureAwait(false) is not null;

    /// <summary>The daemon's <c>query-status</c> as JSON text, or null if it does not answer.</summary>
    public async Task<string?> DaemonStatusAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            var options = new QmpClientOptions { ConnectTimeout = timeout, CommandTimeout = timeout };
            await using QmpClient client = await QmpClient.ConnectAsync($"unix:{Lines.ControlSocket}", options, cancellationToken).ConfigureAwait(false);
            return (await client.ExecuteAsync("query-status", cancellationToken: cancellationToken).ConfigureAwait(false)).GetRawText();
        }
        catch (Exception e) when (e is QmpException or System.Net.Sockets.SocketException or IOException)
        {
            return null;
        }
    }

    /// <summary>QEMU's local monitor for the agent.</summary>
    public Task<QmpClient> QmpAsync(TimeSpan timeout, CancellationToken cancellationToken) =>
        QmpClient.ConnectAsync($"unix:{Lines.QmpSocket}", new QmpClientOptions { ConnectTimeout = timeout, CommandTimeout = timeout }, cancellationToken);

    /// <summary>Stops the daemon: SIGTERM (it releases what it holds, up to 5 s), SIGKILL after <paramref name="grace"/> (10 s).</summary>
    public Task StopDaemonAsync(CancellationToken cancellationToken, TimeSpan? grace = null) =>
        StopAsync(Daemon, "the daemon", DaemonPidFile, grace ?? TimeSpan.FromSeconds(10), cancellationToken);

    /// <summary>Stops QEMU: SIGTERM, SIGKILL after 10 s. A COLO VM has nothing to shut down cleanly on one side alone.</summary>
    public Task StopQemuAsync(CancellationToken cancellationToken) => StopAsync(Qemu, "QEMU", QemuPidFile, TimeSpan.FromSeconds(10), cancellationToken);

    private async Task StopAsync(int? pid, string what, string pidFile, TimeSpan grace, CancellationToken cancellationToken)
    {
        if (pid is int running)
        {
            log.WriteLine($"colo-compare: stopping {what} (pid {running})");
            _ = kill(running, SIGTERM);
            var waited = Stopwatch.StartNew();
            while (IsAlive(running) && waited.Elapsed < grace)
            {
                await Task.Delay(50, cancellationToken).ConfigureAwait(false);
            }

            if (IsAlive(running))
            {
                log.WriteLine($"colo-compare: {what} (pid {running}) did not stop in {grace.TotalSeconds:0} s; killing it");
                _ = kill(running, SIGKILL);
                while (IsAlive(running))
                {
                    await Task.Delay(20, cancellationToken).ConfigureAwait(false);
                }
            }
        }

        if (File.Exists(pidFile))
        {
            File.Delete(pidFile);
        }
    }

    /// <summary>Runs a command of the system (ip, crm_attribute); its failure is logged and returned, never thrown.</summary>
    public async Task<bool> RunAsync(string program, IReadOnlyList<string> arguments, CancellationToken cancellationToken) =>
        await OutputAsync(program, arguments, cancellationToken).ConfigureAwait(false) is not null;

    /// <summary>Runs a command of the system and returns its standard output, or null (logged) if it failed.</summary>
    public async Task<string?> OutputAsync(string program, IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        try
        {
            CommandResult result = await CommandRun.RunAsync(program, arguments, cancellationToken).ConfigureAwait(false);
            if (result.ExitCode != 0)
            {
                log.WriteLine($"colo-compare: {program} {string.Join(' ', arguments)}: exit code {result.ExitCode}: {result.Error.Trim()}");
                return null;
            }

            return result.Output;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            log.WriteLine($"colo-compare: {program} cannot be run: {e.Message}");
            return null;
        }
    }

    private static int? Alive(string pidFile, string mark)
    {
        if (!File.Exists(pidFile) || !int.TryParse(File.ReadAllText(pidFile).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid <= 1)
        {
            return null;
        }

        try
        {
            // Arguments are NUL-separated; the mark is a whole argument or part of one (-pidfile PATH, path=...).
            string commandLine = File.ReadAllText($"/proc/{pid}/cmdline");
            return commandLine.Contains(mark, StringComparison.Ordinal) && !IsZombie(pid) ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static bool IsAlive(int pid) => Directory.Exists($"/proc/{pid}") && !IsZombie(pid);

    private static bool IsZombie(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            return close > 0 && close + 2 < stat.Length && stat[close + 2] is 'Z' or 'X';
        }
        catch (IOException)
        {
            return false;
        }
    }
}
