using System.Diagnostics;
using System.Text;
using System.Text.Json;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;
using Xunit.Abstractions;

namespace ColoChardev.Integration;

/// <summary>
/// The fault suite's peer churn: one long-lived daemon whose peers come and go on every chardev, the daemon as server
/// and as client, over TCP and Unix sockets. Each round sends matching TCP and UDP pairs on fresh flows, then a
/// mismatch whose checkpoint is asked for on notify_dev and answered; nothing may be lost, every flow leaves in order.
/// Peers leave with an orderly close and, every other round, with a TCP reset.
/// </summary>
public sealed class PeerChurnTests(ITestOutputHelper output) : IDisposable
{
    private const int AllSocketRounds = 20;
    private const int SingleSocketRounds = 4;
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromMinutes(5));
    private readonly Dictionary<string, List<double>> _returns = [];
    private int _flow;

    public void Dispose() => _timeout.Dispose();

    private CancellationToken Token => _timeout.Token;

    public static TheoryData<ChurnMode> Modes => new() { ChurnMode.DaemonServesTcp, ChurnMode.DaemonServesUnix, ChurnMode.DaemonConnectsTcp, ChurnMode.DaemonConnectsUnix };

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Every_chardev_survives_its_peers_coming_and_going_and_nothing_is_lost(ChurnMode mode)
    {
        await using ChurnRig rig = await ChurnRig.StartAsync(mode, ",compare_timeout=60000", [], Token);
        long sent = 0;

        // Connect-all, traffic, close-all: every peer leaves together, as when a pair is restarted.
        for (int round = 0; round < AllSocketRounds; round++)
        {
            if (round > 0)
            {
                var clock = Stopwatch.StartNew();
                await rig.ConnectAllAsync(Token);
                sent += await RoundAsync(rig, checkpoint: round % 2 == 0, clock, null);
            }
            else
            {
                sent += await RoundAsync(rig, checkpoint: true, null, null);
            }

            // Odd rounds leave as a crashed peer does (a TCP RST), even rounds with an orderly close.
            await rig.CloseAllAsync(reset: round % 2 == 1);
        }

        await rig.ConnectAllAsync(Token);

        // One peer alone restarts while the others stay: each of the four, several times.
        foreach (ChardevRole role in ChurnRig.Roles)
        {
            for (int round = 0; round < SingleSocketRounds; round++)
            {
                await rig.CloseAsync(role, reset: round % 2 == 1);
                if (role == ChardevRole.OutDev)
                {
                    // Released while outdev has no peer: held for the next one (within --outdev-hold-ms).
                    (List<byte[]> primary, List<byte[]> secondary) = Pairs();
                    await rig.SendAsync(ChardevRole.PrimaryIn, primary);
                    await rig.SendAsync(ChardevRole.SecondaryIn, secondary);
                    await Task.Delay(50, Token);
                    var clock = Stopwatch.StartNew();
                    await rig.ConnectAsync(role, Token);
                    AssertReleasedInOrder(primary, await rig.ReadOutdevAsync(primary.Count));
                    Record(role.ToString(), clock);
                    sent += primary.Count;
                    sent += await RoundAsync(rig, checkpoint: false, null, null);
                }
                else
                {
                    var clock = Stopwatch.StartNew();
                    await rig.ConnectAsync(role, Token);
                    sent += await RoundAsync(rig, checkpoint: role == ChardevRole.NotifyDev || round == 0, clock, role);
                }
            }
        }

        // The daemon's own accounting agrees: everything accepted was released, written to outdev, nothing dropped.
        await using ControlSocketClient control = await ControlSocketClient.ConnectAsync(rig.ControlPath, Token);
        JsonElement nic = (await control.ExecuteAsync("query-stats")).GetProperty("nics")[0];
        Assert.Equal(sent, nic.GetProperty("primary-in").GetInt64());
        Assert.Equal(sent, nic.GetProperty("released").GetInt64());
        Assert.Equal(sent, nic.GetProperty("outdev-written").GetInt64());
        Assert.Equal(0, nic.GetProperty("outdev-dropped").GetInt64());
        Assert.Equal(0, nic.GetProperty("outdev-lost").GetInt64());
        Assert.False(rig.Daemon.HasExited, rig.Daemon.Output);
        foreach ((string what, List<double> times) in _returns)
        {
            times.Sort();
            output.WriteLine($"{mode}, {what} back: peer's return to its first released frame, ms: median {times[times.Count / 2]:F1}, max {times[^1]:F1} ({times.Count} returns)");
        }

        Assert.Equal(0, await rig.Daemon.StopAsync(TimeSpan.FromSeconds(20)));
    }

    /// <summary>
    /// Matching TCP and UDP on fresh flows, released in order; with <paramref name="checkpoint"/> also a UDP mismatch:
    /// held, DO_CHECKPOINT on notify_dev, released at COLO_CHECKPOINT. Returns the primary frames sent.
    /// </summary>
    private async Task<int> RoundAsync(ChurnRig rig, bool checkpoint, Stopwatch? sinceReturn, ChardevRole? returned)
    {
        (List<byte[]> primary, List<byte[]> secondary) = Pairs();
        await rig.SendAsync(ChardevRole.PrimaryIn, primary);
        await rig.SendAsync(ChardevRole.SecondaryIn, secondary);
        List<byte[]> released = await rig.ReadOutdevAsync(primary.Count);
        if (sinceReturn is not null)
        {
            Record(returned?.ToString() ?? "all four", sinceReturn);
        }

        AssertReleasedInOrder(primary, released);
        if (!checkpoint)
        {
            return primary.Count;
        }

        ushort port = NextPort();
        byte[] diverging = Udp(port, "primary says", 1);
        await rig.SendAsync(ChardevRole.PrimaryIn, [diverging]);
        await rig.SendAsync(ChardevRole.SecondaryIn, [Udp(port, "second says", 2)]);
        Assert.Equal("DO_CHECKPOINT", await rig.ReadNotifyAsync());
        Assert.True(await rig.OutdevQuietAsync(0.05));
        await rig.SendNotifyAsync("COLO_CHECKPOINT");
        Assert.Equal(Convert.ToHexString(diverging), Convert.ToHexString(Assert.Single(await rig.ReadOutdevAsync(1))));
        return primary.Count + 1;
    }

    private void Record(string what, Stopwatch clock)
    {
        if (!_returns.TryGetValue(what, out List<double>? times))
        {
            _returns[what] = times = [];
        }

        times.Add(clock.Elapsed.TotalMilliseconds);
    }

    /// <summary>Three TCP segments and three UDP datagrams on two fresh flows, as each guest sends them.</summary>
    private (List<byte[]> Primary, List<byte[]> Secondary) Pairs()
    {
        ushort tcp = NextPort();
        ushort udp = NextPort();
        var primary = new List<byte[]>();
        var secondary = new List<byte[]>();
        uint seq = 1000;
        for (int i = 0; i < 3; i++)
        {
            string text = $"segment {i} of flow {tcp}";
            primary.Add(Tcp(tcp, seq, text, 1));
            secondary.Add(Tcp(tcp, seq, text, 2));
            seq += (uint)text.Length;
            primary.Add(Udp(udp, $"datagram {i}", 1));
            secondary.Add(Udp(udp, $"datagram {i}", 2));
        }

        return (primary, secondary);
    }

    private ushort NextPort() => (ushort)(1024 + (Interlocked.Increment(ref _flow) % 60000));

    private static void AssertReleasedInOrder(List<byte[]> sent, List<byte[]> released)
    {
        // Flows may interleave differently; within a flow the order is the guest's.
        Assert.Equal(sent.Select(Convert.ToHexString).Order(), released.Select(Convert.ToHexString).Order());
        foreach (ushort port in sent.Select(SourcePort).Distinct())
        {
            Assert.Equal(sent.Where(f => SourcePort(f) == port).Select(Convert.ToHexString), released.Where(f => SourcePort(f) == port).Select(Convert.ToHexString));
        }
    }

    private static ushort SourcePort(byte[] frame) => (ushort)((frame[34] << 8) | frame[35]);

    private static byte[] Tcp(ushort port, uint seq, string payload, byte mac) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", mac).Tcp(port, 40000, seq, 900, TcpControlBits.Ack | TcpControlBits.Psh, Encoding.ASCII.GetBytes(payload)).Build();

    private static byte[] Udp(ushort port, string payload, byte mac) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", mac).Udp(port, 40000, Encoding.ASCII.GetBytes(payload)).Build();
}
