using System.Diagnostics;
using System.Text.Json;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.Testbed;
using Xunit.Abstractions;

namespace ColoChardev.Integration;

/// <summary>
/// Overload: senders without flow control and an outdev reader slower than they are. Back-pressure first (the inputs
/// are paused, so QEMU's redirectors block and the guests slow down), drops only when outdev takes nothing for
/// <c>--outdev-stall-ms</c>, each one counted with its reason; and what is held for a disconnected outdev is bounded in age.
/// </summary>
public sealed class OutdevBackPressureTests(ITestOutputHelper output) : IDisposable
{
    private const int Frames = 20_000;

    /// <summary>--outdev-hold-ms for the no-peer test: longer than the daemon's longest reconnect pause (1 s).</summary>
    private const int HoldMs = 2500;
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
    public async Task A_slow_outdev_reader_pauses_the_inputs_and_not_one_released_frame_is_dropped()
    {
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, []), Token, ["--outdev-backlog-mb", "1", "--control", Control]);

        // 20,000 matching 1,400-byte pairs (28 MB) sent as fast as the daemon takes them; outdev read in bursts of 100
        // frames with a 5 ms pause between them, several times slower than the senders.
        Task<(double LongestSendMs, int Sent)> sending = SendPairsAsync(rig, Frames);
        var received = new List<int>(Frames);
        using var read = CancellationTokenSource.CreateLinkedTokenSource(Token);
        read.CancelAfter(TimeSpan.FromSeconds(120));
        long peakRss = 0;
        while (received.Count < Frames)
        {
            ChardevFrame? next;
            try
            {
                next = await rig.Outdev.Reader.ReadFrameAsync(read.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"{received.Count} of {Frames} frames arrived; {await StatsAsync()}; the daemon said:\n{rig.Daemon.Output}");
            }

            using ChardevFrame frame = next ?? throw new EndOfStreamException();
            received.Add(Sequence(frame.Payload));
            if (received.Count % 100 == 0)
            {
                await Task.Delay(5, Token);
                peakRss = Math.Max(peakRss, ProcessMetrics.ResidentBytes(rig.Daemon.ProcessId));
            }
        }

        (double longestSend, _) = await sending;

        // Everything arrived, once, in order (one flow per 50 ports; order is kept per flow, and these are all in order).
        Assert.Equal(Enumerable.Range(0, Frames), received);
        JsonElement stats = await StatsAsync();
        Assert.Equal(0, stats.GetProperty("outdev-dropped").GetInt64());
        Assert.Equal(0, stats.GetProperty("outdev-lost").GetInt64());
        Assert.Equal(0, stats.GetProperty("outdev-stalls").GetInt64());
        Assert.True(stats.GetProperty("outdev-pauses").GetInt64() > 0, "the inputs were never paused: " + stats);
        output.WriteLine($"slow reader: {stats.GetProperty("outdev-pauses")} pauses, {stats.GetProperty("outdev-paused-ms")} ms paused in all, longest send {longestSend:F0} ms, peak RSS {peakRss / (1024 * 1024)} MiB");

        // Memory stays within the budgets (64 MiB queue, the 1 MiB backlog given here) plus 64 MiB.
        Assert.True(ProcessMetrics.PeakResidentBytes(rig.Daemon.ProcessId) <= (64L + 1 + 64) << 20, $"peak RSS {ProcessMetrics.PeakResidentBytes(rig.Daemon.ProcessId) >> 20} MiB");
    }

    [Fact]
    public async Task A_reader_that_stops_pauses_the_inputs_until_stall_ms_then_drops_are_counted_and_the_likely_cause_is_named()
    {
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, []), Token, ["--outdev-backlog-mb", "1", "--outdev-stall-ms", "500", "--control", Control]);

        // Outdev is connected and never read, as QEMU's filter-redirector that went deaf after a reconnect (spec §1.4).
        (double longestSend, _) = await SendPairsAsync(rig, Frames).WaitAsync(TimeSpan.FromSeconds(60), Token);
        string summary = await rig.Daemon.WaitForLineAsync($"in {Frames}/{Frames}", TimeSpan.FromSeconds(30));
        Assert.Contains($"released {Frames}", summary, StringComparison.Ordinal);
        string stalled = await rig.Daemon.WaitForLineAsync("outdev took no bytes for", TimeSpan.FromSeconds(10));
        Assert.Contains("is connected but does not read", stalled, StringComparison.Ordinal);
        Assert.Contains("--restore-redirector", stalled, StringComparison.Ordinal);

        JsonElement stats = await StatsAsync();
        long dropped = stats.GetProperty("outdev-dropped-by").GetProperty("BacklogFull").GetInt64();
        Assert.True(dropped > 0, stats.ToString());
        Assert.True(stats.GetProperty("outdev-stalls").GetInt64() >= 1, stats.ToString());
        long held = stats.GetProperty("outdev-backlog-frames").GetInt64();
        long written = stats.GetProperty("outdev-written").GetInt64();
        Assert.Equal(Frames, written + dropped + held);
        using (var process = Process.GetProcessById(rig.Daemon.ProcessId))
        {
            output.WriteLine($"stopped reader: longest send {longestSend:F0} ms, {dropped} dropped, {held} held, {written} written, RSS {process.WorkingSet64 / (1024 * 1024)} MiB");
        }

        // The reader comes back: what was held arrives, the daemon says outdev recovered, and new traffic flows without loss.
        int arrived = 0;
        using (var drain = new CancellationTokenSource(TimeSpan.FromSeconds(2)))
        {
            try
            {
                while (true)
                {
                    using ChardevFrame frame = (await rig.Outdev.Reader.ReadFrameAsync(drain.Token)) ?? throw new EndOfStreamException();
                    arrived++;
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        Assert.True(arrived > 0);
        await rig.Daemon.WaitForLineAsync("outdev takes bytes again", TimeSpan.FromSeconds(10));
        await rig.SendPrimaryAsync(Frame(Frames, mac: 1));
        await rig.SendSecondaryAsync(Frame(Frames, mac: 2));
        Assert.Single(await rig.ReadReleasedAsync(1));
    }

    [Fact]
    public async Task Frames_released_while_outdev_has_no_peer_wait_for_the_next_one_for_hold_ms_and_no_longer()
    {
        await using DaemonRig rig = await DaemonRig.StartAsync(vnet: false, notify: false, ports => DaemonRig.PlainSyntax(ports.Primary, ports.Secondary, ports.Outdev, 0, []), Token, ["--outdev-hold-ms", HoldMs.ToString(System.Globalization.CultureInfo.InvariantCulture), "--control", Control]);
        // Outdev's peer goes away altogether (connection and listener, as when the primary QEMU restarts).
        await rig.Outdev.DisposeAsync();
        await rig.OutdevServer.DisposeAsync();

        // Released with nobody on outdev, then too long without one: dropped, counted as expired, said in the log.
        await rig.SendPrimaryAsync(Frame(1, mac: 1), Frame(2, mac: 1));
        await rig.SendSecondaryAsync(Frame(1, mac: 2), Frame(2, mac: 2));
        await rig.Daemon.WaitForLineAsync($"waited more than {HoldMs} ms for an outdev peer", TimeSpan.FromSeconds(10));
        JsonElement stats = await StatsAsync();
        Assert.Equal(2, stats.GetProperty("outdev-dropped-by").GetProperty("Expired").GetInt64());
        Assert.Equal(0, stats.GetProperty("outdev-backlog-frames").GetInt64());

        // Released just before a peer returns: it gets them. (The daemon, a client here, retries at most a second apart,
        // so the hold is longer than that: with 400 ms a slow machine saw frame 3 expire before the reconnect.)
        await rig.SendPrimaryAsync(Frame(3, mac: 1));
        await rig.SendSecondaryAsync(Frame(3, mac: 2));
        await using var server = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=compare_out,host=127.0.0.1,port={rig.OutdevPort},server=on,wait=off"));
        server.StartListening();
        await using ChardevConnection outdev = await server.ConnectAsync(Token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Token);
        using var read = CancellationTokenSource.CreateLinkedTokenSource(Token);
        read.CancelAfter(TimeSpan.FromSeconds(10));
        using ChardevFrame frame = (await outdev.Reader.ReadFrameAsync(read.Token)) ?? throw new EndOfStreamException();
        Assert.Equal(3, Sequence(frame.Payload));
        Assert.Equal(2, (await StatsAsync()).GetProperty("outdev-dropped").GetInt64());
    }

    /// <summary>Matching UDP pairs, primary and secondary side by side, as fast as the daemon reads; the longest single send.</summary>
    private static async Task<(double LongestSendMs, int Sent)> SendPairsAsync(DaemonRig rig, int count)
    {
        double longest = 0;
        var clock = new Stopwatch();
        for (int i = 0; i < count; i += 100)
        {
            byte[][] primary = [.. Enumerable.Range(i, 100).Select(n => Frame(n, mac: 1))];
            byte[][] secondary = [.. Enumerable.Range(i, 100).Select(n => Frame(n, mac: 2))];
            clock.Restart();
            await rig.SendPrimaryAsync(primary);
            await rig.SendSecondaryAsync(secondary);
            longest = Math.Max(longest, clock.Elapsed.TotalMilliseconds);
        }

        return (longest, count);
    }

    /// <summary>A 1,400-byte UDP payload whose first four bytes number it; one flow per source port, 50 of them.</summary>
    private static byte[] Frame(int n, byte mac)
    {
        byte[] payload = new byte[1400];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(payload, n);
        return new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", mac).Udp((ushort)(1000 + (n % 50)), 9, payload).Build();
    }

    private static int Sequence(ReadOnlySpan<byte> frame) => System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(frame[42..]);

    private async Task<JsonElement> StatsAsync()
    {
        await using ControlSocketClient control = await ControlSocketClient.ConnectAsync(Control, Token);
        return (await control.ExecuteAsync("query-stats")).GetProperty("nics")[0].Clone();
    }
}
