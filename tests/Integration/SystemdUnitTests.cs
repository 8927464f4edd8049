using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>
/// packaging/systemd: the unit template passes systemd's own check with the daemon we build as its ExecStart, and the
/// example environment file's arguments start a real daemon (its addresses moved to loopback and a temporary folder).
/// </summary>
public sealed class SystemdUnitTests : IDisposable
{
    private readonly string _directory = FreePort.TempSocketDirectory();

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static string Packaging(string name) => Path.Combine(RepositoryPaths.Root, "packaging", "systemd", name);

    [Fact]
    public async Task The_unit_template_verifies_cleanly_with_the_built_daemon_as_its_program()
    {
        string apphost = Path.Combine(AppContext.BaseDirectory, "colo-compare");
        Assert.True(File.Exists(apphost), apphost);
        string unit = await File.ReadAllTextAsync(Packaging("colo-compare@.service"));
        foreach (string line in new[] { "Type=notify", "ExecStart=/usr/local/lib/colo-compare/colo-compare $COLO_COMPARE_ARGS --control /run/colo-compare/%i/control.sock", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallFilter=@system-service" })
        {
            Assert.Contains("\n" + line + "\n", unit, StringComparison.Ordinal);
        }

        Assert.DoesNotContain("\nMemoryDenyWriteExecute=yes", unit, StringComparison.Ordinal); // .NET's JIT needs W+X pages

        // systemd-analyze checks an instance: the template copied under an instance name, our build as the program.
        string instance = Path.Combine(_directory, "colo-compare@vm1.service");
        await File.WriteAllTextAsync(instance, unit.Replace("/usr/local/lib/colo-compare/colo-compare", apphost, StringComparison.Ordinal));
        ProcessResult verify = await ExternalProcess.RunAsync("systemd-analyze", ["verify", "--man=no", instance], TimeSpan.FromSeconds(60));
        Assert.True(verify.ExitCode == 0 && verify.StandardError.Trim().Length == 0, $"systemd-analyze verify ({verify.ExitCode}):\n{verify.Output}");

        // And it does catch mistakes: an unknown key is reported.
        await File.WriteAllTextAsync(instance, unit.Replace("/usr/local/lib/colo-compare/colo-compare", apphost, StringComparison.Ordinal).Replace("NoNewPrivileges=", "NoNewPrivilegez=", StringComparison.Ordinal));
        ProcessResult broken = await ExternalProcess.RunAsync("systemd-analyze", ["verify", "--man=no", instance], TimeSpan.FromSeconds(60));
        Assert.Contains("Unknown key 'NoNewPrivilegez'", broken.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_example_arguments_start_a_daemon()
    {
        string line = File.ReadLines(Packaging("colo-compare.env.example")).Single(l => l.StartsWith("COLO_COMPARE_ARGS=", StringComparison.Ordinal));
        int secondary = FreePort.Next();
        int metrics = FreePort.Next();
        int secondaryQmp = FreePort.Next();
        string arguments = line["COLO_COMPARE_ARGS=".Length..]
            .Replace("/run/qemu/vm1", _directory, StringComparison.Ordinal)
            .Replace("host=0.0.0.0,port=9004", $"host=127.0.0.1,port={secondary}", StringComparison.Ordinal)
            .Replace("tcp:192.0.2.2:4445", $"tcp:127.0.0.1:{secondaryQmp}", StringComparison.Ordinal)
            .Replace("127.0.0.1:9187", $"127.0.0.1:{metrics}", StringComparison.Ordinal)
            .Replace("/var/log/colo-compare/vm1", Path.Combine(_directory, "captures"), StringComparison.Ordinal);
        Assert.DoesNotContain("192.0.2.", arguments, StringComparison.Ordinal);
        Assert.DoesNotContain("/var/log", arguments, StringComparison.Ordinal);
        string control = Path.Combine(_directory, "control.sock");
        await using DaemonProcess daemon = DaemonProcess.Start([.. arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries), "--control", control]);
        await daemon.WaitForLineAsync($"chardev 'compare1': listening on 127.0.0.1:{secondary}", TimeSpan.FromSeconds(20));
        await daemon.WaitForLineAsync($"Prometheus scrape endpoint at http://127.0.0.1:{metrics}/metrics", TimeSpan.FromSeconds(20));
        await daemon.WaitForLineAsync($"control socket at {control}", TimeSpan.FromSeconds(20));
        Assert.True(Directory.Exists(Path.Combine(_directory, "captures")), "the capture directory is made at start");
        Assert.Equal(0, await daemon.StopAsync(TimeSpan.FromSeconds(30)));
    }
}
