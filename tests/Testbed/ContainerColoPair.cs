using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using ColoChardev.Qmp;
using ColoChardev.Qmp.Colo;
using Docker.DotNet.Models;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Configurations;
using DotNet.Testcontainers.Containers;
using DotNet.Testcontainers.Images;

namespace ColoChardev.Testbed;

/// <summary>
/// A COLO pair whose two QEMUs run in containers started through Testcontainers, from the local image
/// <c>scripts/qemu/build-qemu-image.sh</c> builds (no registry). The containers have <c>--network none</c>: each QEMU
/// creates its tap in its container's namespace; the primary's namespace becomes the pair's (bridge and client
/// address are added to it) and the secondary's tap is moved into it. The QEMU command lines and the daemon's come
/// from <c>colo-pair.sh qemu-args</c>, so the topology is the process pair's; the daemon runs on the host.
/// </summary>
public sealed class ContainerColoPair : IColoPair
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(3);
    private readonly Action<string> _log;
    private readonly string _directory;
    private readonly string _guestDirectory;
    private readonly List<IContainer> _containers = [];
    private DaemonProcess? _daemon;
    private bool _namespaceCreated;

    private ContainerColoPair(string name, string directory, string guestDirectory, Action<string> log)
    {
        Name = name;
        _directory = directory;
        _guestDirectory = guestDirectory;
        _log = log;
        ClientNamespace = new NetworkNamespace("colo-" + name);
    }

    public string Name { get; }

    public NetworkNamespace ClientNamespace { get; }

    public IPAddress GuestAddress { get; } = IPAddress.Parse("10.0.0.2");

    public byte[] Payload => File.ReadAllBytes(Path.Combine(_guestDirectory, "payload.bin"));

    private string PrimaryQmp => Path.Combine(_directory, "primary-qmp.sock");

    private string SecondaryQmp => Path.Combine(_directory, "secondary-qmp.sock");

    /// <summary>Testcontainers against the engine scripts/start-docker.sh runs (API 1.41, no Ryuk: we remove what we start).</summary>
    public static void ConfigureTestcontainers()
    {
        Environment.SetEnvironmentVariable("DOCKER_API_VERSION", Environment.GetEnvironmentVariable("DOCKER_API_VERSION") ?? "1.41");
        Environment.SetEnvironmentVariable("TESTCONTAINERS_RYUK_DISABLED", "true");
    }

    public static async Task<ContainerColoPair> StartAsync(Action<string>? log = null)
    {
        log ??= _ => { };
        ConfigureTestcontainers();
        string name = "c" + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray().AsSpan(0, 4));
        string directory = Path.Combine(Path.GetTempPath(), "colo-cpair-" + name);
        System.IO.Directory.CreateDirectory(directory);
        var env = new Dictionary<string, string>
        {
            ["COLO_PAIR_DIR"] = directory,
            ["COLO_COMPARE_DLL"] = DaemonProcess.AssemblyPath,
            ["COLO_SUMMARY_INTERVAL"] = "1",
        };
        string image = (await RunCheckedAsync("bash", [RepositoryPaths.Script("qemu", "build-qemu-image.sh")], env).ConfigureAwait(false)).Trim().Split('\n')[^1];
        string[] primaryArgs = await QemuArgsAsync("primary", name, env).ConfigureAwait(false);
        string[] secondaryArgs = await QemuArgsAsync("secondary", name, env).ConfigureAwait(false);
        string[] daemonArgs = await QemuArgsAsync("daemon", name, env).ConfigureAwait(false);
        string kernel = primaryArgs[Array.IndexOf(primaryArgs, "-kernel") + 1];
        string accel = Environment.GetEnvironmentVariable("ACCEL") ?? "tcg";
        // Under TCG the image's patched copy (workaround 1 in colo-pair.sh); the stock binary elsewhere.
        string binary = accel == "tcg" ? "/usr/bin/qemu-system-x86_64-colo-tcg" : "/usr/bin/qemu-system-x86_64";

        var pair = new ContainerColoPair(name, directory, Path.GetDirectoryName(kernel)!, log);
        try
        {
            await pair.StartCoreAsync(image, binary, primaryArgs, secondaryArgs, daemonArgs).ConfigureAwait(false);
            return pair;
        }
        catch (Exception e)
        {
            string diagnostics = pair.Diagnostics();
            await pair.DisposeAsync().ConfigureAwait(false);
            throw new InvalidOperationException($"the container pair did not start: {e.Message}\n{diagnostics}", e);
        }
    }

    public async Task<QmpClient> ConnectQmpAsync(ColoVm vm, CancellationToken cancellationToken) =>
        await QmpConnect.WhenReadyAsync(vm == ColoVm.Primary ? PrimaryQmp : SecondaryQmp, cancellationToken).ConfigureAwait(false);

    public Task<int> PingAsync(int count) => ClientNamespace.PingAsync(Path.Combine(_guestDirectory, "busybox"), GuestAddress, count, _log);

    public string DaemonLog() => _daemon?.Output ?? string.Empty;

    public Task<DaemonSummary> NextSummaryAsync(TimeSpan timeout) => DaemonSummary.NextAsync(DaemonLog, timeout, Diagnostics);

    public string Diagnostics()
    {
        var text = new StringBuilder();
        foreach (string file in System.IO.Directory.Exists(_directory) ? System.IO.Directory.GetFiles(_directory, "*.serial") : [])
        {
            text.Append("--- ").AppendLine(file).AppendLine(string.Join('\n', File.ReadAllLines(file).TakeLast(20)));
        }

        foreach (IContainer container in _containers)
        {
            try
            {
                (string stdout, string stderr) = container.GetLogsAsync().GetAwaiter().GetResult();
                text.Append("--- container ").Append(container.Name).AppendLine(" output").AppendLine(stdout).AppendLine(stderr);
            }
            catch (Exception e) when (e is InvalidOperationException or HttpRequestException or Docker.DotNet.DockerApiException)
            {
                text.Append("--- container ").Append(container.Name).Append(": ").AppendLine(e.Message);
            }
        }

        text.AppendLine("--- daemon").AppendLine(string.Join('\n', DaemonLog().Split('\n').TakeLast(40)));
        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        if (_daemon is not null)
        {
            await _daemon.DisposeAsync().ConfigureAwait(false);
            _daemon = null;
        }

        foreach (IContainer container in _containers)
        {
            await container.DisposeAsync().ConfigureAwait(false);
        }

        _containers.Clear();
        if (_namespaceCreated)
        {
            await RunCheckedAsync("ip", ["netns", "del", ClientNamespace.Name]).ConfigureAwait(false);
            _namespaceCreated = false;
        }

        if (System.IO.Directory.Exists(_directory))
        {
            System.IO.Directory.Delete(_directory, recursive: true);
        }
    }

    private async Task StartCoreAsync(string image, string binary, string[] primaryArgs, string[] secondaryArgs, string[] daemonArgs)
    {
        using var cts = new CancellationTokenSource(Timeout);
        CancellationToken token = cts.Token;

        // Primary: the guest boots (ready marker on the serial file), then its namespace becomes the pair's.
        IContainer primary = Container(image, binary, primaryArgs, "primary", new FileContains(Path.Combine(_directory, "primary.serial"), "COLO-GUEST-READY"));
        _containers.Add(primary);
        await primary.StartAsync(token).ConfigureAwait(false);
        int primaryPid = await ContainerPidAsync(primary).ConfigureAwait(false);
        await Ip("netns", "attach", ClientNamespace.Name, primaryPid.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false);
        _namespaceCreated = true;
        await Ip("-n", ClientNamespace.Name, "link", "add", "br0", "type", "bridge").ConfigureAwait(false);
        await Ip("-n", ClientNamespace.Name, "addr", "add", "10.0.0.1/24", "dev", "br0").ConfigureAwait(false);
        await Ip("-n", ClientNamespace.Name, "link", "set", "br0", "up").ConfigureAwait(false);
        await Ip("-n", ClientNamespace.Name, "link", "set", "tap-pri", "master", "br0").ConfigureAwait(false);
        await Ip("-n", ClientNamespace.Name, "link", "set", "tap-pri", "up").ConfigureAwait(false);
        _log($"primary container {primary.Name} (PID {primaryPid}) ready; namespace {ClientNamespace.Name}");

        await using QmpClient primaryQmp = await QmpConnect.WhenReadyAsync(PrimaryQmp, token).ConfigureAwait(false);
        _daemon = DaemonProcess.Start(daemonArgs);
        await WaitConnectedAsync(primaryQmp, ["compare0", "compare_out"], token).ConfigureAwait(false);

        // Secondary: its tap moves from its container's namespace to the pair's, off the bridge.
        IContainer secondary = Container(image, binary, secondaryArgs, "secondary", new FileExists(SecondaryQmp));
        _containers.Add(secondary);
        await secondary.StartAsync(token).ConfigureAwait(false);
        int secondaryPid = await ContainerPidAsync(secondary).ConfigureAwait(false);
        string secondaryNs = ClientNamespace.Name + "-s";
        await Ip("netns", "attach", secondaryNs, secondaryPid.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false);
        try
        {
            await Ip("-n", secondaryNs, "link", "set", "tap-sec", "netns", ClientNamespace.Name).ConfigureAwait(false);
        }
        finally
        {
            await Ip("netns", "del", secondaryNs).ConfigureAwait(false);
        }

        await Ip("-n", ClientNamespace.Name, "link", "set", "tap-sec", "up").ConfigureAwait(false);
        await using QmpClient secondaryQmp = await QmpConnect.WhenReadyAsync(SecondaryQmp, token).ConfigureAwait(false);
        await WaitConnectedAsync(secondaryQmp, ["red0", "red1"], token).ConfigureAwait(false);

        // COLO, as colo-pair.sh starts it: x-colo on both sides (QEMU 10.0 requires it on the secondary), with
        // return-path from 11.x (which requires it with x-colo).
        string[] capabilities = primaryQmp.Greeting.Version.IsAtLeast(11, 0) ? ["return-path", "x-colo", "events"] : ["x-colo", "events"];
        foreach (QmpClient side in new[] { secondaryQmp, primaryQmp })
        {
            await side.ExecuteAsync("migrate-set-capabilities", new JsonObject
            {
                ["capabilities"] = new JsonArray([.. capabilities.Select(c => (JsonNode)new JsonObject { ["capability"] = c, ["state"] = true })]),
            }, token).ConfigureAwait(false);
        }

        await primaryQmp.SetCheckpointDelayAsync(20_000, token).ConfigureAwait(false);
        await primaryQmp.MigrateAsync("unix:" + Path.Combine(_directory, "migrate.sock"), token).ConfigureAwait(false);
        while ((await primaryQmp.QueryColoStatusAsync(token).ConfigureAwait(false)).Mode != "primary"
            || (await secondaryQmp.QueryColoStatusAsync(token).ConfigureAwait(false)).Mode != "secondary")
        {
            await Task.Delay(200, token).ConfigureAwait(false);
        }

        _log($"COLO running in containers {primary.Name} and {secondary.Name}");
    }

    private IContainer Container(string image, string binary, string[] arguments, string vm, IWaitUntil ready) =>
        new ContainerBuilder(new DockerImage(image))
            .WithImagePullPolicy(PullPolicy.Never)
            .WithName($"colochardev-{Name}-{vm}")
            .WithLabel("org.testcontainers", "true")
            .WithLabel("colochardev", Name)
            .WithEntrypoint(binary)
            .WithCommand(arguments)
            // Same paths inside and out: the sockets, serial files and guest the command line names.
            .WithBindMount(_directory, _directory, AccessMode.ReadWrite)
            .WithBindMount(_guestDirectory, _guestDirectory, AccessMode.ReadOnly)
            .WithCreateParameterModifier(parameters =>
            {
                parameters.HostConfig ??= new HostConfig();
                parameters.HostConfig.NetworkMode = "none";
                parameters.HostConfig.CapAdd = ["NET_ADMIN"];
                parameters.HostConfig.Devices = [new DeviceMapping { PathOnHost = "/dev/net/tun", PathInContainer = "/dev/net/tun", CgroupPermissions = "rwm" }];
            })
            .WithWaitStrategy(Wait.ForUnixContainer().AddCustomWaitStrategy(ready))
            .Build();

    private static async Task WaitConnectedAsync(QmpClient qmp, string[] labels, CancellationToken cancellationToken)
    {
        while (true)
        {
            ChardevInfo[] chardevs = await qmp.QueryChardevAsync(cancellationToken).ConfigureAwait(false);
            if (labels.All(label => chardevs.Any(c => c.Label == label && !c.Filename.StartsWith("disconnected:", StringComparison.Ordinal))))
            {
                return;
            }

            await Task.Delay(200, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task<int> ContainerPidAsync(IContainer container)
    {
        string pid = await RunCheckedAsync("docker", ["inspect", "-f", "{{.State.Pid}}", container.Id]).ConfigureAwait(false);
        return int.Parse(pid.Trim(), CultureInfo.InvariantCulture);
    }

    private static Task Ip(params string[] arguments) => RunCheckedAsync("ip", arguments);

    private static async Task<string[]> QemuArgsAsync(string vm, string name, Dictionary<string, string> env)
    {
        var withVm = new Dictionary<string, string>(env) { ["COLO_VM"] = vm };
        string output = await RunCheckedAsync("bash", [RepositoryPaths.Script("qemu", "colo-pair.sh"), "qemu-args", "--name", name], withVm).ConfigureAwait(false);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    private static Task<string> RunCheckedAsync(string file, IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null) =>
        ExternalProcess.RunCheckedAsync(file, arguments, Timeout, environment);

    /// <summary>Ready once a file (a QEMU serial log) contains a marker.</summary>
    private sealed class FileContains(string path, string marker) : IWaitUntil
    {
        public Task<bool> UntilAsync(IContainer container)
        {
            if (container.State == TestcontainersStates.Exited)
            {
                throw new InvalidOperationException($"container {container.Name} exited before {marker} appeared in {path}");
            }

            return Task.FromResult(File.Exists(path) && File.ReadAllText(path).Contains(marker, StringComparison.Ordinal));
        }
    }

    /// <summary>Ready once a file (a QMP socket) exists.</summary>
    private sealed class FileExists(string path) : IWaitUntil
    {
        public Task<bool> UntilAsync(IContainer container)
        {
            if (container.State == TestcontainersStates.Exited)
            {
                throw new InvalidOperationException($"container {container.Name} exited before {path} appeared");
            }

            return Task.FromResult(File.Exists(path));
        }
    }
}
