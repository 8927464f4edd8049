using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;
using Xunit.Abstractions;

namespace ColoChardev.Integration;

/// <summary>
/// Our framing against QEMU 7.2's own colo-compare (standalone, <c>-M none</c>): our writer feeds primary_in and
/// secondary_in, our reader takes outdev. What QEMU releases must be exactly the primary frames we sent, once.
/// </summary>
[Trait("Qemu", "real")]
public sealed class QemuColoCompareFramingTests(ITestOutputHelper output)
{
    /// <summary>Primary and secondary copies of a mixed workload (the secondary differs where QEMU ignores it).</summary>
    private static List<(byte[] Primary, byte[] Secondary)> Workload(int vnet)
    {
        var pairs = new List<(byte[], byte[])>();
        byte[] data = Enumerable.Range(0, 1400).Select(i => (byte)(i * 7)).ToArray();
        uint seq = 100_000;
        for (int i = 0; i < 20; i++)
        {
            int size = 1 + (i * 97 % 1400);
            byte[] Segment(byte mac, ushort ipId) => new FrameBuilder().Vnet(vnet).SourceMac(mac).Ipv4("10.0.0.1", "10.0.0.2", ipId)
                .Tcp(80, 40000, seq, 5000, TcpControlBits.Ack | TcpControlBits.Psh, data.AsSpan(0, size)).Build();
            pairs.Add((Segment(1, (ushort)i), Segment(2, (ushort)(i + 500))));
            seq += (uint)size;
        }

        for (int i = 0; i < 20; i++)
        {
            // One UDP flow per datagram: QEMU 7.2 compares UDP newest-first (spec §2.6); separate flows keep that out of the way.
            byte[] Datagram(byte ttl) => new FrameBuilder().Vnet(vnet).Ipv4("10.0.0.1", "10.0.0.3", ttl: ttl).Udp((ushort)(2000 + i), 53, data.AsSpan(0, 10 + i)).Build();
            pairs.Add((Datagram(64), Datagram(63)));
        }

        byte[] Ping(ushort id) => new FrameBuilder().Vnet(vnet).Ipv4("10.0.0.1", "10.0.0.4", id).Icmp(0, 0, 7, 1, data.AsSpan(0, 56)).Build();
        pairs.Add((Ping(1), Ping(2)));
        byte[] arp = new FrameBuilder().Vnet(vnet).NonIp(EtherTypes.Arp, new byte[28]).Build();
        pairs.Add((arp, arp));
        byte[] v6 = new FrameBuilder().Vnet(vnet).Ipv6("fd00::1", "fd00::2").Udp(1, 2, data.AsSpan(0, 30)).Build();
        pairs.Add((v6, v6));
        return pairs;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Frames_we_write_come_back_from_qemu_colo_compare_byte_exact_and_once(bool vnetHdrSupport)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        CancellationToken token = timeout.Token;
        int vnet = vnetHdrSupport ? 12 : 0;
        await using StandaloneColoCompare qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { VnetHdrSupport = vnetHdrSupport });
        await using StandaloneColoComparePeers peers = await StandaloneColoComparePeers.ConnectAsync(qemu, new ChardevEndpointOptions { VnetHdrSupport = vnetHdrSupport }, token);
        ChardevConnection toPrimary = peers.Primary;
        ChardevConnection toSecondary = peers.Secondary;
        ChardevConnection fromOutdev = peers.Outdev;

        List<(byte[] Primary, byte[] Secondary)> workload = Workload(vnet);
        foreach ((byte[] p, _) in workload)
        {
            toPrimary.Writer.Write(p, (uint)vnet);
        }

        Assert.True(await toPrimary.Writer.FlushAsync(token));
        foreach ((_, byte[] s) in workload)
        {
            toSecondary.Writer.Write(s, (uint)vnet);
        }

        Assert.True(await toSecondary.Writer.FlushAsync(token));

        var expected = workload.Select(pair => Convert.ToHexString(pair.Primary)).ToList();
        var received = new List<string>();
        while (received.Count < expected.Count)
        {
            using ChardevFrame frame = (await fromOutdev.Reader.ReadFrameAsync(token))
                ?? throw new InvalidOperationException("QEMU closed outdev: " + qemu.StandardError);
            Assert.Equal((uint)vnet, frame.VnetHdrLen);
            received.Add(Convert.ToHexString(frame.Payload));
        }

        // Nothing more may come: every frame exactly once.
        using (var quiet = CancellationTokenSource.CreateLinkedTokenSource(token))
        {
            quiet.CancelAfter(TimeSpan.FromSeconds(1));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await fromOutdev.Reader.ReadFrameAsync(quiet.Token));
        }

        Assert.Equal(expected.Order(), received.Order());
        Assert.Equal(expected.Count, peers.OutdevEndpoint.Statistics.FramesRead);
        Assert.Equal(0, peers.OutdevEndpoint.Statistics.TruncatedFrames);
        Assert.False(qemu.HasExited, qemu.StandardError);
        output.WriteLine($"vnet_hdr_support={vnetHdrSupport}: {received.Count} frames released by QEMU, byte-exact");
    }

    [Fact]
    public async Task A_secondary_that_differs_is_held_back_by_qemu_so_only_matching_frames_return()
    {
        // The framing must carry enough for QEMU to compare: a payload difference stops the release.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        CancellationToken token = timeout.Token;
        await using StandaloneColoCompare qemu = StandaloneColoCompare.Start(new StandaloneColoCompareOptions { NotifyDev = true });
        await using StandaloneColoComparePeers peers = await StandaloneColoComparePeers.ConnectAsync(qemu, null, token);
        ChardevConnection toPrimary = peers.Primary;
        ChardevConnection toSecondary = peers.Secondary;
        ChardevConnection fromOutdev = peers.Outdev;
        ChardevConnection notifications = peers.Notify!;

        byte[] same = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Udp(1, 2, "same"u8).Build();
        byte[] mine = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Udp(3, 4, "primary"u8).Build();
        byte[] theirs = new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Udp(3, 4, "second!"u8).Build();
        toPrimary.Writer.Write(same, 0);
        toPrimary.Writer.Write(mine, 0);
        Assert.True(await toPrimary.Writer.FlushAsync(token));
        toSecondary.Writer.Write(same, 0);
        toSecondary.Writer.Write(theirs, 0);
        Assert.True(await toSecondary.Writer.FlushAsync(token));

        using (ChardevFrame released = (await fromOutdev.Reader.ReadFrameAsync(token))!.Value)
        {
            Assert.Equal(same, released.Payload.ToArray());
        }

        // QEMU asks for a checkpoint over notify_dev: be32 13 + "DO_CHECKPOINT" (spec §1.6).
        using (ChardevFrame request = (await notifications.Reader.ReadFrameAsync(token))!.Value)
        {
            Assert.Equal("DO_CHECKPOINT", System.Text.Encoding.ASCII.GetString(request.Payload));
        }

        // Our framed COLO_CHECKPOINT makes QEMU flush: the held primary frame comes out, byte-exact.
        notifications.Writer.Write("COLO_CHECKPOINT"u8, 0);
        Assert.True(await notifications.Writer.FlushAsync(token));
        using (ChardevFrame flushed = (await fromOutdev.Reader.ReadFrameAsync(token))!.Value)
        {
            Assert.Equal(mine, flushed.Payload.ToArray());
        }
    }
}
