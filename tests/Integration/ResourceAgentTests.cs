using ColoChardev.Testbed;
using Xunit.Abstractions;

namespace ColoChardev.Integration;

/// <summary>
/// The resource agent (packaging/pacemaker/colo and <c>colo-compare ocf</c>) checked by the cluster stack's own
/// tools: resource-agents' <c>ocf-tester</c> (every action, with real QEMU), Pacemaker's <c>crm_resource</c>
/// (meta-data, validate-all) and crmsh's <c>crm ra info</c>. Each runs in a network namespace and a mount namespace
/// of its own, where the agent is installed as <c>ocf:colochardev:colo</c> and the daemon at
/// <c>/usr/local/lib/colo-compare</c>: nothing on the host is changed.
/// </summary>
[Trait("Qemu", "real")]
[Collection(ColoPairSerial.Name)]
public sealed class ResourceAgentTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("colo-ra-").FullName;
    private readonly string _namespace = "colora" + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray().AsSpan(0, 2));

    [Fact]
    public async Task Ocf_tester_passes_every_action_with_real_qemu()
    {
        string qemu = await QemuForColoAsync();
        // The tiny guest (built once, from Debian packages; a no-op when it is up to date).
        ProcessResult built = await ExternalProcess.RunAsync("bash", [RepositoryPaths.Script("qemu", "build-guest.sh")], TimeSpan.FromMinutes(10));
        Assert.True(built.ExitCode == 0, built.Output);
        string guest = Path.Combine(RepositoryPaths.Root, ".cache", "guest");
        string mem = QemuBinary.AtLeast(9, 0) ? "128M" : "131064K";
        (int code, string text) = await InstalledAsync(
            "ocf-tester", "-v", "-n", "vmt",
            "-o", "vm_name=vmt",
            "-o", $"node_addresses={Environment.MachineName}=127.0.0.1 peer=127.0.0.2",
            "-o", $"qemu_binary={qemu}",
            "-o", $"qemu_options=-accel tcg -M pc -m {mem} -nodefaults -kernel {guest}/vmlinuz -initrd {guest}/initramfs.img -append console=ttyS0",
            "-o", $"state_dir={_root}/state",
            Path.Combine(_root, "ocf", "colochardev", "colo"));
        output.WriteLine(text);
        Assert.True(code == 0, text);
        Assert.Contains("passed all tests", text, StringComparison.Ordinal);
        // It went through every role: a secondary started, promoted (booted as primary), demoted, stopped.
        Assert.Contains("secondary of peer waiting on tcp:127.0.0.1:9000", text, StringComparison.Ordinal);
        Assert.Contains("booting it here", text, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_root, "state", "qemu.pid")), "a QEMU is left after ocf-tester's last stop");
    }

    [Fact]
    public async Task Pacemaker_reads_the_meta_data_and_validate_all_names_the_bad_parameter()
    {
        string qemu = await QemuForColoAsync();
        string[] agent = ["--class", "ocf", "--provider", "colochardev", "--agent", "colo"];
        string[] good = [.. agent, "--option", "vm_name=vm1", "--option", "node_addresses=n1=192.168.77.1 n2=192.168.77.2", "--option", "qemu_options=-m 128M", "--option", $"qemu_binary={qemu}"];

        (int code, string text) = await InstalledAsync("crm_resource", "--show-metadata", "ocf:colochardev:colo");
        Assert.True(code == 0, text);
        Assert.Contains("<resource-agent name=\"colo\"", text, StringComparison.Ordinal);
        (code, text) = await InstalledAsync("sh", "-c", "crm_resource --show-metadata ocf:colochardev:colo | xmllint --noout --relaxng /usr/share/resource-agents/metadata.rng -");
        Assert.True(code == 0, "meta-data does not match resource-agents' metadata.rng: " + text);
        (code, text) = await InstalledAsync("crm", "ra", "info", "ocf:colochardev:colo");
        Assert.True(code == 0, text);
        Assert.Contains("node_addresses* (string)", text, StringComparison.Ordinal);
        Assert.Matches(@"monitor\s+depth=0 timeout=20s interval=2s role=Promoted", text);

        (code, text) = await InstalledAsync(["crm_resource", "--validate", .. good]);
        Assert.True(code == 0, text);
        (code, text) = await InstalledAsync(["crm_resource", "--validate", .. good, "--option", "base_port=65534"]);
        Assert.Contains("returned 6 (not configured)", text, StringComparison.Ordinal);
        Assert.Contains("parameter base_port '65534' must be a whole number from 1 to 65531", text, StringComparison.Ordinal);
        (code, text) = await InstalledAsync(["crm_resource", "--validate", .. good, "--option", "daemon_options=--metrics nope"]);
        Assert.Contains("the daemon refuses its command line: '--metrics=nope'", text, StringComparison.Ordinal);
        (code, text) = await InstalledAsync(["crm_resource", "--validate", .. good, "--option", "daemon_options=--control /x"]);
        Assert.Contains("daemon_options may not set --control", text, StringComparison.Ordinal);
        (code, text) = await InstalledAsync(["crm_resource", "--validate", .. good, "--option", "qemu_binary=/nonexistent/qemu"]);
        Assert.Contains("returned 5 (not installed)", text, StringComparison.Ordinal);
        Assert.Contains("qemu_binary '/nonexistent/qemu' cannot be run", text, StringComparison.Ordinal);
        (code, text) = await InstalledAsync(["crm_resource", "--validate", .. good, "--option", "disk=/nonexistent/vm1.raw"]);
        Assert.Contains("returned 5 (not installed)", text, StringComparison.Ordinal);
        Assert.Contains("disk '/nonexistent/vm1.raw' does not exist on this node", text, StringComparison.Ordinal);
        string image = Path.Combine(_root, "vm1.raw");
        await File.WriteAllBytesAsync(image, new byte[1 << 20]);
        (code, text) = await InstalledAsync(["crm_resource", "--validate", .. good, "--option", $"disk={image}"]);
        Assert.True(code == 0, text);
        (code, text) = await InstalledAsync(["crm_resource", "--validate", .. good, "--option", $"disk={image}", "--option", "qemu_img=/nonexistent/qemu-img"]);
        Assert.Contains("qemu_img '/nonexistent/qemu-img' is not an executable file", text, StringComparison.Ordinal);
        output.WriteLine(text);
    }

    public void Dispose()
    {
        ExternalProcess.RunAsync("ip", ["netns", "del", _namespace], TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
        Directory.Delete(_root, recursive: true);
    }

    /// <summary>The QEMU that COLO runs under TCG here (qemu.sh colo-tcg: the patched copy where one is needed).</summary>
    private static async Task<string> QemuForColoAsync()
    {
        ProcessResult result = await ExternalProcess.RunAsync("bash", [RepositoryPaths.Script("qemu", "qemu.sh"), "colo-tcg"], TimeSpan.FromMinutes(2));
        Assert.True(result.ExitCode == 0, result.Output);
        return result.StandardOutput.Trim();
    }

    /// <summary>
    /// Runs a command where the agent is installed: a copy of the daemon (readable by <c>nobody</c>, as ocf-tester
    /// runs meta-data) bound at /usr/local/lib/colo-compare, the host's OCF agents plus ours bound over
    /// /usr/lib/ocf/resource.d, in a fresh network namespace (QEMU's ports and taps stay in it).
    /// </summary>
    private async Task<(int Code, string Output)> InstalledAsync(params string[] command)
    {
        string daemon = Path.Combine(_root, "colo-compare");
        if (!Directory.Exists(daemon))
        {
            await ExternalProcess.RunCheckedAsync("cp", ["-a", AppContext.BaseDirectory, daemon], TimeSpan.FromMinutes(1));
            await ExternalProcess.RunCheckedAsync("cp", ["-a", "/usr/lib/ocf/resource.d", Path.Combine(_root, "ocf")], TimeSpan.FromMinutes(1));
            await ExternalProcess.RunCheckedAsync("install", ["-D", "-m", "0755", Path.Combine(RepositoryPaths.Root, "packaging", "pacemaker", "colo"), Path.Combine(_root, "ocf", "colochardev", "colo")], TimeSpan.FromMinutes(1));
            await ExternalProcess.RunCheckedAsync("chmod", ["-R", "a+rX", _root], TimeSpan.FromMinutes(1));
            await ExternalProcess.RunCheckedAsync("ip", ["netns", "add", _namespace], TimeSpan.FromSeconds(10));
            await ExternalProcess.RunCheckedAsync("ip", ["-n", _namespace, "link", "set", "lo", "up"], TimeSpan.FromSeconds(10));
        }

        string script = $"""
            mount -t tmpfs -o mode=755 tmpfs /usr/local/lib
            mkdir -p /usr/local/lib/colo-compare && mount --bind '{daemon}' /usr/local/lib/colo-compare
            mount --bind '{_root}/ocf' /usr/lib/ocf/resource.d
            exec "$@"
            """;
        ProcessResult result = await ExternalProcess.RunAsync(
            "ip", ["netns", "exec", _namespace, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", .. command], TimeSpan.FromMinutes(3));
        return (result.ExitCode, result.Output);
    }
}
