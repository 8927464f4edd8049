using System.Text;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.Testbed;
using Xunit.Abstractions;

namespace ColoChardev.Integration;

/// <summary>
/// Differential tests: the same generated traffic goes through QEMU 7.2's colo-compare (standalone, notify_dev
/// showing its checkpoint requests and letting us make it flush) and through our engine. Released frames and
/// whether a checkpoint was requested must agree, except where a documented deliberate difference applies: those
/// tests are named for it and assert both behaviours.
/// </summary>
[Trait("Qemu", "real")]
public sealed class DifferentialCompareTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(300);

    private sealed record Conversation(ushort Port, List<byte[]> Primary, List<byte[]> Secondary, int? DivergesAt);

    /// <summary>A random TCP conversation: one byte stream cut two random ways; optionally one byte changed on the secondary.</summary>
    private static Conversation Generate(Random random, ushort port, bool diverge)
    {
        byte[] data = new byte[random.Next(1, 4000)];
        random.NextBytes(data);
        // Stay clear of a segment ending exactly at sequence 0, which QEMU treats as "nothing compared yet".
        uint isn = (uint)random.Next(1, int.MaxValue);
        int? at = diverge ? random.Next(data.Length) : null;
        byte[] secondary = (byte[])data.Clone();
        if (at is int position)
        {
            secondary[position] ^= 0xA5;
        }

        List<byte[]> Segments(byte[] bytes, byte mac, ushort ipId)
        {
            var frames = new List<byte[]>();
            int offset = 0;
            while (offset < bytes.Length)
            {
                int length = Math.Min(bytes.Length - offset, random.Next(1, 1400));
                frames.Add(new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", ipId++)
                    .Tcp(port, 40000, isn + (uint)offset, 777, TcpControlBits.Ack | TcpControlBits.Psh, bytes.AsSpan(offset, length)).Build());
                offset += length;
            }

            return frames;
        }

        return new Conversation(port, Segments(data, 1, 1), Segments(secondary, 2, 5000), at);
    }

    private static async Task<List<byte[]>> ReadFramesAsync(ChardevConnection connection, int count, CancellationToken token)
    {
        var frames = new List<byte[]>();
        while (frames.Count < count)
        {
            using ChardevFrame frame = (await connection.Reader.ReadFrameAsync(token)) ?? throw new EndOfStreamException();
            frames.Add(frame.Payload.ToArray());
        }

        return frames;
    }

    /// <summary>Frames that arrive within a quiet period (none expected when nothing more should come).</summary>
    private static async Task<List<byte[]>> ReadUntilQuietAsync(ChardevConnection connection, CancellationToken token)
    {
        var frames = new List<byte[]>();
        while (true)
        {
            using var quiet = CancellationTokenSource.CreateLinkedTokenSource(token);
            quiet.CancelAfter(Quiet);
            try
            {
                using ChardevFrame frame = (await connection.Reader.ReadFrameAsync(quiet.Token)) ?? throw new EndOfStreamException();
                frames.Add(frame.Payload.ToArray());
            }
            catch (OperationCanceledException) when (!token.IsCancellationRequested)
            {
                return frames;
            }
        }
    }

    private static async Task SendAsync(ChardevConnection connection, IEnumerable<byte[]> frames, CancellationToken token)
    {
        foreach (byte[] frame in frames)
        {
            connection.Writer.Write(frame, 0);
        }

        Assert.True(await connection.Writer.FlushAsync(token));
    }

    private static async Task FlushQemuAsync(StandaloneColoComparePeers peers, CancellationToken token)
    {
        peers.Notify!.Writer.Write("COLO_CHECKPOINT"u8, 0);
        Assert.True(await peers.Notify.Writer.FlushAsync(token));
    }

    [Fact]
    public async Task Generated_tcp_conversations_get_the_same_releases_and_checkpoint_requests_from_qemu_and_from_us()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken token = timeout.Token;
        // A long compare_timeout keeps QEMU's timer out of it (its lingering-segment quirk has its own test below).
        await using StandaloneColoCompare qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { NotifyDev = true, CompareTimeoutMs = 600_000 });
        await using StandaloneColoComparePeers peers = await StandaloneColoComparePeers.ConnectAsync(qemu, null, token);
        var random = new Random(20261125);
        int agreed = 0;
        int checkpoints = 0;
        for (int i = 0; i < 24; i++)
        {
            Conversation conversation = Generate(random, (ushort)(2000 + i), diverge: i % 3 == 2);

            // Ours: all primary segments, then all secondary segments, as we send them to QEMU.
            var ours = new EngineHarness();
            conversation.Primary.ForEach(f => ours.P(f));
            conversation.Secondary.ForEach(f => ours.S(f));

            await SendAsync(peers.Primary, conversation.Primary, token);
            await SendAsync(peers.Secondary, conversation.Secondary, token);
            List<byte[]> released = await ReadFramesAsync(peers.Outdev, ours.Released.Count, token);
            released.AddRange(await ReadUntilQuietAsync(peers.Outdev, token));
            List<byte[]> requests = ours.Requests.Count > 0
                ? await ReadFramesAsync(peers.Notify!, 1, token) // wait as long as it takes for the expected request
                : await ReadUntilQuietAsync(peers.Notify!, token);
            bool qemuRequested = requests.Count > 0;
            Assert.All(requests, r => Assert.Equal("DO_CHECKPOINT", Encoding.ASCII.GetString(r)));
            Assert.Equal(ours.Released, released);
            Assert.Equal(ours.Requests.Count > 0, qemuRequested);
            Assert.Equal(conversation.DivergesAt is not null, qemuRequested);

            // Flush both (QEMU's notify_dev COLO_CHECKPOINT, our completed checkpoint): the rest comes out, in order.
            ours.CheckpointCompleted();
            await FlushQemuAsync(peers, token);
            List<byte[]> flushed = await ReadFramesAsync(peers.Outdev, ours.Released.Count - released.Count, token);
            Assert.Equal(ours.Released.Skip(released.Count), flushed);
            Assert.Equal(conversation.Primary, ours.Released);
            Assert.Empty(await ReadUntilQuietAsync(peers.Outdev, token));
            await ReadUntilQuietAsync(peers.Notify!, token);
            agreed++;
            checkpoints += qemuRequested ? 1 : 0;
        }

        Assert.False(qemu.HasExited, qemu.StandardError);
        output.WriteLine($"{agreed} conversations agreed with QEMU, {checkpoints} of them with a checkpoint request");
    }

    [Fact]
    public async Task Deliberate_difference_udp_leaves_in_arrival_order_where_qemu_reverses_it_and_checkpoints()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        CancellationToken token = timeout.Token;
        await using StandaloneColoCompare qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { NotifyDev = true, CompareTimeoutMs = 600_000 });
        await using StandaloneColoComparePeers peers = await StandaloneColoComparePeers.ConnectAsync(qemu, null, token);
        byte[] one = new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Udp(53, 9, "one"u8).Build();
        byte[] two = new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Udp(53, 9, "two"u8).Build();

        await SendAsync(peers.Primary, [one, two], token);
        await Task.Delay(100, token); // both primaries queued before the secondaries arrive (spec §5.3 vector 5)
        await SendAsync(peers.Secondary, [one, two], token);
        List<byte[]> fromQemu = await ReadFramesAsync(peers.Outdev, 2, token);
        List<byte[]> qemuRequests = await ReadUntilQuietAsync(peers.Notify!, token);

        var ours = new EngineHarness();
        ours.P(one);
        ours.P(two);
        ours.S(one);
        ours.S(two);

        Assert.Equal([two, one], fromQemu); // QEMU 7.2: newest first
        Assert.NotEmpty(qemuRequests); // and a needless checkpoint request
        Assert.Equal([one, two], ours.Released); // ours: arrival order
        Assert.Empty(ours.Requests);
    }

    [Fact]
    public async Task Deliberate_difference_qemu_checkpoints_compare_timeout_after_a_resegmented_transfer_and_we_do_not()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        CancellationToken token = timeout.Token;
        await using StandaloneColoCompare qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { NotifyDev = true, CompareTimeoutMs = 300, ExpiredScanCycleMs = 100 });
        await using StandaloneColoComparePeers peers = await StandaloneColoComparePeers.ConnectAsync(qemu, null, token);
        byte[] p1 = new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Tcp(80, 40000, 1000, 5, TcpControlBits.Ack, "abc"u8).Build();
        byte[] p2 = new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Tcp(80, 40000, 1003, 5, TcpControlBits.Ack, "defghij"u8).Build();
        byte[] s = new FrameBuilder().SourceMac(2).Ipv4("10.0.0.10", "10.0.0.1").Tcp(80, 40000, 1000, 5, TcpControlBits.Ack, "abcdefghij"u8).Build();

        await SendAsync(peers.Primary, [p1, p2], token);
        await Task.Delay(100, token);
        await SendAsync(peers.Secondary, [s], token);
        Assert.Equal([p1, p2], await ReadFramesAsync(peers.Outdev, 2, token));
        using (var wait = CancellationTokenSource.CreateLinkedTokenSource(token))
        {
            wait.CancelAfter(TimeSpan.FromSeconds(5));
            using ChardevFrame request = (await peers.Notify!.Reader.ReadFrameAsync(wait.Token))!.Value;
            Assert.Equal("DO_CHECKPOINT", Encoding.ASCII.GetString(request.Payload)); // QEMU: the matched segment lingered
        }

        var ours = new EngineHarness(new CompareOptions { CompareTimeoutMs = 300, ExpiredScanCycleMs = 100 });
        ours.P(p1);
        ours.P(p2);
        ours.S(s);
        ours.Advance(2000);
        Assert.Equal([p1, p2], ours.Released);
        Assert.Empty(ours.Requests);
    }

    [Fact]
    public async Task Out_of_order_primary_segments_leave_in_sequence_order_from_qemu_and_from_us_whichever_side_comes_first()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        CancellationToken token = timeout.Token;
        await using StandaloneColoCompare qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { NotifyDev = true, CompareTimeoutMs = 600_000 });
        await using StandaloneColoComparePeers peers = await StandaloneColoComparePeers.ConnectAsync(qemu, null, token);
        byte[] Tcp(ushort port, uint seq, string payload, byte mac) =>
            new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1").Tcp(port, 40000, seq, 5, TcpControlBits.Ack, Encoding.ASCII.GetBytes(payload)).Build();

        // Both primaries first (bytes 4-10, then 1-3), then the secondary's 1-10 in one segment.
        byte[] late = Tcp(80, 1003, "3456789", 1);
        byte[] early = Tcp(80, 1000, "012", 1);
        byte[] whole = Tcp(80, 1000, "0123456789", 2);
        await SendAsync(peers.Primary, [late, early], token);
        await Task.Delay(100, token);
        await SendAsync(peers.Secondary, [whole], token);
        Assert.Equal([early, late], await ReadFramesAsync(peers.Outdev, 2, token));
        Assert.Empty(await ReadUntilQuietAsync(peers.Notify!, token));

        var ours = new EngineHarness();
        ours.P(late);
        ours.P(early);
        ours.S(whole);
        Assert.Equal([early, late], ours.Released);
        Assert.Empty(ours.Requests);

        // The secondary overtakes the late primary bytes (they come from different sockets, so this happens):
        // QEMU compares 4-10 against the secondary's 1-10 from its start, misaligned, and asks for a checkpoint;
        // we wait briefly for 1-3, compare both, and release them in sequence order.
        byte[] late2 = Tcp(81, 1003, "3456789", 1);
        byte[] early2 = Tcp(81, 1000, "012", 1);
        byte[] whole2 = Tcp(81, 1000, "0123456789", 2);
        await SendAsync(peers.Primary, [late2], token);
        await Task.Delay(100, token);
        await SendAsync(peers.Secondary, [whole2], token);
        await Task.Delay(50, token);
        await SendAsync(peers.Primary, [early2], token);
        List<byte[]> qemuRequests = await ReadUntilQuietAsync(peers.Notify!, token);
        Assert.NotEmpty(qemuRequests);
        await FlushQemuAsync(peers, token);
        List<byte[]> fromQemu = await ReadFramesAsync(peers.Outdev, 2, token);
        output.WriteLine($"QEMU, secondary first: {qemuRequests.Count} checkpoint request(s), then {string.Join(", ", fromQemu.Select(f => f.Length))} byte frames at the flush");

        ours.P(late2);
        ours.S(whole2);
        ours.Advance(CompareEngine.MidStreamGraceMs / 2);
        ours.P(early2);
        Assert.Equal([early, late, early2, late2], ours.Released);
        Assert.Empty(ours.Requests);
    }

    [Fact]
    public async Task Deliberate_difference_a_reused_4_tuple_is_compared_afresh_where_qemu_releases_the_new_connections_bytes_uncompared()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        CancellationToken token = timeout.Token;
        await using StandaloneColoCompare qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { NotifyDev = true, CompareTimeoutMs = 600_000 });
        await using StandaloneColoComparePeers peers = await StandaloneColoComparePeers.ConnectAsync(qemu, null, token);
        byte[] Tcp(uint seq, uint ack, TcpControlBits flags, string payload, byte mac) =>
            new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1").Tcp(80, 40000, seq, ack, flags, Encoding.ASCII.GetBytes(payload)).Build();
        const TcpControlBits Data = TcpControlBits.Ack | TcpControlBits.Psh;
        const TcpControlBits SynAck = TcpControlBits.Syn | TcpControlBits.Ack;
        const TcpControlBits FinAck = TcpControlBits.Fin | TcpControlBits.Ack;

        // The old connection: compared up to sequence 5000, then closed.
        byte[][] primaryOld = [Tcp(900, 7000, SynAck, "", 1), Tcp(901, 7001, Data, new string('o', 4099), 1), Tcp(5000, 7002, FinAck, "", 1)];
        byte[][] secondaryOld = [Tcp(900, 7000, SynAck, "", 2), Tcp(901, 7001, Data, new string('o', 4099), 2), Tcp(5000, 7002, FinAck, "", 2)];
        // The new connection on the same 4-tuple starts at ISN 500, below the old compared point, and its data differ.
        byte[][] primaryNew = [Tcp(500, 9000, SynAck, "", 1), Tcp(501, 9001, Data, "new hello", 1)];
        byte[][] secondaryNew = [Tcp(500, 9000, SynAck, "", 2), Tcp(501, 9001, Data, "new HELLO", 2)];
        foreach ((byte[] p, byte[] s) in primaryOld.Zip(secondaryOld).Concat(primaryNew.Zip(secondaryNew)))
        {
            await SendAsync(peers.Primary, [p], token);
            await Task.Delay(20, token);
            await SendAsync(peers.Secondary, [s], token);
            await Task.Delay(20, token);
        }

        List<byte[]> fromQemu = await ReadFramesAsync(peers.Outdev, 5, token);
        List<byte[]> qemuRequests = await ReadUntilQuietAsync(peers.Notify!, token);
        Assert.Equal(primaryNew[1], fromQemu[^1]); // QEMU: the differing new bytes went out, uncompared
        Assert.Empty(qemuRequests);

        var ours = new EngineHarness();
        foreach ((byte[] p, byte[] s) in primaryOld.Zip(secondaryOld).Concat(primaryNew.Zip(secondaryNew)))
        {
            ours.P(p);
            ours.S(s);
        }

        Assert.DoesNotContain(primaryNew[1], ours.Released); // ours: compared, found different, held
        Assert.Equal(CheckpointReason.Mismatch, ours.Requests.Single().Reason);
    }
}
