using System.Text.Json;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>
/// The side-by-side socket benchmark (scripts/bench.sh) in a small run: real QEMU colo-compare, the real daemon and the
/// relay, real loopback sockets. It asserts no speed (these machines are noisy); it asserts that every target carried
/// every frame exactly once and byte for byte (the benchmark fails otherwise), that the daemon asked for exactly one
/// checkpoint per diverging frame, that the one-sided floods left the daemon reading with bounded memory, and that
/// the JSON and chart were written.
/// </summary>
[Trait("Qemu", "real")]
[Collection("ColoPairSerial")] // alone on the machine: it loads both cores
public sealed class SocketBenchmarkTests
{
    private static readonly string[] Workloads = ["tcp1454", "tcp1454x64", "tcp64", "udp64x64", "vnet1454", "mixed"];
    private static readonly string[] Targets = ["QEMU colo-compare", "colo-compare daemon", "relay baseline"];

    [Fact]
    public async Task A_small_run_carries_every_frame_through_all_three_targets_and_writes_its_report()
    {
        string output = FreePort.TempSocketDirectory();
        try
        {
            ProcessResult run = await ExternalProcess.RunAsync(
                "dotnet",
                [Path.Combine(AppContext.BaseDirectory, "socket-bench.dll"), "--runs", "1", "--scale", "0.02", "--warmup-seconds", "1", "--out", output],
                TimeSpan.FromMinutes(8));
            Assert.True(run.ExitCode == 0, $"socket-bench failed ({run.ExitCode}):\n{run.Output}");

            using JsonDocument json = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(output, "socket-benchmark.json")));
            JsonElement root = json.RootElement;
            Assert.StartsWith("QEMU emulator version " + QemuBinary.Version, root.GetProperty("machine").GetProperty("qemu").GetString(), StringComparison.Ordinal);
            JsonElement[] runs = [.. root.GetProperty("runsDone").EnumerateArray()];
            foreach (string workload in Workloads)
            {
                foreach (string target in Targets)
                {
                    JsonElement m = Measurement(runs, workload, target);
                    Assert.True(m.GetProperty("packetsPerSecond").GetDouble() > 0, $"{workload} {target}");
                    Assert.True(m.GetProperty("measuredFrames").GetInt64() >= 9_000, $"{workload} {target}");
                    Assert.True(m.GetProperty("peakRssBytes").GetInt64() > 0, $"{workload} {target}");
                }

                JsonElement daemon = Measurement(runs, workload, Targets[1]);
                long divergences = daemon.GetProperty("divergences").GetInt64();
                // mixed at scale 0.02: 10,000 frames measured (after the warm-up), then 3,000 paced; 1 in 1,000 diverges.
                Assert.Equal(workload == "mixed" ? 13 : 0, divergences);
                Assert.Equal(divergences, daemon.GetProperty("checkpointRequests").GetInt64());
                Assert.True(Measurement(runs, workload, Targets[0]).GetProperty("checkpointRequests").GetInt64() >= divergences, workload);
            }

            JsonElement[] floods = [.. root.GetProperty("floods").EnumerateArray().Where(f => f.GetProperty("target").GetString() == Targets[1])];
            Assert.Equal(2, floods.Length);
            foreach (JsonElement flood in floods.Select(f => f.GetProperty("measurement")))
            {
                string account = flood.GetProperty("daemonAccount").GetString()!;
                Assert.True(flood.GetProperty("stillReading").GetBoolean(), account);
                Assert.InRange(flood.GetProperty("sent").GetInt64(), 100_000, 100_100);
                // 100,000 frames of 1,454 bytes (145 MB) against the 64 MB queue budget: the rest is dropped, counted.
                Assert.True(flood.GetProperty("peakRssBytes").GetInt64() < 200L * 1024 * 1024, $"peak RSS {flood.GetProperty("peakRssBytes").GetInt64()}: {account}");
                Assert.Matches(flood.GetProperty("side").GetString() == "primary only" ? @"dropped [1-9]\d*/0," : @"dropped 0/[1-9]\d*,", account);
            }

            byte[] png = await File.ReadAllBytesAsync(Path.Combine(output, "socket-benchmark.png"));
            Assert.Equal((byte[])[0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
            Assert.Contains("| TCP 1,454 B, 64 flows, 1 in 1,000 diverges | colo-compare daemon |", run.StandardOutput, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    private static JsonElement Measurement(JsonElement[] runs, string workload, string target) =>
        runs.Single(r => r.GetProperty("workload").GetString() == workload && r.GetProperty("target").GetString() == target).GetProperty("measurement");
}
