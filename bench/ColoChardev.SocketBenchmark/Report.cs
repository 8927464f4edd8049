using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using ColoChardev.Testbed;

namespace ColoChardev.SocketBenchmark;

/// <summary>One run of one target on one workload.</summary>
internal sealed record RunRecord(string Workload, string Target, int Run, LoadMeasurement Measurement);

/// <summary>The medians of a target on a workload, with its ratios to QEMU and the relay.</summary>
internal sealed record MedianRecord(
    string Workload,
    string Target,
    int Runs,
    double PacketsPerSecond,
    double MegabytesPerSecond,
    double CpuSeconds,
    double CpuMicrosecondsPerFrame,
    double PacedLatencyP50,
    double PacedLatencyP99,
    double LoadedLatencyP50,
    double LoadedLatencyP99,
    double PeakRssMegabytes,
    double CheckpointRequests,
    double? AllocatedBytesPerFrame,
    double? Gen0Collections,
    double? TimesQemu,
    double? ShareOfRelay);

/// <summary>A flood of one side into one target.</summary>
internal sealed record FloodRecord(string Target, FloodMeasurement Measurement);

/// <summary>Where and with what the benchmark ran.</summary>
internal sealed record MachineRecord(string Date, string Cpu, int Cores, string Memory, string Kernel, string Os, string Qemu, string Dotnet, string Commit);

/// <summary>The whole result, as written to JSON.</summary>
internal sealed record BenchmarkResult(
    MachineRecord Machine,
    int Runs,
    double Scale,
    int MaxQueueSize,
    int Window,
    int PacedRate,
    IReadOnlyList<RunRecord> RunsDone,
    IReadOnlyList<MedianRecord> Medians,
    IReadOnlyList<FloodRecord> Floods,
    double WarmupSeconds = 0);

