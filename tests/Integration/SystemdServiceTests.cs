using System.Text.RegularExpressions;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.Testbed;
using Docker.DotNet.Models;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Configurations;
using DotNet.Testcontainers.Containers;
using DotNet.Testcontainers.Images;

namespace ColoChardev.Integration;

/// <summary>
/// packaging/systemd under a real systemd: systemd 252 (this machine's) as PID 1 in a Testcontainers container
/// (--network none, no bridge), this machine's /usr read-only, a copy of its /etc with the unit template and an
/// environment file installed as docs/operations.md says. `systemctl start colo-compare@vm1` returns once the daemon
/// said READY=1; the hardening is in force on the running process; the daemon compares over Unix chardevs shared with
/// the test; `systemctl stop` releases what it held.
/// </summary>
public sealed partial class SystemdServiceTests : IAsyncLifetime
{
    private const string Image = "colochardev-systemd:1";
    private readonly string _work = FreePort.TempSocketDirectory();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(180));
    private IContainer? _container;

    private string Sockets => Path.Combine(_work, "run");

    private string Logs => Path.Combine(_work, "log");

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_container is not null)
        {
            await _container.DisposeAsync();
        }

        _timeout.Dispose();
        Directory.Delete(_work, recursive: true);
    }

    [Fact]
    public async Task Under_real_systemd_the_unit_starts_ready_hardened_compares_captures_and_releases_what_it_held_on_stop()
    {
        await InstallAsync();
        await using var primaryServer = new ChardevEndpoint(ChardevSocketSpec.Parse($"unix:{Sockets}/primary-in.sock,server,nowait"));
        await using var outdevServer = new ChardevEndpoint(ChardevSocketSpec.Parse($"unix:{Sockets}/outdev.sock,server,nowait"));
        primaryServer.StartListening();
        outdevServer.StartListening();
        _container = await StartSystemdAsync();

        // Type=notify: start returns once the daemon sent READY=1 (its endpoints open), or fails.
        ExecResult start = await _container.ExecAsync(["systemctl", "start", "colo-compare@vm1"], _timeout.Token);
        Assert.True(start.ExitCode == 0, $"systemctl start: {start.Stderr}\n{await JournalAsync()}");
        Dictionary<string, string> unit = await ShowAsync("ActiveState", "SubState", "Type", "MainPID", "NRestarts");
        Assert.Equal(("active", "running", "notify", "0"), (unit["ActiveState"], unit["SubState"], unit["Type"], unit["NRestarts"]));

        // The hardening holds on the running daemon: no capabilities, no new privileges, a read-only root.
        string status = await ReadInContainerAsync($"/proc/{unit["MainPID"]}/status");
        Assert.Matches("(?m)^CapEff:\\s+0+$", status);
        Assert.Matches("(?m)^CapBnd:\\s+0+$", status);
        Assert.Matches("(?m)^NoNewPrivs:\\s+1$", status);
        Assert.Matches("(?m)^Seccomp:\\s+2$", status); // a filter is in force (SystemCallArchitectures alone makes one)
        string[] allowed = (await ShowAsync("SystemCallFilter"))["SystemCallFilter"].Split(' ');
        Assert.Contains("sendmsg", allowed); // and it is @system-service's allow-list: what the daemon needs, not reboot
        Assert.DoesNotContain("reboot", allowed);
        string mounts = await ReadInContainerAsync($"/proc/{unit["MainPID"]}/mountinfo");
        Assert.Matches(RootMountReadOnly(), mounts);

        // It compares: a matching pair goes out, a differing one is held and captured (LogsDirectory).
        await using ChardevConnection primary = await primaryServer.ConnectAsync(_timeout.Token);
        await using ChardevConnection outdev = await outdevServer.ConnectAsync(_timeout.Token);
        await using var secondaryClient = new ChardevEndpoint(ChardevSocketSpec.Parse($"unix:{Sockets}/secondary-in.sock,reconnect=1"));
        await using ChardevConnection secondary = await secondaryClient.ConnectAsync(_timeout.Token);
        byte[] same = Udp("same", 1, 53);
        byte[] held = Udp("primary's answer", 1, 54);
        await SendAsync(primary, same, held);
        await SendAsync(secondary, Udp("same", 2, 53), Udp("secondary's answer", 2, 54));
        Assert.Equal(Convert.ToHexString(same), await ReadAsync(outdev));
        // Written in the background: the file appears with its header first, the divergence follows.
        string capture = Path.Combine(Logs, "vm1", "comp0-000001.pcapng");
        string[] interfaces = [];
        for (int i = 0; i < 100 && interfaces.Length < 2; i++)
        {
            await Task.Delay(100, _timeout.Token);
            if (File.Exists(capture))
            {
                ProcessResult tshark = await ExternalProcess.RunAsync("tshark", ["-r", capture, "-T", "fields", "-e", "frame.interface_name"], TimeSpan.FromSeconds(60));
                Assert.True(tshark.ExitCode == 0, tshark.Output + await JournalAsync());
                interfaces = tshark.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            }
        }

        Assert.Equal(["primary_in", "secondary_in"], interfaces.Order(StringComparer.Ordinal)); // in arrival order, either first
        ExecResult scrape = await _container.ExecAsync(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9187 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"], _timeout.Token);
        Assert.Contains("colo_compare_captures_total{nic=\"comp0\"} 1", scrape.Stdout, StringComparison.Ordinal);
        ExecResult query = await _container.ExecAsync(["/opt/colo-compare/colo-compare", "status", "/run/colo-compare/vm1/control.sock"], _timeout.Token);
        Assert.True(query.ExitCode == 0, query.Stderr);
        Assert.Contains("\"primary\": 1", query.Stdout, StringComparison.Ordinal);

        // systemctl stop: SIGTERM, STOPPING=1, the held frame released to outdev, a clean exit.
        ExecResult stop = await _container.ExecAsync(["systemctl", "stop", "colo-compare@vm1"], _timeout.Token);
        Assert.Equal(0, stop.ExitCode);
        Assert.Equal(Convert.ToHexString(held), await ReadAsync(outdev));
        unit = await ShowAsync("ActiveState", "Result", "ExecMainStatus");
        Assert.Equal(("inactive", "success", "0"), (unit["ActiveState"], unit["Result"], unit["ExecMainStatus"]));
        string journal = await JournalAsync();
        Assert.Contains("control socket at /run/colo-compare/vm1/control.sock", journal, StringComparison.Ordinal);
        Assert.Contains("stopping: 1 queued primary frames released", journal, StringComparison.Ordinal);
    }

    [GeneratedRegex("(?m)^\\S+ \\S+ \\S+ \\S+ / ro[, ]")]
    private static partial Regex RootMountReadOnly();

    private static byte[] Udp(string payload, byte mac, ushort port) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1").Udp(port, 40000, System.Text.Encoding.ASCII.GetBytes(payload)).Build();

    private static async Task SendAsync(ChardevConnection connection, params byte[][] frames)
    {
        foreach (byte[] frame in frames)
        {
            connection.Writer.Write(frame, 0);
        }

        Assert.True(await connection.Writer.FlushAsync());
    }

    private async Task<string> ReadAsync(ChardevConnection outdev)
    {
        using ChardevFrame frame = (await outdev.Reader.ReadFrameAsync(_timeout.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(20), _timeout.Token)) ?? throw new EndOfStreamException("outdev closed");
        return Convert.ToHexString(frame.Payload);
    }

    /// <summary>The unit and an env file in a copy of this machine's /etc, the host's own enablements left out.</summary>
    private async Task InstallAsync()
    {
        string etc = Path.Combine(_work, "etc");
        Directory.CreateDirectory(etc);
        ProcessResult copy = await ExternalProcess.RunAsync("cp", ["-a", "/etc/.", etc], TimeSpan.FromSeconds(60));
        Assert.True(copy.ExitCode == 0, copy.Output);
        foreach (string wants in Directory.GetDirectories(Path.Combine(etc, "systemd", "system"), "*.wants"))
        {
            Directory.Delete(wants, recursive: true); // docker, postgresql, timers...: not ours to start
        }

        string template = await File.ReadAllTextAsync(Path.Combine(RepositoryPaths.Root, "packaging", "systemd", "colo-compare@.service"));
        await File.WriteAllTextAsync(Path.Combine(etc, "systemd", "system", "colo-compare@.service"), template.Replace("/usr/local/lib/colo-compare/colo-compare", "/opt/colo-compare/colo-compare", StringComparison.Ordinal));
        Directory.CreateDirectory(Path.Combine(etc, "colo-compare"));
        await File.WriteAllTextAsync(Path.Combine(etc, "colo-compare", "vm1.env"),
            "COLO_COMPARE_ARGS=-chardev socket,id=compare0-0,path=/run/qemu/vm1/primary-in.sock"
            + " -chardev socket,id=compare1,path=/run/qemu/vm1/secondary-in.sock,server=on,wait=off"
            + " -chardev socket,id=compare_out0,path=/run/qemu/vm1/outdev.sock"
            + " -object colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,compare_timeout=60000"
            + " --capture /var/log/colo-compare/vm1 --metrics 127.0.0.1:9187 --summary-interval 1\n");
        Directory.CreateDirectory(Sockets);
        Directory.CreateDirectory(Logs);
    }

    private async Task<IContainer> StartSystemdAsync()
    {
        ContainerColoPair.ConfigureTestcontainers();
        await ImportImageAsync();
        IContainer container = new ContainerBuilder(new DockerImage(Image))
            .WithImagePullPolicy(PullPolicy.Never)
            .WithName("colochardev-systemd-" + Path.GetFileName(_work))
            .WithLabel("org.testcontainers", "true")
            .WithLabel("colochardev", "systemd")
            .WithEntrypoint("/lib/systemd/systemd")
            .WithCommand("--unit=basic.target")
            .WithEnvironment("container", "docker")
            .WithBindMount("/usr", "/usr", AccessMode.ReadOnly)
            .WithBindMount(Path.Combine(_work, "etc"), "/etc", AccessMode.ReadWrite)
            .WithBindMount(AppContext.BaseDirectory, "/opt/colo-compare", AccessMode.ReadOnly)
            .WithBindMount(Sockets, "/run/qemu/vm1", AccessMode.ReadWrite)
            .WithBindMount(Logs, "/var/log/colo-compare", AccessMode.ReadWrite)
            .WithBindMount("/sys/fs/cgroup", "/sys/fs/cgroup", AccessMode.ReadOnly)
            .WithTmpfsMount("/run")
            .WithTmpfsMount("/run/lock")
            .WithTmpfsMount("/tmp")
            .WithCreateParameterModifier(parameters =>
            {
                parameters.HostConfig ??= new HostConfig();
                parameters.HostConfig.NetworkMode = "none";
                // What systemd needs to run as PID 1 here (mounts, namespaces for the unit's sandbox); no --privileged.
                parameters.HostConfig.CapAdd = ["SYS_ADMIN"];
                parameters.HostConfig.SecurityOpt = ["seccomp=unconfined", "apparmor=unconfined"];
            })
            .Build();
        await container.StartAsync(_timeout.Token);
        string state = string.Empty;
        for (int i = 0; i < 100 && state is not ("running" or "degraded"); i++)
        {
            await Task.Delay(200, _timeout.Token);
            state = (await container.ExecAsync(["systemctl", "is-system-running"], _timeout.Token)).Stdout.Trim();
        }

        Assert.True(state is "running" or "degraded", $"systemd in the container: {state}");
        return container;
    }

    /// <summary>An image with nothing but the top-level directories and the merged-/usr links; /usr comes from the host.</summary>
    private async Task ImportImageAsync()
    {
        if ((await ExternalProcess.RunAsync("docker", ["image", "inspect", Image], TimeSpan.FromSeconds(30))).ExitCode == 0)
        {
            return;
        }

        string root = Path.Combine(_work, "rootfs");
        foreach (string directory in new[] { "usr", "etc", "opt", "proc", "sys", "dev", "run", "tmp", "var/lib", "var/log", "var/tmp", "root" })
        {
            Directory.CreateDirectory(Path.Combine(root, directory));
        }

        foreach ((string link, string target) in new[] { ("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64") })
        {
            File.CreateSymbolicLink(Path.Combine(root, link), target);
        }

        ProcessResult imported = await ExternalProcess.RunAsync("bash", ["-c", $"tar -C '{root}' -c . | docker import -m 'colochardev: systemd from the host /usr' - {Image}"], TimeSpan.FromSeconds(120));
        Assert.True(imported.ExitCode == 0, imported.Output);
    }

    private async Task<Dictionary<string, string>> ShowAsync(params string[] properties)
    {
        ExecResult show = await _container!.ExecAsync(["systemctl", "show", "colo-compare@vm1", "-p", string.Join(',', properties)], _timeout.Token);
        return show.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
    }

    private async Task<string> ReadInContainerAsync(string path)
    {
        ExecResult read = await _container!.ExecAsync(["cat", path], _timeout.Token);
        Assert.True(read.ExitCode == 0, read.Stderr);
        return read.Stdout;
    }

    private async Task<string> JournalAsync() =>
        (await _container!.ExecAsync(["journalctl", "-u", "colo-compare@vm1", "--no-pager", "-o", "cat"], _timeout.Token)).Stdout;
}
