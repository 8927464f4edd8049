using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Threading.Channels;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;

namespace ColoChardev.Demo;

/// <summary>
/// The second part of the README's demo: the same traffic through QEMU's own colo-compare (7.2, or QEMU_VERSION's) (standalone, no guest)
/// and through our colo-compare daemon, side by side. Identical, re-segmented, diverging and reordered output goes in on primary_in and
/// secondary_in; what each comparator releases on outdev is read back, parsed, checked byte for byte, and summarised
/// together with the checkpoints each asked for (DO_CHECKPOINT on notify_dev, answered with COLO_CHECKPOINT).
/// </summary>
internal static class StandaloneDemo
{
    private sealed record Target(string Name, ChardevConnection Primary, ChardevConnection Secondary, ChardevConnection Outdev, ChardevConnection Notify, Func<string> Status);

    private sealed record Scenario(string Title, byte[][] Primary, byte[][] Secondary, bool Diverges);

    private sealed record Outcome(string Scenario, List<string> Released, int CheckpointRequests, bool ByteExact);

    public static async Task<int> RunAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        CancellationToken token = timeout.Token;
        Scenario[] scenarios = Scenarios();

        Console.WriteLine($"=== {QemuBinary.Label}'s colo-compare (standalone, -M none), driven through our chardev framing ===");
        await using StandaloneColoCompare qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { NotifyDev = true });
        await using StandaloneColoComparePeers peers = await StandaloneColoComparePeers.ConnectAsync(qemu, null, token);
        var qemuTarget = new Target($"QEMU colo-compare (pid {qemu.ProcessId})", peers.Primary, peers.Secondary, peers.Outdev, peers.Notify!, () => string.Empty);
        List<Outcome> qemuOutcomes = await RunAsync(qemuTarget, scenarios, token);

        Console.WriteLine();
        Console.WriteLine("=== our colo-compare daemon, started with QEMU's own arguments (-chardev ... -object colo-compare,...) ===");
        await using DaemonRig rig = await DaemonRig.StartAsync(
            vnet: false,
            notify: true,
            ports => DaemonRig.QemuSyntax(ports.Primary, ports.Secondary, ports.Outdev, ports.Notify, string.Empty),
            token);
        var daemonTarget = new Target($"colo-compare daemon (pid {rig.Daemon.ProcessId})", rig.Primary, rig.Secondary, rig.Outdev, rig.Notify!, () =>
            rig.Daemon.Lines.LastOrDefault(l => l.Contains(" in ", StringComparison.Ordinal) && l.Contains("released", StringComparison.Ordinal)) ?? string.Empty);
        List<Outcome> daemonOutcomes = await RunAsync(daemonTarget, scenarios, token);
        int stopped = await rig.Daemon.StopAsync(TimeSpan.FromSeconds(20));
        string daemonSummary = daemonTarget.Status(); // its final summary, printed as it stopped

        Console.WriteLine();
        Console.WriteLine("=== Summary (released = frames QEMU would send out of the primary's tap; requests = checkpoints asked for) ===");
        Console.WriteLine($"{"scenario",-44} | {QemuBinary.Label + " colo-compare",-34} | {"our daemon",-34}");
        for (int i = 0; i < scenarios.Length; i++)
        {
            Console.WriteLine($"{scenarios[i].Title,-44} | {Describe(qemuOutcomes[i]),-34} | {Describe(daemonOutcomes[i]),-34}");
        }

        Console.WriteLine();
        int start = daemonSummary.IndexOf("'comp0': ", StringComparison.Ordinal);
        Console.WriteLine($"the daemon's own account: {(start >= 0 ? daemonSummary[(start + "'comp0': ".Length)..] : daemonSummary)}");
        Console.WriteLine($"daemon stopped with exit code {stopped}; QEMU (pid {qemu.ProcessId}) stopped by its PID.");
        bool ok = stopped == 0
            && qemuOutcomes.Concat(daemonOutcomes).All(o => o.ByteExact)
            && daemonOutcomes.Zip(scenarios).All(p => p.First.Released.Count == p.Second.Primary.Length && (p.First.CheckpointRequests > 0) == p.Second.Diverges);
        Console.WriteLine(ok ? "Every released frame was a byte-exact primary frame; the daemon asked for a checkpoint exactly where outputs diverged." : "SOMETHING WENT WRONG: see above.");
        return ok ? 0 : 1;
    }

    private static string Describe(Outcome o) =>
        $"{o.Released.Count} released, {o.CheckpointRequests} request{(o.CheckpointRequests == 1 ? string.Empty : "s")}{(o.Released.Count > 1 ? $" ({string.Join(' ', o.Released.Select(Short))})" : string.Empty)}";

    private static string Short(string description) => description.Split('"') is { Length: >= 2 } parts ? parts[1] : description;

    private static Scenario[] Scenarios()
    {
        static byte[] Tcp(uint seq, string payload, byte mac, ushort ipId) =>
            new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", ipId).Tcp(80, 51000, seq, 7000, TcpControlBits.Ack | TcpControlBits.Psh, Encoding.ASCII.GetBytes(payload)).Build();
        static byte[] Udp(ushort port, string payload, byte mac = 1, byte ttl = 64) =>
            new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", ttl: ttl).Udp(port, 40000, Encoding.ASCII.GetBytes(payload)).Build();
        return
        [
            new("1. identical output (MAC, TTL may differ)", [Udp(53, "answer"), new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Icmp(0, 0, 9, 1, "ping reply"u8).Build()], [Udp(53, "answer", 2, 63), new FrameBuilder().SourceMac(2).Ipv4("10.0.0.10", "10.0.0.1").Icmp(0, 0, 9, 1, "ping reply"u8).Build()], false),
            new("2. TCP 1-3 + 4-10 vs 1-10 (f449c9e549)", [Tcp(1000, "123", 1, 10), Tcp(1003, "4567890", 1, 11)], [Tcp(1000, "1234567890", 2, 500)], false),
            new("3. diverging output (random bytes)", [Udp(4000, "primary:8f3a")], [Udp(4000, "second:11c0", 2)], true),
            new("4. ARP and IPv6 (QEMU: uncompared)", [new FrameBuilder().NonIp(EtherTypes.Arp, new byte[28]).Build(), new FrameBuilder().Ipv6("fd00::10", "fd00::1").Udp(1, 2, "v6"u8).Build()], [new FrameBuilder().SourceMac(2).NonIp(EtherTypes.Arp, new byte[28]).Build(), new FrameBuilder().SourceMac(2).Ipv6("fd00::10", "fd00::1").Udp(1, 2, "v6"u8).Build()], false),
            new("5. UDP 1,2,3 with a lagging secondary", [Udp(5000, "u1"), Udp(5000, "u2"), Udp(5000, "u3")], [Udp(5000, "u1", 2), Udp(5000, "u2", 2), Udp(5000, "u3", 2)], false),
        ];
    }

    private static async Task<List<Outcome>> RunAsync(Target target, Scenario[] scenarios, CancellationToken token)
    {
        Console.WriteLine($"comparator: {target.Name}");
        var requests = Channel.CreateUnbounded<string>();
        using var stopPump = CancellationTokenSource.CreateLinkedTokenSource(token);
        Task pump = PumpNotifyAsync(target.Notify, requests.Writer, stopPump.Token);
        var outcomes = new List<Outcome>();
        var clock = Stopwatch.StartNew();
        foreach (Scenario scenario in scenarios)
        {
            Console.WriteLine($"-- {scenario.Title}");
            var sent = new List<string>();
            foreach (byte[] frame in scenario.Primary)
            {
                target.Primary.Writer.Write(frame, 0);
                sent.Add(Convert.ToHexString(frame));
                Console.WriteLine($"   primary   -> {Describe(frame)}");
            }

            await target.Primary.Writer.FlushAsync(token);
            await Task.Delay(100, token); // the primary's copies are queued before the secondary's arrive
            foreach (byte[] frame in scenario.Secondary)
            {
                target.Secondary.Writer.Write(frame, 0);
                Console.WriteLine($"   secondary -> {Describe(frame)}");
                await target.Secondary.Writer.FlushAsync(token);
                await Task.Delay(20, token);
            }

            var released = new List<string>();
            bool exact = true;
            int count = 0;
            while (released.Count < scenario.Primary.Length)
            {
                Task<ChardevFrame?> next = target.Outdev.Reader.ReadFrameAsync(token).AsTask();
                var held = Stopwatch.StartNew();
                while (await Task.WhenAny(next, Task.Delay(300, token)) != next)
                {
                    // Nothing comes out: the comparator holds it and should have asked for a checkpoint. Answer it.
                    if (requests.Reader.TryRead(out string? request))
                    {
                        count++;
                        Console.WriteLine($"   notify    <- {request}; answering COLO_CHECKPOINT (the checkpoint is done)");
                        var writer = new ChardevFrameWriter(target.Notify.Output, vnetHdrSupport: false);
                        writer.Write("COLO_CHECKPOINT"u8, 0);
                        await writer.FlushAsync(token);
                    }
                    else if (held.Elapsed > TimeSpan.FromSeconds(10))
                    {
                        throw new TimeoutException($"{target.Name} released nothing and asked for no checkpoint");
                    }
                }

                using ChardevFrame frame = (await next)!.Value;
                string text = Describe(frame.Payload.ToArray());
                released.Add(text);
                bool match = sent.Remove(Convert.ToHexString(frame.Payload));
                exact &= match;
                Console.WriteLine($"   outdev    <- {text}{(match ? string.Empty : "  NOT A PRIMARY FRAME WE SENT")} (t+{clock.ElapsedMilliseconds} ms)");
            }

            // Requests that came without holding anything back (QEMU re-asks on every mismatching arrival).
            await Task.Delay(300, token);
            while (requests.Reader.TryRead(out string? extra))
            {
                count++;
                Console.WriteLine($"   notify    <- {extra}");
            }

            outcomes.Add(new Outcome(scenario.Title, released, count, exact));
        }

        await stopPump.CancelAsync();
        try
        {
            await pump;
        }
        catch (OperationCanceledException)
        {
        }

        return outcomes;
    }

    private static async Task PumpNotifyAsync(ChardevConnection notify, ChannelWriter<string> requests, CancellationToken token)
    {
        while (await notify.Reader.ReadFrameAsync(token) is ChardevFrame frame)
        {
            using (frame)
            {
                requests.TryWrite(Encoding.ASCII.GetString(frame.Payload));
            }
        }
    }

    private static string Describe(byte[] frame)
    {
        if (!PacketParser.TryParse(frame, 0, out ParsedPacket packet))
        {
            return $"malformed ({packet.Malformed}), {frame.Length} bytes";
        }

        if (!packet.IsIp)
        {
            return $"ethertype 0x{packet.EtherType:x4}, {frame.Length} bytes \"arp\"";
        }

        string extra = packet.Protocol == IpProtocol.Tcp ? string.Create(CultureInfo.InvariantCulture, $" seq {packet.TcpSeq}") : string.Empty;
        string payload = Encoding.ASCII.GetString(frame, packet.PayloadOffset, packet.PayloadLength);
        return $"{packet.Flow}{extra} \"{payload}\"";
    }
}
