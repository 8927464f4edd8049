using System.Buffers.Binary;
using System.Text.Json;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.Testbed;
using Xunit.Abstractions;

namespace ColoChardev.Integration;

/// <summary>
/// A primary that runs ahead of its secondary, without flow control, until the queues near their budget: reading
/// primary_in pauses (its sender blocks, as QEMU's redirector would) while the secondary catches up, so no primary
/// frame is dropped; a pause in which nothing drains ends after --queue-stall-ms, and only then are frames dropped,
/// each counted. Scripted peers: real QEMU cannot be made to lag on cue (the real pair's run is in docs/performance.md).
/// </summary>
public sealed class QueueBackPressureTests(ITestOutputHelper output) : IDisposable
{
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromMinutes(3));
    private readonly string _directory = FreePort.TempSocketDirectory();

    public void Dispose()
    {
        _timeout.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private CancellationToken Token => _timeout.Token;

    private string Control => Path.Combine(_directory, "control.sock");

    [Fact]
    public async Task A_secondary_that_lags_pauses_primary_in_and_not_one_primary_frame_is_dropped_over_two_primary_connections()
    {
        // A 2 MiB budget holds ~1,300 of these frames; max_queue_size and compare_timeout are out of the way, so the
        // budget is the only limit. Without the pause the primary gets 6,000 frames ahead and ~4,700 are dropped.
        // There is no checkpoint channel here, so a stall could only end in drops: --queue-stall-ms is long enough
        // for a loaded machine's timers (the secondary's 10 ms pauses were seen to last up to ~200 ms).
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, ["--max-queue-size", "100000", "--compare-timeout", "60000"]), Token, ["--queue-budget-mb", "2", "--queue-stall-ms", "2000", "--control", Control]);
        const int Frames = 6000;
        ChardevConnection primary = rig.Primary;
        for (int round = 0; round < 2; round++)
        {
            if (round == 1)
            {
                // The primary's peer goes and a new one comes (a QEMU restart): the next round goes through it alike.
                await primary.DisposeAsync();
                primary = await rig.PrimaryServer.ConnectAsync(Token).AsTask().WaitAsync(TimeSpan.FromSeconds(30), Token);
            }

            int first = round * Frames;
            Task sendingPrimary = SendAsync(rig, primary, first, Frames, mac: 1, pauseMs: 0);
            Task sendingSecondary = SendAsync(rig, rig.Secondary, first, Frames, mac: 2, pauseMs: 10);
            List<int> received = await ReceiveAsync(rig, Frames);

            await Task.WhenAll(sendingPrimary, sendingSecondary).WaitAsync(TimeSpan.FromSeconds(30), Token);
            Assert.Equal(Enumerable.Range(first, Frames), received);
        }

        JsonElement stats = await StatsAsync();
        Assert.Equal(0, stats.GetProperty("primary-dropped").GetInt64());
        Assert.Equal(2 * Frames, stats.GetProperty("outdev-written").GetInt64());
        Assert.True(stats.GetProperty("queue-pauses").GetProperty("primary_in").GetInt64() >= 2, "primary_in was not paused in each round: " + stats);
        Assert.Equal(0, stats.GetProperty("queue-stalls").GetProperty("primary_in").GetInt64());
        output.WriteLine($"lagging secondary: queue pauses {stats.GetProperty("queue-pauses")}, {stats.GetProperty("queue-paused-ms")} ms paused, peak RSS {ProcessMetrics.PeakResidentBytes(rig.Daemon.ProcessId) >> 20} MiB");
    }

    [Fact]
    public async Task A_pause_in_which_nothing_drains_ends_after_stall_ms_then_drops_are_counted_and_a_checkpoint_empties_the_queues()
    {
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: true, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, ports.Notify, ["--max-queue-size", "100000", "--compare-timeout", "60000"]), Token, ["--queue-budget-mb", "2", "--queue-stall-ms", "300", "--control", Control]);
        const int Frames = 3000;

        // The secondary sends nothing: the pause cannot end by matches, so it ends by the stall timer, which asks for
        // a checkpoint; this one is not answered yet, so the sender gets through and frames beyond the budget are
        // dropped, counted (QueueBudget).
        await SendAsync(rig, rig.Primary, 0, Frames, mac: 1, pauseMs: 0).WaitAsync(TimeSpan.FromSeconds(30), Token);
        string stalled = await rig.Daemon.WaitForLineAsync("primary_in's queue did not shrink", TimeSpan.FromSeconds(10));
        Assert.Contains("pause for the queue budget: a checkpoint is requested", stalled, StringComparison.Ordinal);
        Assert.Equal("DO_CHECKPOINT", await rig.ReadNotifyAsync());
        string summary = await rig.Daemon.WaitForLineAsync($"in {Frames}/0 frames", TimeSpan.FromSeconds(10));
        JsonElement stats = await StatsAsync();
        long dropped = stats.GetProperty("primary-dropped-by").GetProperty("QueueBudget").GetInt64();
        long queued = stats.GetProperty("primary-queued").GetInt64();
        Assert.True(dropped > 0, summary);
        Assert.Equal(Frames, queued + dropped);
        Assert.Equal(1, stats.GetProperty("queue-stalls").GetProperty("primary_in").GetInt64());
        Assert.True(stats.GetProperty("queue-pauses").GetProperty("primary_in").GetInt64() >= 1);

        // The checkpoint completes: what was queued is released in order, and the queues are empty again.
        await rig.SendNotifyAsync("COLO_CHECKPOINT");
        List<int> released = await ReceiveAsync(rig, (int)queued);
        Assert.Equal(released.Order(), released);

        // A new primary peer and the secondary, in step: everything is compared and released, nothing more dropped.
        await rig.Primary.DisposeAsync();
        await using ChardevConnection again = await rig.PrimaryServer.ConnectAsync(Token).AsTask().WaitAsync(TimeSpan.FromSeconds(30), Token);
        Task primary = SendAsync(rig, again, Frames, 1000, mac: 1, pauseMs: 0);
        Task secondary = SendAsync(rig, rig.Secondary, Frames, 1000, mac: 2, pauseMs: 0);
        Assert.Equal(Enumerable.Range(Frames, 1000), await ReceiveAsync(rig, 1000));
        await Task.WhenAll(primary, secondary);
        JsonElement after = await StatsAsync();
        Assert.Equal(dropped, after.GetProperty("primary-dropped").GetInt64());
        Assert.Equal(1000, after.GetProperty("released-by").GetProperty("Matched").GetInt64());
        output.WriteLine($"stalled pause: {dropped} dropped (QueueBudget), {queued} released by the checkpoint; then 1,000 pairs compared, queue pauses {after.GetProperty("queue-pauses")}");
    }

    [Fact]
    public async Task A_checkpoint_request_resumes_a_paused_primary_at_once_since_qemu_makes_no_checkpoint_while_its_redirector_waits()
    {
        // The secondary sends nothing; compare_timeout (1 s) asks for a checkpoint while primary_in is paused, long
        // before --queue-stall-ms (10 s). The hypervisor here behaves as QEMU was measured to: the primary's sender
        // answers DO_CHECKPOINT only between its own writes, so while its write waits on us it answers nothing (QEMU's
        // main loop, its monitor and its checkpoints wait with its redirector). Reading must resume at the request.
        // What the kernel held back during the pause then comes at once (up to ~10 MB on TCP loopback) and lands in
        // the quarter of the budget kept for it: the default 64 MiB budget here, for that reason.
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: true, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, ports.Notify, ["--max-queue-size", "100000", "--compare-timeout", "1000", "--expired-scan-cycle", "100"]), Token, ["--queue-stall-ms", "10000", "--control", Control]);
        const int Frames = 45_000;
        var requests = System.Threading.Channels.Channel.CreateUnbounded<string>();
        using var listening = CancellationTokenSource.CreateLinkedTokenSource(Token);
        Task listen = ListenForRequestsAsync(rig, requests.Writer, listening.Token);
        Task sending = SendAnsweringBetweenWritesAsync(rig, requests.Reader, Frames, listening.Token);
        List<int> received = await ReceiveAsync(rig, Frames);
        await listening.CancelAsync();
        await Task.WhenAll(listen, sending);

        Assert.Equal(Enumerable.Range(0, Frames), received);
        JsonElement stats = await StatsAsync();
        Assert.Equal(0, stats.GetProperty("primary-dropped").GetInt64());
        Assert.True(stats.GetProperty("queue-pauses").GetProperty("primary_in").GetInt64() >= 1, stats.ToString());
        Assert.Equal(0, stats.GetProperty("queue-stalls").GetProperty("primary_in").GetInt64());
        Assert.True(stats.GetProperty("released-by").GetProperty("Checkpoint").GetInt64() > 0, stats.ToString());
        output.WriteLine($"checkpoint during a pause: queue pauses {stats.GetProperty("queue-pauses")}, {stats.GetProperty("queue-paused-ms")} ms paused, released by checkpoint {stats.GetProperty("released-by").GetProperty("Checkpoint")}, checkpoints {stats.GetProperty("checkpoints")}");
    }

    /// <summary>Hands every notify_dev message to <paramref name="requests"/>.</summary>
    private static async Task ListenForRequestsAsync(DaemonRig rig, System.Threading.Channels.ChannelWriter<string> requests, CancellationToken token)
    {
        try
        {
            while (true)
            {
                using ChardevFrame frame = (await rig.Notify!.Reader.ReadFrameAsync(token)) ?? throw new EndOfStreamException();
                requests.TryWrite(System.Text.Encoding.ASCII.GetString(frame.Payload));
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Primary frames in batches of 100; between writes (never during one) DO_CHECKPOINT is answered, and after the last, until cancelled.</summary>
    private static async Task SendAnsweringBetweenWritesAsync(DaemonRig rig, System.Threading.Channels.ChannelReader<string> requests, int count, CancellationToken token)
    {
        for (int i = 0; i < count; i += 100)
        {
            await rig.SendAsync(rig.Primary, [.. Enumerable.Range(i, Math.Min(100, count - i)).Select(n => Frame(n, mac: 1))]);
            await AnswerAsync();
        }

        try
        {
            while (await requests.WaitToReadAsync(token))
            {
                await AnswerAsync();
            }
        }
        catch (OperationCanceledException)
        {
        }

        async Task AnswerAsync()
        {
            while (requests.TryRead(out string? request))
            {
                Assert.Equal("DO_CHECKPOINT", request);
                await rig.SendNotifyAsync("COLO_CHECKPOINT");
            }
        }
    }

    /// <summary>Frames first .. first+count-1 in batches of 100, <paramref name="pauseMs"/> apart.</summary>
    private static async Task SendAsync(DaemonRig rig, ChardevConnection connection, int first, int count, byte mac, int pauseMs)
    {
        for (int i = first; i < first + count; i += 100)
        {
            await rig.SendAsync(connection, [.. Enumerable.Range(i, Math.Min(100, first + count - i)).Select(n => Frame(n, mac))]);
            if (pauseMs > 0)
            {
                await Task.Delay(pauseMs);
            }
        }
    }

    /// <summary>The numbers of the next <paramref name="count"/> released frames (DaemonRig's reader: a timeout quotes the daemon).</summary>
    private static async Task<List<int>> ReceiveAsync(DaemonRig rig, int count) =>
        [.. (await rig.ReadReleasedAsync(count, seconds: 60)).Select(hex => BinaryPrimitives.ReadInt32BigEndian(Convert.FromHexString(hex).AsSpan(42)))];

    /// <summary>A 1,400-byte UDP payload whose first four bytes number it; one flow, so order is checked for every frame.</summary>
    private static byte[] Frame(int n, byte mac)
    {
        byte[] payload = new byte[1400];
        BinaryPrimitives.WriteInt32BigEndian(payload, n);
        return new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", mac).Udp(1000, 9, payload).Build();
    }

    private async Task<JsonElement> StatsAsync()
    {
        await using ControlSocketClient control = await ControlSocketClient.ConnectAsync(Control, Token);
        return (await control.ExecuteAsync("query-stats")).GetProperty("nics")[0].Clone();
    }
}
