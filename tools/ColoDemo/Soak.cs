using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using ColoChardev.Testbed;

namespace ColoChardev.Demo;

/// <summary>
/// The soak run (<c>scripts/qemu/soak.sh</c>): a real COLO pair with the daemon for a long while, under continuous HTTP
/// downloads and TCP echo, a forced divergence every few seconds (the guest's <c>/cgi-bin/vm</c> answers differently on
/// each VM), the daemon restarted every few minutes and the secondary's chardev connection dropped and restored in
/// between. Every minute it samples the daemon's RSS, open file descriptors and threads; at each daemon stop it checks
/// that instance's accounting (every primary frame accepted was released or dropped with a reason, and what was
/// released was written to outdev or counted). Prints figures and writes a plot; it is not a test, but it exits 1 if
/// a transfer came back altered or the accounting does not hold.
/// </summary>
internal static partial class Soak
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    private sealed record Sample(double Minute, int DaemonPid, long RssBytes, int Fds, int Threads, long Downloads, long Echoes, long Divergences, long Drops);

    private sealed record Instance(int Pid, long PrimaryIn, long Released, long PrimaryDropped, long OutdevWritten, long OutdevDropped, long OutdevLost, bool Holds);

    public static async Task<int> RunAsync(string[] args)
    {
        double minutes = Option(args, "--minutes", 30);
        double restartEvery = Option(args, "--restart-every", 300);
        double divergeEvery = Option(args, "--diverge-every", 5);
        double dropEvery = Option(args, "--drop-every", 90);
        string output = args.SkipWhile(a => a != "--out").Skip(1).FirstOrDefault() ?? Path.Combine(RepositoryPaths.Root, "docs", "benchmarks");
        string directory = Directory.CreateTempSubdirectory("colo-soak-").FullName;
        string control = Path.Combine(directory, "control.sock");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"soak: {minutes} min; daemon restarted every {restartEvery} s, a divergence every {divergeEvery} s, the secondary's chardev dropped every {dropEvery} s; {Environment.ProcessorCount} CPUs, accelerator {Environment.GetEnvironmentVariable("ACCEL") ?? "tcg"}"));

        await using ColoPair pair = await ColoPair.StartAsync(new ColoPairOptions { SummaryIntervalSeconds = 10, DaemonArguments = ["--control", control] }, Console.WriteLine);
        using var run = new CancellationTokenSource(TimeSpan.FromMinutes(minutes));
        using var hard = new CancellationTokenSource(TimeSpan.FromMinutes(minutes + 10));
        byte[] payload = pair.Payload;
        long downloads = 0, downloadFailures = 0, altered = 0, echoes = 0, echoBreaks = 0, divergences = 0, divergenceFailures = 0, restarts = 0, drops = 0;
        var echoTimes = new List<double>();

        async Task HttpAsync()
        {
            using HttpClient http = pair.ClientNamespace.CreateHttpClient(Timeout);
            var uri = new Uri($"http://{pair.GuestAddress}/4m.bin");
            while (!run.IsCancellationRequested)
            {
                try
                {
                    byte[] body = await http.GetByteArrayAsync(uri, hard.Token);
                    if (!body.AsSpan().SequenceEqual(payload.AsSpan(0, body.Length)) || body.Length != 4 << 20)
                    {
                        Interlocked.Increment(ref altered);
                    }

                    Interlocked.Increment(ref downloads);
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
                {
                    Interlocked.Increment(ref downloadFailures);
                    Console.WriteLine($"  download failed: {e.Message}");
                }
            }
        }

        async Task EchoAsync()
        {
            const string line = "soak 0123456789\n";
            while (!run.IsCancellationRequested)
            {
                try
                {
                    using Socket echo = await pair.ClientNamespace.ConnectTcpAsync(new IPEndPoint(pair.GuestAddress, 7), hard.Token);
                    while (!run.IsCancellationRequested)
                    {
                        var watch = Stopwatch.StartNew();
                        using var one = CancellationTokenSource.CreateLinkedTokenSource(hard.Token);
                        one.CancelAfter(TimeSpan.FromSeconds(30));
                        string back = await TcpEcho.RoundTripAsync(echo, line, one.Token);
                        lock (echoTimes)
                        {
                            echoTimes.Add(watch.Elapsed.TotalMilliseconds);
                        }

                        if (back != line)
                        {
                            Interlocked.Increment(ref altered);
                        }

                        Interlocked.Increment(ref echoes);
                        await Task.Delay(100, run.Token);
                    }
                }
                catch (OperationCanceledException) when (run.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
                {
                    Interlocked.Increment(ref echoBreaks);
                    Console.WriteLine($"  echo connection broke: {e.Message}");
                }
            }
        }

        async Task DivergeAsync()
        {
            using HttpClient http = pair.ClientNamespace.CreateHttpClient(Timeout);
            var uri = new Uri($"http://{pair.GuestAddress}/cgi-bin/vm");
            while (!run.IsCancellationRequested)
            {
                try
                {
                    string answer = await http.GetStringAsync(uri, hard.Token);
                    Interlocked.Increment(ref divergences);
                    if (!answer.StartsWith("primary", StringComparison.Ordinal))
                    {
                        Interlocked.Increment(ref altered);
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
                {
                    Interlocked.Increment(ref divergenceFailures);
                }

                await Delay(divergeEvery, run.Token);
            }
        }

        var instances = new List<Instance>();
        async Task<Instance> StopAndAccountAsync()
        {
            int pid = pair.DaemonProcessId;
            await pair.StopDaemonAsync();
            DaemonSummary last = DaemonSummary.Last(pair.DaemonLog()) ?? throw new InvalidOperationException("no summary line after the stop");
            Match outdev = OutdevTotals().Matches(pair.DaemonLog()).Last();
            long outdevDropped = long.Parse(outdev.Groups[1].Value, CultureInfo.InvariantCulture);
            long outdevLost = long.Parse(outdev.Groups[2].Value, CultureInfo.InvariantCulture);
            bool holds = last.PrimaryIn == last.Released + last.PrimaryDropped && last.Released == last.OutdevWritten + outdevDropped + outdevLost;
            var instance = new Instance(pid, last.PrimaryIn, last.Released, last.PrimaryDropped, last.OutdevWritten, outdevDropped, outdevLost, holds);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  daemon {pid} stopped: primary in {last.PrimaryIn:N0} = released {last.Released:N0} + dropped {last.PrimaryDropped:N0}; outdev written {last.OutdevWritten:N0} + dropped {outdevDropped:N0} + lost {outdevLost:N0}: {(holds ? "holds" : "DOES NOT HOLD")}"));
            return instance;
        }

        async Task ChurnAsync()
        {
            var sinceRestart = Stopwatch.StartNew();
            var sinceDrop = Stopwatch.StartNew();
            while (!run.IsCancellationRequested)
            {
                await Delay(1, run.Token);
                if (sinceRestart.Elapsed.TotalSeconds >= restartEvery && !run.IsCancellationRequested)
                {
                    instances.Add(await StopAndAccountAsync());
                    await Task.Delay(TimeSpan.FromSeconds(2), hard.Token); // a daemon away for a moment: TCP retransmits
                    await pair.StartDaemonAsync();
                    restarts++;
                    sinceRestart.Restart();
                }

                if (sinceDrop.Elapsed.TotalSeconds >= dropEvery && File.Exists(control))
                {
                    try
                    {
                        await using ControlSocketClient client = await ControlSocketClient.ConnectAsync(control, hard.Token);
                        JsonElement reply = await client.ExecuteAsync("chardev-drop-peer", new System.Text.Json.Nodes.JsonObject { ["path"] = "comp0", ["chardev"] = "secondary_in" });
                        if (reply.GetProperty("dropped").GetBoolean())
                        {
                            drops++;
                        }
                    }
                    catch (Exception e) when (e is IOException or SocketException or ColoChardev.Qmp.QmpException)
                    {
                        Console.WriteLine($"  could not drop the secondary's chardev: {e.Message}");
                    }

                    sinceDrop.Restart();
                }
            }
        }

        var samples = new List<Sample>();
        var clock = Stopwatch.StartNew();
        async Task SampleAsync()
        {
            while (!run.IsCancellationRequested)
            {
                int pid = pair.DaemonProcessId;
                if (pid > 0 && Directory.Exists($"/proc/{pid}"))
                {
                    try
                    {
                        var sample = new Sample(clock.Elapsed.TotalMinutes, pid, ProcessMetrics.ResidentBytes(pid), Directory.GetFiles($"/proc/{pid}/fd").Length, Threads(pid),
                            Interlocked.Read(ref downloads), Interlocked.Read(ref echoes), Interlocked.Read(ref divergences), drops);
                        samples.Add(sample);
                        double p50;
                        lock (echoTimes)
                        {
                            echoTimes.Sort();
                            p50 = echoTimes.Count > 0 ? echoTimes[echoTimes.Count / 2] : 0;
                            echoTimes.Clear();
                        }

                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"minute {sample.Minute,5:F1}: daemon {pid} rss {sample.RssBytes / 1048576.0,5:F1} MiB, fds {sample.Fds,3}, threads {sample.Threads,3}; downloads {sample.Downloads}, echoes {sample.Echoes} (p50 {p50:F1} ms), divergences {sample.Divergences}, restarts {restarts}, secondary drops {drops}"));
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException or DirectoryNotFoundException)
                    {
                        // The daemon was being restarted just then.
                    }
                }

                await Delay(60, run.Token);
            }
        }

        Task[] work = [HttpAsync(), EchoAsync(), DivergeAsync(), ChurnAsync(), SampleAsync()];
        try
        {
            await Task.WhenAll(work);
        }
        catch (OperationCanceledException) when (run.IsCancellationRequested)
        {
        }

        await Task.WhenAll(work.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        instances.Add(await StopAndAccountAsync());

        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"soak done after {clock.Elapsed.TotalMinutes:F1} min: {downloads:N0} downloads of 4 MiB ({downloadFailures} failed), {echoes:N0} echoes ({echoBreaks} broken connections), {divergences:N0} divergences ({divergenceFailures} failed), {restarts} daemon restarts, {drops} secondary chardev drops; altered transfers: {altered}"));
        foreach (IGrouping<int, Sample> instance in samples.GroupBy(s => s.DaemonPid))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  daemon {instance.Key}: rss {instance.Min(s => s.RssBytes) / 1048576.0:F1}-{instance.Max(s => s.RssBytes) / 1048576.0:F1} MiB, fds {instance.Min(s => s.Fds)}-{instance.Max(s => s.Fds)}, threads {instance.Min(s => s.Threads)}-{instance.Max(s => s.Threads)} over {instance.Count()} samples"));
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"accounting: {instances.Count(i => i.Holds)} of {instances.Count} daemon instances hold; primary frames in {instances.Sum(i => i.PrimaryIn):N0}, released {instances.Sum(i => i.Released):N0}, dropped {instances.Sum(i => i.PrimaryDropped):N0}; outdev written {instances.Sum(i => i.OutdevWritten):N0}, dropped {instances.Sum(i => i.OutdevDropped):N0}, lost {instances.Sum(i => i.OutdevLost):N0}"));
        Plot(samples, Path.Combine(output, "soak.png"));
        Console.WriteLine($"plot: {Path.Combine(output, "soak.png")}");
        Directory.Delete(directory, recursive: true);
        return altered == 0 && instances.All(i => i.Holds) ? 0 : 1;
    }

    private static void Plot(List<Sample> samples, string file)
    {
        var plot = new ScottPlot.Plot();
        double[] minutes = [.. samples.Select(s => s.Minute)];
        var rss = plot.Add.Scatter(minutes, [.. samples.Select(s => s.RssBytes / 1048576.0)]);
        rss.LegendText = "RSS (MiB)";
        var fds = plot.Add.Scatter(minutes, [.. samples.Select(s => (double)s.Fds)]);
        fds.LegendText = "open fds";
        var threads = plot.Add.Scatter(minutes, [.. samples.Select(s => (double)s.Threads)]);
        threads.LegendText = "threads";
        foreach (Sample restart in samples.Where((s, i) => i > 0 && s.DaemonPid != samples[i - 1].DaemonPid))
        {
            plot.Add.VerticalLine(restart.Minute, pattern: ScottPlot.LinePattern.Dotted);
        }

        plot.Title("colo-compare daemon in a COLO pair under load (dotted: daemon restarted)");
        plot.XLabel("minutes");
        plot.ShowLegend();
        plot.Axes.SetLimitsY(0, Math.Max(10, samples.Count > 0 ? samples.Max(s => Math.Max(s.RssBytes / 1048576.0, s.Fds)) * 1.2 : 10));
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        plot.SavePng(file, 900, 450);
    }

    /// <summary>Draws the plot again from a soak run's printed minutes (<c>colo-demo soak-plot LOG PNG</c>).</summary>
    public static int Replot(string log, string png)
    {
        var samples = new List<Sample>();
        foreach (Match m in MinuteLine().Matches(File.ReadAllText(log)))
        {
            samples.Add(new Sample(double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture),
                (long)(double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture) * 1048576), int.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[5].Value, CultureInfo.InvariantCulture), 0, 0, 0, 0));
        }

        Plot(samples, png);
        Console.WriteLine($"{samples.Count} samples plotted to {png}");
        return samples.Count > 0 ? 0 : 1;
    }

    [GeneratedRegex(@"minute +([0-9.]+): daemon (\d+) rss +([0-9.]+) MiB, fds +(\d+), threads +(\d+)")]
    private static partial Regex MinuteLine();

    private static int Threads(int pid) =>
        int.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("Threads:", StringComparison.Ordinal))["Threads:".Length..].Trim(), CultureInfo.InvariantCulture);

    private static Task Delay(double seconds, CancellationToken token) =>
        Task.Delay(TimeSpan.FromSeconds(seconds), token).ContinueWith(_ => { }, TaskScheduler.Default);

    private static double Option(string[] args, string name, double fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? double.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }

    [GeneratedRegex(@"outdev written \d+, backlog \d+ bytes, dropped (\d+), lost (\d+)")]
    private static partial Regex OutdevTotals();
}
