using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using ColoChardev.Qmp;
using ColoChardev.Testbed;

namespace ColoChardev.Demo;

/// <summary>
/// Side-by-side figures of a real COLO pair with QEMU's built-in colo-compare and with our daemon, in one run
/// (<c>scripts/qemu/measure-pair.sh</c>): time to download 16 MiB over HTTP, TCP echo round trip p50/p99, and
/// checkpoints per minute at idle and under load. Prints figures; asserts nothing.
/// </summary>
internal static class PairMeasurement
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    private sealed record Figures(string Target, double DownloadSeconds, double EchoP50Ms, double EchoP99Ms, double IdlePerMinute, double LoadPerMinute, bool Intact, string Reasons, string Cpu, double LoadMegabytesPerSecond);

    public static async Task<int> RunAsync(string[] args)
    {
        int rounds = Option(args, "--rounds", 1);
        int idleSeconds = Option(args, "--idle-seconds", 60);
        int loadSeconds = Option(args, "--load-seconds", 60);
        int echoes = Option(args, "--echoes", 500);
        Console.WriteLine($"COLO pair side by side: {rounds} round(s), idle window {idleSeconds} s, load window {loadSeconds} s, {echoes} echo round trips, "
            + $"accelerator {Environment.GetEnvironmentVariable("ACCEL") ?? "tcg"}, {Environment.ProcessorCount} CPUs, x-checkpoint-delay 20000 ms");
        var results = new List<Figures>();
        for (int round = 1; round <= rounds; round++)
        {
            foreach (bool builtin in (bool[])[true, false])
            {
                string target = builtin ? "QEMU colo-compare" : "colo-compare daemon";
                Console.WriteLine($"round {round}: {target} ...");
                Figures figures = await MeasureAsync(target, builtin, idleSeconds, loadSeconds, echoes);
                Console.WriteLine($"  {Describe(figures)}");
                results.Add(figures);
            }
        }

        Console.WriteLine();
        Console.WriteLine($"{"target (median of rounds)",-22} | {"16 MiB download",15} | {"echo p50",9} | {"echo p99",9} | {"checkpoints/min idle",20} | {"checkpoints/min load",20} | {"MB/s under load",15} | content");
        foreach (IGrouping<string, Figures> group in results.GroupBy(r => r.Target))
        {
            Console.WriteLine($"{group.Key,-22} | {Median(group, f => f.DownloadSeconds),13:F2} s | {Median(group, f => f.EchoP50Ms),6:F2} ms | {Median(group, f => f.EchoP99Ms),6:F2} ms | "
                + $"{Median(group, f => f.IdlePerMinute),20:F1} | {Median(group, f => f.LoadPerMinute),20:F1} | {Median(group, f => f.LoadMegabytesPerSecond),15:F1} | {(group.All(f => f.Intact) ? "intact" : "CORRUPT")}");
        }

        return results.All(r => r.Intact) ? 0 : 1;
    }

    private static async Task<Figures> MeasureAsync(string target, bool builtin, int idleSeconds, int loadSeconds, int echoes)
    {
        await using ColoPair pair = await ColoPair.StartAsync(new ColoPairOptions { Builtin = builtin, SummaryIntervalSeconds = 5 });
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        await using QmpClient primary = await pair.ConnectQmpAsync(ColoVm.Primary, cts.Token);
        using QmpEventSubscription stops = primary.Subscribe("STOP");
        using HttpClient http = pair.ClientNamespace.CreateHttpClient(Timeout);
        byte[] payload = pair.Payload;
        var uri = new Uri($"http://{pair.GuestAddress}/payload.bin");

        // Idle: nothing but the guests' own chatter.
        Drain(stops);
        await Task.Delay(TimeSpan.FromSeconds(idleSeconds), cts.Token);
        double idle = Drain(stops) * 60.0 / idleSeconds;

        // 16 MiB download, three times, median.
        var downloads = new List<double>();
        bool intact = true;
        for (int i = 0; i < 3; i++)
        {
            var watch = Stopwatch.StartNew();
            byte[] body = await http.GetByteArrayAsync(uri, cts.Token);
            downloads.Add(watch.Elapsed.TotalSeconds);
            intact &= body.AsSpan().SequenceEqual(payload);
        }

        // TCP echo round trips on one connection.
        var rtts = new List<double>(echoes);
        using (Socket echo = await pair.ClientNamespace.ConnectTcpAsync(new IPEndPoint(pair.GuestAddress, 7), cts.Token))
        {
            const string line = "ping 0123456789\n";
            for (int i = 0; i < echoes; i++)
            {
                var watch = Stopwatch.StartNew();
                string back = await TcpEcho.RoundTripAsync(echo, line, cts.Token);
                rtts.Add(watch.Elapsed.TotalMilliseconds);
                intact &= back == line;
            }
        }

        // Under load: back-to-back 4 MiB downloads for the window (bounded by time), checkpoints counted.
        Drain(stops);
        int primaryPid = pair.ProcessId(ColoVm.Primary);
        int daemonPid = pair.DaemonProcessId;
        double primaryCpu = CpuSeconds(primaryPid), daemonCpu = CpuSeconds(daemonPid);
        var load = Stopwatch.StartNew();
        var loadUri = new Uri($"http://{pair.GuestAddress}/4m.bin");
        long loadBytes = 0;
        while (load.Elapsed < TimeSpan.FromSeconds(loadSeconds))
        {
            byte[] body = await http.GetByteArrayAsync(loadUri, cts.Token);
            intact &= body.AsSpan().SequenceEqual(payload.AsSpan(0, body.Length));
            loadBytes += body.Length;
        }

        double loadRate = loadBytes / load.Elapsed.TotalSeconds / 1e6;

        double loaded = Drain(stops) * 60.0 / load.Elapsed.TotalSeconds;
        string cpu = string.Create(CultureInfo.InvariantCulture, $"CPU during the load window: primary QEMU {CpuSeconds(primaryPid) - primaryCpu:F1} s")
            + (daemonPid > 0 ? string.Create(CultureInfo.InvariantCulture, $", daemon {CpuSeconds(daemonPid) - daemonCpu:F1} s") : "")
            + string.Create(CultureInfo.InvariantCulture, $" of {load.Elapsed.TotalSeconds:F0} s");
        rtts.Sort();
        downloads.Sort();
        // Why the daemon asked for checkpoints over the whole run (QEMU's colo-compare does not say).
        string reasons = string.Join(", ", Regex.Matches(pair.DaemonLog(), @"checkpoint requested over QMP \((\w+) on")
            .GroupBy(m => m.Groups[1].Value).Select(g => $"{g.Key} {g.Count()}"));
        return new Figures(target, downloads[1], Percentile(rtts, 0.50), Percentile(rtts, 0.99), idle, loaded, intact, reasons, cpu, loadRate);
    }

    /// <summary>User + system CPU seconds of a process so far (/proc/PID/stat), 0 when there is none.</summary>
    private static double CpuSeconds(int pid)
    {
        if (pid <= 0 || !File.Exists($"/proc/{pid}/stat"))
        {
            return 0;
        }

        string stat = File.ReadAllText($"/proc/{pid}/stat");
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // Fields 14 and 15 of stat (utime, stime), counted after the command name: indexes 11 and 12.
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }

    private static int Drain(QmpEventSubscription events)
    {
        int count = 0;
        while (events.TryRead(out QmpEvent? _))
        {
            count++;
        }

        return count;
    }

    private static double Percentile(List<double> sorted, double p) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    private static double Median(IEnumerable<Figures> figures, Func<Figures, double> value)
    {
        double[] values = [.. figures.Select(value).Order()];
        return values.Length % 2 == 1 ? values[values.Length / 2] : (values[(values.Length / 2) - 1] + values[values.Length / 2]) / 2;
    }

    private static string Describe(Figures f) =>
        string.Create(CultureInfo.InvariantCulture, $"16 MiB in {f.DownloadSeconds:F2} s, echo p50 {f.EchoP50Ms:F2} ms p99 {f.EchoP99Ms:F2} ms, checkpoints/min idle {f.IdlePerMinute:F1} load {f.LoadPerMinute:F1} (load: back-to-back 4 MiB downloads at {f.LoadMegabytesPerSecond:F1} MB/s), content {(f.Intact ? "intact" : "CORRUPT")}{(f.Reasons.Length > 0 ? "; daemon's requests: " + f.Reasons : "")}; {f.Cpu}");

    private static int Option(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }
}
