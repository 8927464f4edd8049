using System.Diagnostics;
using System.Globalization;
using System.Text;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;

namespace ColoChardev.Demo;

/// <summary>
/// The README's demo until the daemon exists: our chardev framing, endpoints and packet parser driving QEMU 7.2's
/// own colo-compare (standalone, no guest). Identical, re-segmented and diverging traffic goes in on primary_in and
/// secondary_in; what QEMU releases on outdev is read back, parsed and summarised.
/// </summary>
public static class Program
{
    public static async Task<int> Main()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        CancellationToken token = timeout.Token;
        var clock = Stopwatch.StartNew();
        await using StandaloneColoCompare qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { NotifyDev = true });
        Console.WriteLine($"Started QEMU's colo-compare (pid {qemu.ProcessId}): primary_in :{qemu.PrimaryPort}, secondary_in :{qemu.SecondaryPort}, outdev :{qemu.OutdevPort}, notify_dev :{qemu.NotifyPort}");

        await using StandaloneColoComparePeers peers = await StandaloneColoComparePeers.ConnectAsync(qemu, null, token);
        ChardevConnection toPrimary = peers.Primary;
        ChardevConnection toSecondary = peers.Secondary;
        ChardevConnection fromOutdev = peers.Outdev;
        ChardevConnection notifications = peers.Notify!;
        Console.WriteLine("Our endpoints are connected (outdev first, so QEMU drops nothing).");
        Console.WriteLine();

        var released = new List<string>();
        var sentPrimary = new List<string>();
        int notByteExact = 0;
        int checkpointRequests = 0;

        async Task SendAsync(string title, IEnumerable<byte[]> primaryFrames, IEnumerable<byte[]> secondaryFrames)
        {
            Console.WriteLine($"== {title}");
            foreach (byte[] frame in primaryFrames)
            {
                toPrimary.Writer.Write(frame, 0);
                sentPrimary.Add(Convert.ToHexString(frame));
                Console.WriteLine($"   primary   -> {Describe(frame)}");
            }

            await toPrimary.Writer.FlushAsync(token);
            foreach (byte[] frame in secondaryFrames)
            {
                toSecondary.Writer.Write(frame, 0);
                Console.WriteLine($"   secondary -> {Describe(frame)}");
            }

            await toSecondary.Writer.FlushAsync(token);
        }

        async Task ExpectReleasedAsync(int count)
        {
            for (int i = 0; i < count; i++)
            {
                using ChardevFrame frame = (await fromOutdev.Reader.ReadFrameAsync(token)) ?? throw new InvalidOperationException("outdev closed");
                string text = Describe(frame.Payload.ToArray());
                released.Add(text);
                if (!sentPrimary.Remove(Convert.ToHexString(frame.Payload)))
                {
                    notByteExact++;
                    text += "  NOT A PRIMARY FRAME WE SENT";
                }

                Console.WriteLine($"   outdev    <- {text}  (t+{clock.ElapsedMilliseconds} ms)");
            }
        }

        async Task<bool> ExpectCheckpointRequestAsync()
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(token);
            wait.CancelAfter(TimeSpan.FromSeconds(5));
            using ChardevFrame request = (await notifications.Reader.ReadFrameAsync(wait.Token)) ?? throw new InvalidOperationException("notify_dev closed");
            string message = Encoding.ASCII.GetString(request.Payload);
            Console.WriteLine($"   notify    <- {message} (QEMU asks for a checkpoint)");
            checkpointRequests++;
            return message == "DO_CHECKPOINT";
        }

        byte[] Tcp(uint seq, string payload, ushort ipId) =>
            new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1", ipId).Tcp(80, 51000, seq, 7000, TcpControlBits.Ack | TcpControlBits.Psh, Encoding.ASCII.GetBytes(payload)).Build();

        await SendAsync(
            "1. Identical output on both sides (MAC, TTL and IP ID may differ)",
            [new FrameBuilder().SourceMac(1).Ipv4("10.0.0.10", "10.0.0.1", 1, 64).Udp(53, 40000, "answer"u8).Build(),
             new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1", 2).Icmp(0, 0, 9, 1, "ping reply"u8).Build()],
            [new FrameBuilder().SourceMac(2).Ipv4("10.0.0.10", "10.0.0.1", 901, 63).Udp(53, 40000, "answer"u8).Build(),
             new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1", 902).Icmp(0, 0, 9, 1, "ping reply"u8).Build()]);
        await ExpectReleasedAsync(2);

        await SendAsync(
            "2. TCP segmented differently (primary 1-3 + 4-10, secondary 1-10): compared by sequence number",
            [Tcp(1000, "123", 10), Tcp(1003, "4567890", 11)],
            [Tcp(1000, "1234567890", 500)]);
        await ExpectReleasedAsync(2);

        await SendAsync(
            "3. Diverging output (each guest answers with its own random bytes)",
            [new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Udp(4000, 40001, "primary:8f3a"u8).Build()],
            [new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Udp(4000, 40001, "second:11c0"u8).Build()]);
        if (!await ExpectCheckpointRequestAsync())
        {
            Console.Error.WriteLine("unexpected notify_dev message");
            return 1;
        }

        notifications.Writer.Write("COLO_CHECKPOINT"u8, 0);
        await notifications.Writer.FlushAsync(token);
        Console.WriteLine("   notify    -> COLO_CHECKPOINT (checkpoint done: QEMU flushes the held primary output)");
        await ExpectReleasedAsync(1);

        await SendAsync(
            "4. Traffic QEMU 7.2 does not compare (ARP, IPv6): the primary copy passes straight through",
            [new FrameBuilder().NonIp(EtherTypes.Arp, new byte[28]).Build(), new FrameBuilder().Ipv6("fd00::10", "fd00::1").Udp(1, 2, "v6"u8).Build()],
            []);
        await ExpectReleasedAsync(2);

        Console.WriteLine();
        Console.WriteLine("Summary");
        Console.WriteLine($"  frames written   primary_in {peers.PrimaryEndpoint.Statistics.FramesWritten,3}   secondary_in {peers.SecondaryEndpoint.Statistics.FramesWritten,3}");
        Console.WriteLine($"  frames released  outdev     {peers.OutdevEndpoint.Statistics.FramesRead,3}   ({peers.OutdevEndpoint.Statistics.BytesRead} bytes; byte-exact copies of primary frames: {released.Count - notByteExact}, others: {notByteExact})");
        Console.WriteLine($"  primary frames still held by QEMU: {sentPrimary.Count}");
        Console.WriteLine($"  checkpoint requests (DO_CHECKPOINT): {checkpointRequests}");
        Console.WriteLine($"  truncated/oversized/zero-length frames seen: {peers.OutdevEndpoint.Statistics.TruncatedFrames}/{peers.OutdevEndpoint.Statistics.OversizedFrames}/{peers.OutdevEndpoint.Statistics.ZeroLengthFrames}");
        Console.WriteLine($"  QEMU still running: {!qemu.HasExited}; stopping it (pid {qemu.ProcessId}). Total {clock.ElapsedMilliseconds} ms.");
        return released.Count == 7 && notByteExact == 0 && sentPrimary.Count == 0 && checkpointRequests == 1 ? 0 : 1;
    }

    private static string Describe(byte[] frame)
    {
        if (!PacketParser.TryParse(frame, 0, out ParsedPacket packet))
        {
            return $"malformed ({packet.Malformed}), {frame.Length} bytes";
        }

        if (!packet.IsIp)
        {
            return $"ethertype 0x{packet.EtherType:x4}, {frame.Length} bytes";
        }

        string extra = packet.Protocol == IpProtocol.Tcp
            ? string.Create(CultureInfo.InvariantCulture, $" seq {packet.TcpSeq}")
            : string.Empty;
        string payload = Encoding.ASCII.GetString(frame, packet.PayloadOffset, packet.PayloadLength);
        return $"{packet.Flow}{extra} \"{payload}\"";
    }
}