/// <summary>Medians, ratios, the JSON file, the Markdown section and the chart.</summary>
internal static class Report
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
    };

    public static IReadOnlyList<MedianRecord> Medians(IReadOnlyList<RunRecord> runs, IReadOnlyList<Workload> workloads)
    {
        var medians = new List<MedianRecord>();
        foreach (Workload workload in workloads)
        {
            double? Pps(string target) =>
                runs.Where(r => r.Workload == workload.Name && r.Target == target) is var mine && mine.Any()
                    ? Median(mine.Select(r => r.Measurement.PacketsPerSecond))
                    : null;
            double? qemu = Pps(RunningTarget.Name(TargetKind.Qemu));
            double? relay = Pps(RunningTarget.Name(TargetKind.Relay));
            foreach (IGrouping<string, RunRecord> group in runs.Where(r => r.Workload == workload.Name).GroupBy(r => r.Target))
            {
                LoadMeasurement[] m = [.. group.Select(r => r.Measurement)];
                double pps = Median(m.Select(x => x.PacketsPerSecond));
                // Over the runs that measured it (a run too short for two summaries in its window has none).
                double? allocated = m.Any(x => x.AllocatedBytesPerFrame is not null) ? Median(m.Where(x => x.AllocatedBytesPerFrame is not null).Select(x => x.AllocatedBytesPerFrame!.Value)) : null;
                double? gen0 = m.Any(x => x.Gen0Collections is not null) ? Median(m.Where(x => x.Gen0Collections is not null).Select(x => (double)x.Gen0Collections!.Value)) : null;
                medians.Add(new MedianRecord(
                    workload.Name,
                    group.Key,
                    m.Length,
                    pps,
                    Median(m.Select(x => x.MegabytesPerSecond)),
                    Median(m.Select(x => x.CpuSeconds)),
                    Median(m.Select(x => x.CpuSeconds / x.MeasuredFrames * 1e6)),
                    Median(m.Select(x => x.PacedLatencyP50)),
                    Median(m.Select(x => x.PacedLatencyP99)),
                    Median(m.Select(x => x.LoadedLatencyP50)),
                    Median(m.Select(x => x.LoadedLatencyP99)),
                    Median(m.Select(x => x.PeakRssBytes / 1048576.0)),
                    Median(m.Select(x => (double)x.CheckpointRequests)),
                    allocated,
                    gen0,
                    qemu is double q ? pps / q : null,
                    relay is double r ? pps / r : null));
            }
        }

        return medians;
    }

    public static MachineRecord Machine()
    {
        string cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown";
        string memory = File.ReadLines("/proc/meminfo").First().Split(':', 2)[1].Trim();
        string os = File.Exists("/etc/os-release")
            ? File.ReadLines("/etc/os-release").FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))?.Split('=', 2)[1].Trim('"') ?? "unknown"
            : "unknown";
        return new MachineRecord(
            DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture),
            cpu,
            Environment.ProcessorCount,
            memory,
            File.ReadAllText("/proc/sys/kernel/osrelease").Trim(),
            os,
            FirstLine(QemuBinary.Path, "--version"),
            RuntimeInformation.FrameworkDescription,
            FirstLine("git", "-C", RepositoryPaths.Root, "rev-parse", "--short", "HEAD"));
    }

    public static void WriteJson(BenchmarkResult result, string path) =>
        File.WriteAllText(path, JsonSerializer.Serialize(result, Json) + "\n");

    public static BenchmarkResult ReadJson(string path) =>
        JsonSerializer.Deserialize<BenchmarkResult>(File.ReadAllText(path), Json) ?? throw new InvalidDataException($"{path} holds no result");

    /// <summary>The Markdown section docs/performance.md carries between its markers.</summary>
    public static string Markdown(BenchmarkResult result, IReadOnlyList<Workload> workloads, string chartName, string jsonName)
    {
        var text = new StringBuilder();
        MachineRecord m = result.Machine;
        text.AppendLine(CultureInfo.InvariantCulture, $"Run {m.Date} on {m.Cpu}, {m.Cores} cores, {m.Memory} RAM, {m.Os}, Linux {m.Kernel}; {m.Qemu}; {m.Dotnet}; commit {m.Commit}.");
        text.AppendLine(CultureInfo.InvariantCulture, $"{result.Runs} runs per target and workload, alternating, medians; scale {result.Scale} ({string.Join(", ", workloads.Select(w => $"{w.Name} {(long)(w.Frames * result.Scale):N0}"))} frames measured a run{(result.WarmupSeconds > 0 ? string.Create(CultureInfo.InvariantCulture, $", after {result.WarmupSeconds:0.#} s of the same traffic to warm up") : ", the first tenth as warm-up")}); max_queue_size {result.MaxQueueSize} for every comparator, at most {result.Window} frames in flight; paced latency at {result.PacedRate:N0} frames/s. Raw figures: [{jsonName}]({jsonName}).");
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"![packets per second]({chartName})");
        text.AppendLine();
        text.AppendLine("| workload | target | packets/s | MB/s | × QEMU | of relay | CPU s | CPU µs/frame | latency p50 / p99 (paced) | latency p50 / p99 (full load) | peak RSS | checkpoint requests | allocated B/frame (gen0 GCs) |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (Workload workload in workloads)
        {
            foreach (MedianRecord r in result.Medians.Where(r => r.Workload == workload.Name))
            {
                text.AppendLine(CultureInfo.InvariantCulture,
                    $"| {workload.Title} | {r.Target} | {r.PacketsPerSecond:N0} | {r.MegabytesPerSecond:N0} | {Ratio(r.TimesQemu, "×")} | {Percent(r.ShareOfRelay)} | {r.CpuSeconds:0.00} | {r.CpuMicrosecondsPerFrame:0.00} | {Micro(r.PacedLatencyP50)} / {Micro(r.PacedLatencyP99)} | {Micro(r.LoadedLatencyP50)} / {Micro(r.LoadedLatencyP99)} | {r.PeakRssMegabytes:0} MB | {r.CheckpointRequests:0} | {(r.AllocatedBytesPerFrame is double a ? a.ToString("0.000", CultureInfo.InvariantCulture) + $" ({r.Gen0Collections:0})" : "–")} |");
            }
        }

        if (result.Floods.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("One-sided floods (TCP 1,454 B, 64 flows, as fast as the sender goes, checkpoint requests never answered):");
            text.AppendLine();
            text.AppendLine("| target | side | frames sent | seconds | released | checkpoint requests | peak RSS | RSS after | still reading | its own account |");
            text.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
            foreach (FloodRecord f in result.Floods)
            {
                FloodMeasurement x = f.Measurement;
                text.AppendLine(CultureInfo.InvariantCulture,
                    $"| {f.Target} | {x.Side} | {x.Sent:N0} | {x.Seconds:0.0} | {x.Released:N0} | {x.CheckpointRequests:N0} | {x.PeakRssBytes / 1048576.0:0} MB | {x.FinalRssBytes / 1048576.0:0} MB | {(x.StillReading ? "yes" : "no")} | {(x.DaemonAccount.Length > 0 ? x.DaemonAccount[..x.DaemonAccount.IndexOf("; process", StringComparison.Ordinal)] : "–")} |");
            }
        }

        return text.ToString();
    }

    /// <summary>Replaces the text between the benchmark's markers in <paramref name="path"/>.</summary>
    public static void UpdateDocument(string path, string section)
    {
        const string begin = "<!-- socket-benchmark:begin -->";
        const string end = "<!-- socket-benchmark:end -->";
        string document = File.ReadAllText(path);
        int from = document.IndexOf(begin, StringComparison.Ordinal);
        int to = document.IndexOf(end, StringComparison.Ordinal);
        if (from < 0 || to < from)
        {
            throw new InvalidOperationException($"{path} has no {begin} ... {end} section");
        }

        File.WriteAllText(path, document[..(from + begin.Length)] + "\n" + section + document[to..]);
    }

    public static void Chart(BenchmarkResult result, IReadOnlyList<Workload> workloads, string path)
    {
        var plot = new ScottPlot.Plot();
        string[] targets = [.. new[] { TargetKind.Qemu, TargetKind.Daemon, TargetKind.Relay }.Select(RunningTarget.Name)];
        ScottPlot.Color[] colors = [ScottPlot.Colors.SlateGray, ScottPlot.Colors.SeaGreen, ScottPlot.Colors.LightSteelBlue];
        var bars = new List<ScottPlot.Bar>();
        var ticks = new List<ScottPlot.Tick>();
        for (int w = 0; w < workloads.Count; w++)
        {
            for (int t = 0; t < targets.Length; t++)
            {
                if (result.Medians.FirstOrDefault(r => r.Workload == workloads[w].Name && r.Target == targets[t]) is MedianRecord r)
                {
                    bars.Add(new ScottPlot.Bar
                    {
                        Position = (w * (targets.Length + 1)) + t,
                        // Log scale: the relay is 5-50 times faster than either comparator.
                        Value = Math.Log10(r.PacketsPerSecond),
                        ValueBase = 4,
                        FillColor = colors[t],
                        Label = (r.PacketsPerSecond / 1000).ToString("0", CultureInfo.InvariantCulture),
                    });
                }
            }

            ticks.Add(new ScottPlot.Tick((w * (targets.Length + 1)) + 1, workloads[w].Title.Replace(", ", "\n", StringComparison.Ordinal)));
        }

        ScottPlot.Plottables.BarPlot plottable = plot.Add.Bars(bars);
        plottable.ValueLabelStyle.FontSize = 11;
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual([.. ticks]);
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        double[] levels = [1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7];
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            [.. levels.Select(v => new ScottPlot.Tick(Math.Log10(v), (v / 1000).ToString("N0", CultureInfo.InvariantCulture)))]);
        plot.Axes.SetLimitsY(4, Math.Max(6, bars.Count == 0 ? 0 : bars.Max(b => b.Value) + 0.3));
        plot.YLabel("thousand packets per second (median, log scale)");
        string qemu = "QEMU " + System.Text.RegularExpressions.Regex.Match(result.Machine.Qemu, @"version ([0-9.]+)").Groups[1].Value;
        plot.Title($"Same traffic through {qemu}'s colo-compare, our daemon and a relay ({result.Machine.Cores} cores, {result.Machine.Date})");
        for (int t = 0; t < targets.Length; t++)
        {
            plot.Legend.ManualItems.Add(new ScottPlot.LegendItem { LabelText = targets[t], FillColor = colors[t] });
        }

        plot.Legend.Alignment = ScottPlot.Alignment.UpperLeft;
        plot.ShowLegend();
        plot.SavePng(path, 1400, 640);
    }

    public static double Median(IEnumerable<double> values)
    {
        double[] sorted = [.. values.OrderBy(v => v)];
        if (sorted.Length == 0)
        {
            return double.NaN;
        }

        int middle = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }

    private static string Ratio(double? value, string unit) => value is double v ? v.ToString("0.00", CultureInfo.InvariantCulture) + unit : "–";

    private static string Percent(double? value) => value is double v ? (v * 100).ToString("0", CultureInfo.InvariantCulture) + " %" : "–";

    private static string Micro(double microseconds) =>
        double.IsNaN(microseconds) ? "–"
        : microseconds >= 1000 ? (microseconds / 1000).ToString("0.00", CultureInfo.InvariantCulture) + " ms"
        : microseconds.ToString("0", CultureInfo.InvariantCulture) + " µs";

    private static string FirstLine(string program, params string[] arguments)
    {
        try
        {
            var info = new System.Diagnostics.ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string argument in arguments)
            {
                info.ArgumentList.Add(argument);
            }

            using var process = System.Diagnostics.Process.Start(info)!;
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return output.Split('\n')[0].Trim();
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown";
        }
    }
}
