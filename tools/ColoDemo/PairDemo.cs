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
/// The README's demo: a real COLO pair (two QEMU VMs, 7.2 or QEMU_VERSION's, running the tiny guest, under TCG here) with our daemon in
/// place of -object colo-compare; a client inside the pair's network namespace pings, downloads, echoes and forces a
/// divergence; then a summary of what the daemon compared and released, the checkpoints QEMU made (with reasons and
/// durations), and what the client saw. Everything is stopped at the end.
/// </summary>
internal static partial class PairDemo
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public static async Task<int> RunAsync()
    {
        Console.WriteLine($"=== A COLO pair ({QemuBinary.Label}) with the colo-compare daemon in place of QEMU's -object colo-compare ===");
        Console.WriteLine("Starting: guest image, network namespace, primary QEMU, daemon, secondary QEMU, COLO (scripts/qemu/colo-pair.sh) ...");
        var started = Stopwatch.StartNew();
        var client = new List<string>();
        bool ok = true;
        string captures = Directory.CreateTempSubdirectory("colo-demo-captures-").FullName;
        await using ColoPair pair = await ColoPair.StartAsync(new ColoPairOptions { SummaryIntervalSeconds = 1, DaemonArguments = ["--capture", captures] });
        Console.WriteLine($"COLO running after {started.Elapsed.TotalSeconds:F1} s. Client {pair.ClientNamespace.Name}:10.0.0.1, guest {pair.GuestAddress}; state in {pair.Directory}");

        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await using QmpClient primary = await pair.ConnectQmpAsync(ColoVm.Primary, cts.Token);
        using QmpEventSubscription events = primary.Subscribe("STOP", "RESUME");
        DaemonSummary before = await pair.NextSummaryAsync(Timeout);

        int replies = await pair.PingAsync(3);
        client.Add($"ping: {replies}/3 replies");
        ok &= replies == 3;

        using HttpClient http = pair.ClientNamespace.CreateHttpClient(Timeout);
        var watch = Stopwatch.StartNew();
        byte[] download = await http.GetByteArrayAsync(new Uri($"http://{pair.GuestAddress}/4m.bin"), cts.Token);
        double seconds = watch.Elapsed.TotalSeconds;
        bool intact = download.AsSpan().SequenceEqual(pair.Payload.AsSpan(0, 4 << 20));
        client.Add($"HTTP GET /4m.bin: {download.Length:N0} bytes in {seconds:F2} s ({download.Length / seconds / 1e6:F1} MB/s), content {(intact ? "identical to the guest's file" : "DIFFERENT")}");
        ok &= intact;

        using (Socket echo = await pair.ClientNamespace.ConnectTcpAsync(new IPEndPoint(pair.GuestAddress, 7), cts.Token))
        {
            var rtts = new List<double>();
            for (int i = 0; i < 10; i++)
            {
                watch.Restart();
                string line = $"hello {i}\n";
                string back = await TcpEcho.RoundTripAsync(echo, line, cts.Token);
                rtts.Add(watch.Elapsed.TotalMilliseconds);
                ok &= back == line;
            }

            rtts.Sort();
            client.Add($"TCP echo: 10 lines echoed, round trip median {rtts[5]:F1} ms, max {rtts[^1]:F1} ms");
        }

        DaemonSummary identical = await pair.NextSummaryAsync(Timeout);
        for (int i = 0; i < 3; i++)
        {
            // Each VM answers with its own name and fresh random bytes: the outputs diverge.
            string answer = (await http.GetStringAsync(new Uri($"http://{pair.GuestAddress}/cgi-bin/vm"), cts.Token)).TrimEnd();
            client.Add($"HTTP GET /cgi-bin/vm (diverges on purpose): \"{answer}\"");
            ok &= answer.StartsWith("primary ", StringComparison.Ordinal);
        }

        string index = (await http.GetStringAsync(new Uri($"http://{pair.GuestAddress}/index.html"), cts.Token)).TrimEnd();
        client.Add($"HTTP GET /index.html afterwards: \"{index}\"");
        DaemonSummary after = await pair.NextSummaryAsync(Timeout);

        Console.WriteLine();
        Console.WriteLine("What the client saw:");
        foreach (string line in client)
        {
            Console.WriteLine("  " + line);
        }

        Console.WriteLine();
        Console.WriteLine("What the daemon did (its own counters, from its summary lines):");
        Console.WriteLine($"  identical traffic: {identical.Compared - before.Compared:N0} primary frames compared with the secondary's and released, "
            + $"{identical.ReleasedUncompared - before.ReleasedUncompared:N0} released uncompared (TCP ACK/SYN/FIN without payload, ARP, neighbour discovery), "
            + $"{identical.Mismatches - before.Mismatches} mismatches");
        Console.WriteLine($"  forced divergence: {after.Mismatches - identical.Mismatches} mismatches, {after.MismatchRequests - identical.MismatchRequests} checkpoints requested over QMP, "
            + $"{after.Compared - identical.Compared:N0} more frames compared");
        Console.WriteLine($"  overall: {after.PrimaryIn:N0} primary frames in, {after.Released:N0} released, {after.OutdevWritten:N0} written to QEMU, {after.PrimaryDropped} dropped");
        ok &= after.PrimaryDropped == 0 && after.MismatchRequests - identical.MismatchRequests >= 3;

        Console.WriteLine();
        Console.WriteLine("Checkpoints (QEMU's STOP -> RESUME on the primary monitor; reasons from the daemon's log):");
        List<(DateTimeOffset Stop, double Ms)> checkpoints = Checkpoints(events);
        List<string> reasons = CheckpointReasons(pair.DaemonLog());
        foreach ((DateTimeOffset stop, double ms) in checkpoints)
        {
            Console.WriteLine($"  {stop.ToLocalTime():HH:mm:ss.fff}  primary paused {ms,5:F0} ms");
        }

        Console.WriteLine($"  {checkpoints.Count} checkpoints during the traffic; the daemon's reasons over the whole run:");
        foreach (string reason in reasons.TakeLast(16))
        {
            Console.WriteLine("    " + reason);
        }

        Console.WriteLine();
        Console.WriteLine($"Divergence captures (--capture {captures}), the last divergence as tshark reads it:");
        ok &= await PrintLastCaptureAsync(captures);

        Console.WriteLine();
        Console.WriteLine("Stopping the pair (every process by PID, the namespace removed) ...");
        await pair.DisposeAsync();
        Console.WriteLine(ok ? "Demo finished: every check passed." : "Demo finished with a FAILED check (see above).");
        return ok ? 0 : 1;
    }

    /// <summary>The packets of the newest divergence in the capture files: side, TCP payload length, comment.</summary>
    private static async Task<bool> PrintLastCaptureAsync(string directory)
    {
        string? file = Directory.GetFiles(directory, "*.pcapng").Order(StringComparer.Ordinal).LastOrDefault();
        if (file is null)
        {
            Console.WriteLine("  no capture file: FAILED");
            return false;
        }

        ProcessResult tshark = await ExternalProcess.RunAsync("tshark", ["-r", file, "-T", "fields", "-E", "separator=|", "-e", "frame.interface_name", "-e", "tcp.len", "-e", "frame.comment"], TimeSpan.FromSeconds(60));
        if (tshark.ExitCode != 0)
        {
            Console.WriteLine($"  tshark -r {file} failed: {tshark.StandardError.Trim()}");
            return false;
        }

        string[] rows = tshark.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string last = rows.Length == 0 ? string.Empty : rows[^1].Split('|')[^1].Split(':')[0];
        Console.WriteLine($"  tshark -r {file}: {rows.Length} packets; {last}:");
        foreach (string row in rows.Where(r => r.Split('|')[^1].StartsWith(last + ":", StringComparison.Ordinal)))
        {
            string[] fields = row.Split('|');
            Console.WriteLine($"    {fields[0],-12} {fields[1],4} bytes of TCP payload  {fields[2][(last.Length + 2)..]}");
        }

        return rows.Any(r => r.Contains(", the diverging one", StringComparison.Ordinal));
    }

    private static List<(DateTimeOffset Stop, double Ms)> Checkpoints(QmpEventSubscription events)
    {
        var result = new List<(DateTimeOffset, double)>();
        DateTimeOffset? stop = null;
        while (events.TryRead(out QmpEvent? e))
        {
            if (e!.Name == "STOP")
            {
                stop = e.Timestamp;
            }
            else if (stop is { } s)
            {
                result.Add((s, (e.Timestamp - s).TotalMilliseconds));
                stop = null;
            }
        }

        return result;
    }

    private static List<string> CheckpointReasons(string log)
    {
        var lines = new List<string>();
        foreach (Match m in CheckpointLine().Matches(log))
        {
            lines.Add(m.Groups["time"].Value + "  " + m.Groups["what"].Value);
        }

        return lines;
    }

    [GeneratedRegex(@"T(?<time>\d\d:\d\d:\d\d\.\d+) \w+: checkpoints\[20[68]\] (?<what>checkpoint (requested over QMP \([^)]*\)|completed \([^)]*\) after \d+ ms))")]
    private static partial Regex CheckpointLine();
}
