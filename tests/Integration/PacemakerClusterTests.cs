using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using ColoChardev.Testbed;
using Xunit.Abstractions;

namespace ColoChardev.Integration;

/// <summary>
/// A real two-node Pacemaker/Corosync cluster (scripts/qemu/colo-cluster.sh: each node in network, mount and UTS
/// namespaces of its own, Corosync over a veth link) runs one COLO VM with our resource agent, and a cluster manager,
/// not the test, does every failover. The test only kills things (nodes, the daemon) and brings nodes back; it checks
/// what a client sees and how long each step took. No fencing device: stonith-enabled=false (docs/operations.md says
/// what production needs). The tiny guest has no disk, so block replication is not exercised.
/// </summary>
[Trait("Qemu", "real")]
[Collection(ColoPairSerial.Name)]
public sealed class PacemakerClusterTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(120);

    // A client request unanswered for this long counts as not answered: a pause anyone would notice.
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);

    // The longest the client may go without an answer across any one step (loss, failover, re-protection).
    private static readonly TimeSpan LongestPause = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task The_cluster_fails_over_both_ways_re_protects_each_time_and_restarts_a_lost_daemon_without_failover()
    {
        await using ColoCluster cluster = await ColoCluster.StartAsync(output.WriteLine);
        var timings = new List<string>();
        using var stop = new CancellationTokenSource();
        Task<ClientRecord> client = Task.FromResult(new ClientRecord(0, [], TimeSpan.Zero));
        var clock = Stopwatch.StartNew();
        // The spans in which the client may go unanswered: from each fault (or node's return) to the step's end.
        var disruptions = new List<(TimeSpan From, TimeSpan To)>();
        try
        {
            using HttpClient http = cluster.ClientNamespace.CreateHttpClient(TimeSpan.FromSeconds(60));
            byte[] payload = File.ReadAllBytes(Path.Combine(RepositoryPaths.Root, ".cache", "guest", "payload.bin"));
            // A client throughout: a small request every 200 ms; what it notices are pauses, and only during a step.
            client = PollAsync(cluster, clock, stop.Token);

            // 1. One promoted, one unpromoted, COLO running, the daemon comparing.
            string primary = await cluster.PromotedAsync() ?? throw new InvalidOperationException("nothing promoted\n" + cluster.Diagnostics());
            string secondary = ColoCluster.Other(primary);
            await AssertProtectedAsync(cluster, http, payload, primary, secondary);

            // A long-lived client connection, older than the next checkpoint (docs/colo-pair.md: TCP timestamps).
            using Socket echo = await cluster.ClientNamespace.ConnectTcpAsync(new IPEndPoint(cluster.GuestAddress, 7), CancellationToken.None);
            Assert.Equal("opened\n", await EchoAsync(echo, "opened\n"));

            // The replicated disk: a write in the guest reaches the secondary's image through the replication child.
            var disk = new GuestDisk(http, Url(cluster, "/cgi-bin/disk"));
            await disk.WriteAsync(1);
            await WaitForImageAsync(cluster, secondary, disk, 1);
            await CheckpointAsync(cluster, primary);

            // 2. The secondary's node is lost: the primary leaves COLO and passes traffic through; then it returns.
            var lost = Stopwatch.StartNew();
            TimeSpan from = clock.Elapsed;
            await cluster.KillNodeAsync(secondary);
            // The guest writes while its replication child still points at the lost node: the write must complete
            // once the primary lets go of it (yank), not hang the guest's disk.
            Task lostWrite = disk.WriteAsync(6);
            await WaitForAsync(cluster, async () => (await cluster.QmpAsync(primary, "query-colo-status")).Contains("\"mode\":\"none\"", StringComparison.Ordinal), "the primary to leave COLO");
            timings.Add($"secondary node lost -> primary out of COLO, passing traffic: {Seconds(lost)}");
            disruptions.Add((from, clock.Elapsed));
            Assert.Equal("secondary lost\n", await EchoAsync(echo, "secondary lost\n"));
            await lostWrite;
            Assert.Equal(payload, await http.GetByteArrayAsync(Url(cluster, "/payload.bin")));
            Assert.Equal(0, cluster.DaemonPid(primary));
            // Written while the VM runs alone: only the copy of the disk before COLO starts again can bring it over.
            await disk.WriteAsync(2);

            var back = Stopwatch.StartNew();
            from = clock.Elapsed;
            await cluster.StartNodeAsync(secondary);
            await WaitForProtectedAsync(cluster, primary, secondary);
            timings.Add($"secondary node back -> COLO running again (re-protection): {Seconds(back)}");
            disruptions.Add((from, clock.Elapsed));
            await AssertProtectedAsync(cluster, http, payload, primary, secondary);
            Assert.Equal("re-protected\n", await EchoAsync(echo, "re-protected\n"));
            await WaitForImageAsync(cluster, secondary, disk, 1, 2, 6);
            Assert.Contains("copying the disk to it first", cluster.AgentLog(primary), StringComparison.Ordinal);

            // 2b. The secondary's QEMU dies on a live node: its monitor fails (the instance is marked failed),
            // Pacemaker stops and starts it, the primary leaves COLO (on the stop's notification or on seeing COLO
            // end) and is protected again by the new secondary.
            int secondaryQemu = int.Parse(cluster.StateFile(secondary, "qemu.pid").Trim(), CultureInfo.InvariantCulture);
            string leftBefore = cluster.AgentLog(primary);
            var crashed = Stopwatch.StartNew();
            from = clock.Elapsed;
            Process.GetProcessById(secondaryQemu).Kill();
            await WaitForAsync(cluster, () => Task.FromResult(Left(cluster.AgentLog(primary)) > Left(leftBefore)), "the primary to leave COLO");
            await WaitForProtectedAsync(cluster, primary, secondary);
            timings.Add($"secondary's QEMU killed -> recovered by Pacemaker, COLO running again: {Seconds(crashed)}");
            disruptions.Add((from, clock.Elapsed));
            Assert.NotEqual(secondaryQemu, int.Parse(cluster.StateFile(secondary, "qemu.pid").Trim(), CultureInfo.InvariantCulture));
            (int _, string failures) = await cluster.ExecAsync(primary, "crm_failcount", "--query", "--resource", "vm1", "--node", secondary);
            Assert.Matches(@"value=[1-9]", failures);
            await AssertProtectedAsync(cluster, http, payload, primary, secondary);
            Assert.Equal("secondary recovered\n", await EchoAsync(echo, "secondary recovered\n"));
            await disk.WriteAsync(3);
            await WaitForImageAsync(cluster, secondary, disk, 1, 2, 3, 6);
            await CheckpointAsync(cluster, primary);

            // 3. The primary's node is lost: the secondary is promoted and the client's connection keeps working.
            lost.Restart();
            from = clock.Elapsed;
            await cluster.KillNodeAsync(primary);
            await WaitForAsync(cluster, async () => await cluster.PromotedAsync() == secondary && await AnswersAsync(http, cluster, TimeSpan.FromSeconds(2)), "the secondary to be promoted and answer");
            timings.Add($"primary node lost -> secondary promoted, traffic flowing: {Seconds(lost)}");
            disruptions.Add((from, clock.Elapsed));
            Assert.Equal("primary lost\n", await EchoAsync(echo, "primary lost\n"));
            Assert.Contains("\"last-mode\":\"secondary\"", await cluster.QmpAsync(secondary, "query-colo-status"), StringComparison.Ordinal);
            Assert.Contains("failover: the secondary takes over", cluster.AgentLog(secondary), StringComparison.Ordinal);
            // The VM that took over reads, from its disk (page cache dropped), what the lost primary wrote.
            await disk.AssertReadsAsync(1, 2, 3, 6);
            await disk.WriteAsync(4);

            back.Restart();
            from = clock.Elapsed;
            await cluster.StartNodeAsync(primary);
            (primary, secondary) = (secondary, primary);
            await WaitForProtectedAsync(cluster, primary, secondary);
            timings.Add($"old primary's node back -> COLO running the other way (re-protection): {Seconds(back)}");
            disruptions.Add((from, clock.Elapsed));
            await AssertProtectedAsync(cluster, http, payload, primary, secondary);
            Assert.Equal("other way\n", await EchoAsync(echo, "other way\n"));
            // The returning node's stale image now has what was written while it was away.
            await WaitForImageAsync(cluster, secondary, disk, 1, 2, 3, 4, 6);

            // 4. The daemon is lost: the agent's monitor restarts it; no failover.
            int daemon = cluster.DaemonPid(primary);
            Assert.True(daemon > 0, "no daemon on the primary");
            var restart = Stopwatch.StartNew();
            from = clock.Elapsed;
            Process.GetProcessById(daemon).Kill();
            await WaitForAsync(cluster, () => Task.FromResult(cluster.DaemonPid(primary) is int pid && pid > 0 && pid != daemon && Directory.Exists($"/proc/{pid}")), "the agent to restart the daemon");
            timings.Add($"daemon killed -> restarted by the monitor: {Seconds(restart)}");
            disruptions.Add((from, clock.Elapsed));
            Assert.Equal(primary, await cluster.PromotedAsync());
            await AssertProtectedAsync(cluster, http, payload, primary, secondary);
            Assert.Equal("daemon back\n", await EchoAsync(echo, "daemon back\n"));
            Assert.Contains("the daemon is lost; restarting it", cluster.AgentLog(primary), StringComparison.Ordinal);
            await disk.WriteAsync(5);
            await WaitForImageAsync(cluster, secondary, disk, 1, 2, 3, 4, 5, 6);
            await disk.AssertReadsAsync(1, 2, 3, 4, 5, 6);

            await stop.CancelAsync();
            ClientRecord record = await client;
            timings.Add($"the client throughout: {record.Answered} requests answered, {record.Unanswered.Count} not, longest pause {record.LongestPause.TotalSeconds:0.0} s");
            // Every failover is a bounded pause, never the end, and the protected VM between the steps answers every request.
            // A request started up to one timeout before a fault can be caught by it; the step's end is checked
            // every 200 ms, so the client may see the recovery up to 2 s after the test does.
            var outside = record.Unanswered
                .Where(at => !disruptions.Any(d => at >= d.From - RequestTimeout && at <= d.To + TimeSpan.FromSeconds(2)))
                .ToList();
            Assert.True(
                outside.Count == 0,
                $"{outside.Count} requests unanswered outside a failover or re-protection, at {string.Join(", ", outside.Select(at => at.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)))} s; steps {string.Join(", ", disruptions.Select(d => $"{d.From.TotalSeconds:0.0}-{d.To.TotalSeconds:0.0}"))} s");
            Assert.True(record.Answered > 0 && record.LongestPause < LongestPause, $"the client waited {record.LongestPause} for an answer");
        }
        catch
        {
            output.WriteLine(cluster.Diagnostics());
            throw;
        }
        finally
        {
            await stop.CancelAsync();
            await client;
            output.WriteLine("what the agent said:\n" + string.Join('\n', ColoCluster.Nodes.Select(node => $"--- {node}\n{cluster.AgentLog(node)}")));
            output.WriteLine("timings (this 2-core machine, TCG):\n  " + string.Join("\n  ", timings));
        }
    }

    /// <summary>crm_mon shows the roles, QEMU is in COLO on both, a 16 MiB download arrives intact and the daemon compared it.</summary>
    private async Task AssertProtectedAsync(ColoCluster cluster, HttpClient http, byte[] payload, string primary, string secondary)
    {
        string status = await cluster.ClusterStatusAsync(primary);
        Assert.Contains($"Promoted: [ {primary} ]", status, StringComparison.Ordinal);
        Assert.Contains($"Unpromoted: [ {secondary} ]", status, StringComparison.Ordinal);
        Assert.Contains("\"mode\":\"primary\"", await cluster.QmpAsync(primary, "query-colo-status"), StringComparison.Ordinal);
        Assert.Contains("\"mode\":\"secondary\"", await cluster.QmpAsync(secondary, "query-colo-status"), StringComparison.Ordinal);
        long before = DaemonSummary.Last(CurrentDaemonLog(cluster, primary))?.Compared ?? 0;
        Assert.Equal(payload, await http.GetByteArrayAsync(Url(cluster, "/payload.bin")));
        DaemonSummary after = await DaemonSummary.NextAsync(() => CurrentDaemonLog(cluster, primary), TimeSpan.FromSeconds(30), cluster.Diagnostics);
        output.WriteLine($"{primary}'s daemon: {after}");
        // 16 MiB is ~11,600 full-size frames: most of them compared, none of the primary's dropped.
        Assert.True(after.Compared - before >= 10_000, $"the daemon compared {after.Compared - before} frames of a 16 MiB download");
        Assert.Equal(0, after.PrimaryDropped);
    }

    /// <summary>How often the agent on a primary has left COLO (for a lost secondary, whichever way it noticed).</summary>
    private static int Left(string agentLog) =>
        agentLog.Split("stopped: leaving COLO").Length + agentLog.Split("COLO is not running").Length + agentLog.Split("left the cluster: leaving COLO").Length;

    /// <summary>The running daemon's part of daemon.log: the agent writes each start's command line before it.</summary>
    private static string CurrentDaemonLog(ColoCluster cluster, string node)
    {
        string log = cluster.StateFile(node, "daemon.log");
        int start = log.LastIndexOf("/colo-compare -chardev ", StringComparison.Ordinal);
        return start < 0 ? log : log[start..];
    }

    private static Task WaitForProtectedAsync(ColoCluster cluster, string primary, string secondary) =>
        WaitForAsync(cluster, async () =>
            (await cluster.QmpAsync(primary, "query-colo-status")).Contains("\"mode\":\"primary\"", StringComparison.Ordinal)
            && (await cluster.ClusterStatusAsync(primary)).Contains($"Unpromoted: [ {secondary} ]", StringComparison.Ordinal), "COLO running again");

    /// <summary>A checkpoint now (x-checkpoint-delay set again), so that the VM's TCP state is on the secondary.</summary>
    private static async Task CheckpointAsync(ColoCluster cluster, string primary)
    {
        string before = cluster.StateFile(primary, "daemon.log");
        int count = before.Split("checkpoint completed").Length;
        (int code, string reply) = await cluster.ExecAsync(primary, Path.Combine(AppContext.BaseDirectory, "colo-compare"), "qmp", "unix:/run/colo-ha/vm1/qmp.sock", "migrate-set-parameters", """{"x-checkpoint-delay":20000}""");
        Assert.True(code == 0, reply);
        await WaitForAsync(cluster, () => Task.FromResult(cluster.StateFile(primary, "daemon.log").Split("checkpoint completed").Length > count), "a checkpoint");
    }

    /// <summary>Waits until a node's own disk image holds what the guest wrote at each slot.</summary>
    private static async Task WaitForImageAsync(ColoCluster cluster, string node, GuestDisk disk, params int[] slots)
    {
        var stopwatch = Stopwatch.StartNew();
        while (slots.Any(slot => cluster.DiskImageSlot(node, slot) != disk.Written[slot]))
        {
            if (stopwatch.Elapsed > TimeSpan.FromSeconds(20))
            {
                string found = string.Join(", ", slots.Select(slot => $"{slot}: '{cluster.DiskImageSlot(node, slot)}' (written '{disk.Written[slot]}')"));
                throw new Xunit.Sdk.XunitException($"{node}'s disk image does not hold what the guest wrote: {found}\n{cluster.Diagnostics()}");
            }

            await Task.Delay(200);
        }
    }

    /// <summary>The guest's disk through its /cgi-bin/disk: a fresh random text per write, read back from the device.</summary>
    private sealed class GuestDisk(HttpClient http, Uri cgi)
    {
        public Dictionary<int, string> Written { get; } = [];

        public async Task WriteAsync(int slot)
        {
            string text = "t" + Convert.ToHexString(RandomNumberGenerator.GetBytes(8));
            Assert.Equal($"disk {slot} {text}\n", await http.GetStringAsync(new Uri($"{cgi}?{slot}={text}")));
            Written[slot] = text;
        }

        public async Task AssertReadsAsync(params int[] slots)
        {
            foreach (int slot in slots)
            {
                Assert.Equal($"disk {slot} {Written[slot]}\n", await http.GetStringAsync(new Uri($"{cgi}?{slot}")));
            }
        }
    }

    /// <summary>What the polling client saw: answers, when each unanswered request was sent, and its longest wait.</summary>
    private sealed record ClientRecord(int Answered, IReadOnlyList<TimeSpan> Unanswered, TimeSpan LongestPause);

    private static async Task<ClientRecord> PollAsync(ColoCluster cluster, Stopwatch clock, CancellationToken stop)
    {
        using HttpClient http = cluster.ClientNamespace.CreateHttpClient(RequestTimeout);
        int answered = 0;
        var unanswered = new List<TimeSpan>();
        TimeSpan longest = TimeSpan.Zero;
        var sinceAnswer = Stopwatch.StartNew();
        while (!stop.IsCancellationRequested)
        {
            TimeSpan sent = clock.Elapsed;
            if (await AnswersAsync(http, cluster, RequestTimeout))
            {
                answered++;
                longest = sinceAnswer.Elapsed > longest ? sinceAnswer.Elapsed : longest;
                sinceAnswer.Restart();
            }
            else
            {
                unanswered.Add(sent);
            }

            try
            {
                await Task.Delay(200, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        return new ClientRecord(answered, unanswered, longest);
    }

    private static async Task<bool> AnswersAsync(HttpClient http, ColoCluster cluster, TimeSpan timeout)
    {
        try
        {
            using var cts = new CancellationTokenSource(timeout);
            return await http.GetStringAsync(Url(cluster, "/index.html"), cts.Token) == "colochardev guest\n";
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    private static async Task<string> EchoAsync(Socket socket, string line)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        return await TcpEcho.RoundTripAsync(socket, line, cts.Token);
    }

    private static async Task WaitForAsync(ColoCluster cluster, Func<Task<bool>> condition, string what)
    {
        var stopwatch = Stopwatch.StartNew();
        while (!await condition())
        {
            if (stopwatch.Elapsed > Step)
            {
                throw new TimeoutException($"waiting {Step.TotalSeconds:0} s for {what}\n{await cluster.ClusterStatusAsync("n1")}\n{await cluster.ClusterStatusAsync("n2")}");
            }

            await Task.Delay(200);
        }
    }

    private static Uri Url(ColoCluster cluster, string path) => new($"http://{cluster.GuestAddress}{path}");

    private static string Seconds(Stopwatch stopwatch) => stopwatch.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + " s";
}
