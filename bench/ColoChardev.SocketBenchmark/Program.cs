using System.Globalization;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;

namespace ColoChardev.SocketBenchmark;

/// <summary>
/// The side-by-side socket benchmark (<c>scripts/bench.sh</c>): the same framed traffic, from the same sender to the
/// same receiver, through QEMU's colo-compare, our daemon and a relay baseline, alternating, several runs each;
/// medians, ratios, a JSON file, a chart and the section of docs/performance.md. It prints figures and asserts no
/// time; it fails only when a target loses, duplicates or alters a frame, or stops answering.
/// </summary>
internal static class Program
{
    private const string Help = """
        socket-bench [options]            run the benchmark
        socket-bench relay P S O          the relay baseline (started by the benchmark)
        socket-bench startup [--runs N] [--port P] [--env NAME=VALUE ...] COMMAND...
                                          how fast a daemon build starts comparing (scripts/startup.sh)
        socket-bench report FILE [--out DIR] [--update-docs FILE]
                                          medians, chart and section again from a result's JSON (no new runs)

          --runs N            runs per target and workload (default 3)
          --scale X           frames per run as a share of the defaults (default 1; 0.02 for a smoke run)
          --workloads a,b     some of: tcp1454 tcp1454x64 tcp64 udp64x64 vnet1454 mixed (default all)
          --targets a,b       some of: qemu daemon relay (default all)
          --warmup-seconds S  traffic before the measured frames of every run (default 2)
          --floods on|off     one-sided floods after the runs (default on)
          --slow-reader on|off  an unthrottled sender and a slow outdev reader, then one that stops for 3 s (default on)
          --out DIR           where socket-benchmark.json and .png go (default docs/benchmarks)
          --update-docs FILE  rewrite FILE's section between the socket-benchmark markers (default: none)

        SOCKET_BENCH_DUMP=DIR writes every paced-phase latency (µs) of every run to DIR, for a closer look at the tail.
        SOCKET_BENCH_DAEMON_ARGS="--capture /tmp/c ..." adds options to every daemon run (what an operator's options cost).
        """;

    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 4 && args[0] == "relay")
        {
            return Relay.Run(Port(args[1]), Port(args[2]), Port(args[3]));
        }

        if (args.Length >= 2 && args[0] == "startup")
        {
            return StartupCommand(args[1..]);
        }

        if (args.Length >= 2 && args[0] == "report")
        {
            return Rerender(args[1], args[2..]);
        }

        int runs = 3;
        double scale = 1;
        IReadOnlyList<Workload> workloads = Workload.All;
        TargetKind[] targets = [TargetKind.Qemu, TargetKind.Daemon, TargetKind.Relay];
        double warmupSeconds = 2;
        bool floods = true;
        bool slowReader = true;
        string output = Path.Combine(RepositoryPaths.Root, "docs", "benchmarks");
        string? document = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--runs":
                    runs = int.Parse(Value(), CultureInfo.InvariantCulture);
                    break;
                case "--scale":
                    scale = double.Parse(Value(), CultureInfo.InvariantCulture);
                    break;
                case "--workloads":
                    string[] names = Value().Split(',');
                    workloads = [.. Workload.All.Where(w => names.Contains(w.Name))];
                    if (workloads.Count != names.Length)
                    {
                        Console.Error.WriteLine($"unknown workload in {string.Join(',', names)}\n{Help}");
                        return 2;
                    }

                    break;
                case "--targets":
                    targets = [.. Value().Split(',').Select(t => Enum.Parse<TargetKind>(t, ignoreCase: true))];
                    break;
                case "--warmup-seconds":
                    warmupSeconds = double.Parse(Value(), CultureInfo.InvariantCulture);
                    break;
                case "--floods":
                    floods = Value() == "on";
                    break;
                case "--slow-reader":
                    slowReader = Value() == "on";
                    break;
                case "--out":
                    output = Path.GetFullPath(Value());
                    break;
                case "--update-docs":
                    document = Path.GetFullPath(Value());
                    break;
                default:
                    Console.Error.WriteLine(Help);
                    return args[i] is "-h" or "--help" ? 0 : 2;
            }
        }

        Directory.CreateDirectory(output);
        var settings = new TargetSettings(MaxQueueSize: 8192);
        const int window = 4096;
        const int pacedRate = 10_000;
        MachineRecord machine = Report.Machine();
        Console.WriteLine($"machine: {machine.Cpu}, {machine.Cores} cores, {machine.Memory}; {machine.Qemu}; {machine.Dotnet}; commit {machine.Commit}");
        var done = new List<RunRecord>();
        using var stop = new CancellationTokenSource(TimeSpan.FromHours(2));
        for (int run = 1; run <= runs; run++)
        {
            foreach (Workload workload in workloads)
            {
                var traffic = new SyntheticTraffic(workload.Shape);
                long frames = Math.Max(10_000, (long)(workload.Frames * scale));
                var options = new LoadOptions(frames, window, pacedRate, PacedFrames: Math.Max(2_000, (int)(30_000 * Math.Min(1, scale * 5))), warmupSeconds);
                // Alternate who goes first, so no target always runs on a cooler (or warmer) machine.
                for (int k = 0; k < targets.Length; k++)
                {
                    TargetKind kind = targets[(k + run - 1) % targets.Length];
                    await using RunningTarget target = await RunningTarget.StartAsync(kind, workload.Shape, settings, stop.Token);
                    LoadMeasurement m = await Task.Run(() => new LoadDriver(target, traffic, options).Run(), stop.Token);
                    done.Add(new RunRecord(workload.Name, RunningTarget.Name(kind), run, m));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"run {run} {workload.Name,-11} {RunningTarget.Name(kind),-20} {m.PacketsPerSecond,10:N0} pps {m.MegabytesPerSecond,7:N0} MB/s  cpu {m.CpuSeconds,5:0.00} s  paced p50/p99 {m.PacedLatencyP50,6:0} /{m.PacedLatencyP99,6:0} µs  loaded p99 {m.LoadedLatencyP99 / 1000,6:0.0} ms  rss {m.PeakRssBytes / 1048576.0,4:0} MB  requests {m.CheckpointRequests}{(m.AllocatedBytesPerFrame is double a ? $"  alloc {a:0.000} B/frame gen0 {m.Gen0Collections}" : string.Empty)}"));
                    if (kind == TargetKind.Daemon && m.CheckpointRequests > m.Divergences)
                    {
                        // Checkpoints asked for on identical traffic: say why (the daemon's own words).
                        foreach (string line in target.Lines.Where(l => l.Contains("divergence", StringComparison.Ordinal)).Take(3).Concat(target.Lines.Where(l => l.Contains("checkpoint requests", StringComparison.Ordinal)).TakeLast(1)))
                        {
                            Console.WriteLine("    " + line);
                        }
                    }
                }
            }
        }

        var floodRecords = new List<FloodRecord>();
        if (floods)
        {
            var shape = new TrafficShape(IpProtocol.Tcp, 1454, 64);
            var traffic = new SyntheticTraffic(shape);
            // Enough to pass the daemon's 64 MB queue budget even in a smoke run.
            long frames = Math.Max(100_000, (long)(2_000_000 * scale));
            foreach (TargetKind kind in targets.Where(t => t != TargetKind.Relay))
            {
                foreach (bool primary in new[] { true, false })
                {
                    await using RunningTarget target = await RunningTarget.StartAsync(kind, shape, settings, stop.Token);
                    FloodMeasurement f = await Task.Run(() => Flood.Run(target, traffic, primary, frames, TimeSpan.FromSeconds(30)), stop.Token);
                    floodRecords.Add(new FloodRecord(RunningTarget.Name(kind), f));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"flood {f.Side,-15} {RunningTarget.Name(kind),-20} {f.Sent,10:N0} frames in {f.Seconds:0.0} s, released {f.Released:N0}, requests {f.CheckpointRequests:N0}, peak rss {f.PeakRssBytes / 1048576.0:0} MB, after {f.FinalRssBytes / 1048576.0:0} MB, still reading: {f.StillReading}"));
                }
            }
        }

        if (slowReader)
        {
            var shape = new TrafficShape(IpProtocol.Tcp, 1454, 64);
            var traffic = new SyntheticTraffic(shape);
            long frames = Math.Max(50_000, (long)(500_000 * scale));
            foreach (TargetKind kind in targets.Where(t => t != TargetKind.Relay))
            {
                foreach (bool stops in new[] { false, true })
                {
                    await using RunningTarget target = await RunningTarget.StartAsync(kind, shape, settings, stop.Token);
                    SlowReaderMeasurement m = await Task.Run(() => SlowReader.Run(target, traffic, frames, stops, TimeSpan.FromSeconds(60)), stop.Token);
                    Console.WriteLine(SlowReader.Describe(RunningTarget.Name(kind), m));
                    if (m.Account.Length > 0)
                    {
                        Console.WriteLine("    " + m.Account);
                    }
                }
            }
        }

        var result = new BenchmarkResult(machine, runs, scale, settings.MaxQueueSize, window, pacedRate, done, Report.Medians(done, workloads), floodRecords, warmupSeconds);
        Write(result, workloads, output, document);
        return 0;
    }

    /// <summary><c>startup [--runs N] [--port P] [--env N=V ...] COMMAND...</c>: fresh starts of one build, each measured and printed, then medians.</summary>
    private static int StartupCommand(string[] args)
    {
        int runs = 5;
        int port = 21300;
        var environment = new Dictionary<string, string>();
        int i = 0;
        for (; i < args.Length && args[i].StartsWith("--", StringComparison.Ordinal); i += 2)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--runs":
                    runs = int.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "--port":
                    port = int.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "--env":
                    string[] pair = value.Split('=', 2);
                    environment[pair[0]] = pair.Length == 2 ? pair[1] : string.Empty;
                    break;
                default:
                    Console.Error.WriteLine(Help);
                    return 2;
            }
        }

        string command = string.Join(' ', args[i..]);
        if (command.Length == 0)
        {
            Console.Error.WriteLine(Help);
            return 2;
        }

        var done = new List<StartupMeasurement>();
        for (int run = 1; run <= runs; run++)
        {
            StartupMeasurement m = Startup.Run(command, environment, port + (run % 4 * 10));
            done.Add(m);
            Console.WriteLine(Describe($"run {run}", m));
        }

        double Median(Func<StartupMeasurement, double> figure)
        {
            double[] sorted = [.. done.Select(figure).Order()];
            return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
        }

        Console.WriteLine(Describe("median", new StartupMeasurement(Median(m => m.Accepting), Median(m => m.FirstReleased), Median(m => m.FirstDivergence), Median(m => m.First100k), Median(m => m.Warm100k), Median(m => m.CpuSeconds), (long)Median(m => m.PeakRssBytes))));
        return 0;
    }

    private static string Describe(string what, StartupMeasurement m) => string.Create(CultureInfo.InvariantCulture,
        $"{what,-7} accepting {m.Accepting,6:0} ms  first frame out {m.FirstReleased,6:0} ms  first divergence -> DO_CHECKPOINT {m.FirstDivergence,6:0.0} ms  first 100k frames {m.First100k,6:0} ms  warm 100k {m.Warm100k,6:0} ms  cpu {m.CpuSeconds:0.00} s  peak rss {m.PeakRssBytes / 1048576.0:0} MB");

    /// <summary>Writes the JSON, the chart and the Markdown section (and the document's section, when given).</summary>
    private static void Write(BenchmarkResult result, IReadOnlyList<Workload> workloads, string output, string? document)
    {
        Directory.CreateDirectory(output);
        string json = Path.Combine(output, "socket-benchmark.json");
        string chart = Path.Combine(output, "socket-benchmark.png");
        Report.WriteJson(result, json);
        Report.Chart(result, workloads, chart);
        string relative = document is null ? output : Path.GetRelativePath(Path.GetDirectoryName(document)!, output);
        string section = Report.Markdown(result, workloads, Path.Combine(relative, "socket-benchmark.png"), Path.Combine(relative, "socket-benchmark.json"));
        Console.WriteLine();
        Console.WriteLine(section);
        if (document is not null)
        {
            Report.UpdateDocument(document, section);
            Console.WriteLine($"updated {document}");
        }

        Console.WriteLine($"wrote {json} and {chart}");
    }

    /// <summary><c>report FILE</c>: the medians, chart and section again from a result's runs (after a change to the report).</summary>
    private static int Rerender(string file, string[] args)
    {
        BenchmarkResult stored = Report.ReadJson(Path.GetFullPath(file));
        string output = Path.GetDirectoryName(Path.GetFullPath(file))!;
        string? document = null;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--out":
                    output = Path.GetFullPath(args[i + 1]);
                    break;
                case "--update-docs":
                    document = Path.GetFullPath(args[i + 1]);
                    break;
                default:
                    Console.Error.WriteLine(Help);
                    return 2;
            }
        }

        IReadOnlyList<Workload> workloads = [.. Workload.All.Where(w => stored.RunsDone.Any(r => r.Workload == w.Name))];
        Write(stored with { Medians = Report.Medians(stored.RunsDone, workloads) }, workloads, output, document);
        return 0;
    }

    private static int Port(string text) => int.Parse(text, CultureInfo.InvariantCulture);
}
