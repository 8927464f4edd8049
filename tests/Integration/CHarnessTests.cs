using System.Globalization;
using System.Text.RegularExpressions;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>
/// The second benchmark harness (bench/c-harness, C, no code shared with the socket benchmark) in a small run against
/// real QEMU colo-compare, the real daemon and its C relay: every frame arrives once and intact (colo-blast exits 1
/// otherwise), in flow order from the daemon and the relay (-O; QEMU's UDP comparison reorders, spec 2.5, and is only
/// counted), and it reports figures. No speed is asserted.
/// </summary>
[Trait("Qemu", "real")]
[Collection("ColoPairSerial")] // alone on the machine: it loads both cores
public sealed partial class CHarnessTests : IDisposable
{
    private readonly string _build = FreePort.TempSocketDirectory();

    public void Dispose() => Directory.Delete(_build, recursive: true);

    [Theory]
    [InlineData("-b", "1454", "-k", "4")]
    [InlineData("-b", "64", "-k", "64", "-u")]
    [InlineData("-b", "1454", "-k", "1", "-v")]
    public async Task Colo_blast_carries_every_frame_through_the_daemon_qemu_and_the_relay(params string[] shape)
    {
        string blast = await CompileAsync("colo-blast");
        string relay = await CompileAsync("colo-relay", "-pthread");
        bool vnet = shape.Contains("-v");

        await using (var daemon = StartDaemon(vnet, out int[] ports))
        {
            // The sender has no window: on identical traffic a checkpoint may still be asked for when one input runs
            // max_queue_size (1,024 here) frames ahead of the other; the frames all come out, in order, either way.
            Figures f = await BlastAsync(blast, ports, daemon.ProcessId, 60_000, [.. shape, "-O"]);
            Assert.True(f.CpuMicrosecondsPerFrame > 0, f.Line);
        }

        await using (StandaloneColoCompare qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { NotifyDev = true, VnetHdrSupport = vnet }))
        {
            await BlastAsync(blast, [qemu.PrimaryPort, qemu.SecondaryPort, qemu.OutdevPort, qemu.NotifyPort], qemu.ProcessId, 20_000, shape);
        }

        int[] relayPorts = [FreePort.Next(), FreePort.Next(), FreePort.Next()];
        using var relayProcess = System.Diagnostics.Process.Start(relay, relayPorts.Select(p => p.ToString(CultureInfo.InvariantCulture)));
        try
        {
            await BlastAsync(blast, [.. relayPorts, 0], relayProcess.Id, 60_000, [.. shape, "-O"]);
        }
        finally
        {
            if (!relayProcess.HasExited)
            {
                relayProcess.Kill();
            }
        }
    }

    [Fact]
    public async Task Colo_blast_fails_when_frames_do_not_come_out()
    {
        // The harness must be able to fail: its outdev is a listener that accepts and never sends.
        string blast = await CompileAsync("colo-blast");
        await using var daemon = StartDaemon(vnet: false, out int[] ports);
        using var silent = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        silent.Start();
        int silentPort = ((System.Net.IPEndPoint)silent.LocalEndpoint).Port;
        ProcessResult run = await RunBlastAsync(blast, [ports[0], ports[1], silentPort, ports[3]], daemon.ProcessId, 1_000, ["-b", "1454"]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("error=nothing from outdev", run.StandardOutput, StringComparison.Ordinal);
    }

    private static DaemonProcess StartDaemon(bool vnet, out int[] ports)
    {
        ports = [FreePort.Next(), FreePort.Next(), FreePort.Next(), FreePort.Next()];
        string Server(string id, int port) => $"socket,id={id},host=127.0.0.1,port={port.ToString(CultureInfo.InvariantCulture)},server=on,wait=off";
        return DaemonProcess.Start(
        [
            "-chardev", Server("pri", ports[0]), "-chardev", Server("sec", ports[1]), "-chardev", Server("out", ports[2]), "-chardev", Server("ntf", ports[3]),
            "-object", "iothread,id=it",
            "-object", $"colo-compare,id=cc0,primary_in=pri,secondary_in=sec,outdev=out,iothread=it,notify_dev=ntf{(vnet ? ",vnet_hdr_support=on" : string.Empty)}",
        ]);
    }

    private async Task<string> CompileAsync(string name, params string[] flags)
    {
        string output = Path.Combine(_build, name);
        string source = Path.Combine(RepositoryPaths.Root, "bench", "c-harness", name + ".c");
        ProcessResult compiled = await ExternalProcess.RunAsync("gcc", ["-O2", "-Wall", "-Wextra", "-Werror", .. flags, "-o", output, source], TimeSpan.FromMinutes(1));
        Assert.True(compiled.ExitCode == 0, compiled.Output);
        return output;
    }

    private static async Task<Figures> BlastAsync(string blast, int[] ports, int pid, long frames, string[] shape)
    {
        ProcessResult run = await RunBlastAsync(blast, ports, pid, frames, shape);
        Assert.True(run.ExitCode == 0, $"colo-blast {string.Join(' ', shape)} failed: {run.Output}");
        Match m = FiguresLine().Match(run.StandardOutput);
        Assert.True(m.Success, run.Output);
        Assert.Equal(frames, long.Parse(m.Groups["frames"].Value, CultureInfo.InvariantCulture));
        Assert.True(double.Parse(m.Groups["pps"].Value, CultureInfo.InvariantCulture) > 0, run.StandardOutput);
        Assert.True(long.Parse(m.Groups["rss"].Value, CultureInfo.InvariantCulture) > 0, run.StandardOutput);
        return new Figures(run.StandardOutput.Trim(), double.Parse(m.Groups["cpu"].Value, CultureInfo.InvariantCulture), long.Parse(m.Groups["requests"].Value, CultureInfo.InvariantCulture), long.Parse(m.Groups["reordered"].Value, CultureInfo.InvariantCulture));
    }

    private static Task<ProcessResult> RunBlastAsync(string blast, int[] ports, int pid, long frames, string[] shape)
    {
        var arguments = new List<string> { "-p", Text(ports[0]), "-s", Text(ports[1]), "-o", Text(ports[2]), "-f", Text(frames), "-P", Text(pid) };
        if (ports[3] != 0)
        {
            arguments.AddRange(["-n", Text(ports[3])]);
        }

        arguments.AddRange(shape);
        return ExternalProcess.RunAsync(blast, arguments, TimeSpan.FromMinutes(2));
    }

    private static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);

    [GeneratedRegex(@"rss_kb=(?<rss>\d+) frames=(?<frames>\d+) .* pps=(?<pps>[\d.]+) .* cpu_us_per_frame=(?<cpu>-?[\d.]+) checkpoint_requests=(?<requests>\d+) reordered=(?<reordered>\d+)")]
    private static partial Regex FiguresLine();

    private sealed record Figures(string Line, double CpuMicrosecondsPerFrame, long CheckpointRequests, long Reordered);
}
