using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.Testbed;
using CsCheck;

namespace ColoChardev.ColoCompareDaemon.Tests.Engine;

/// <summary>Property tests of the TCP comparison: random segmentation, interleaving, divergence and wrap-around.</summary>
public class TcpPropertyTests
{
    /// <summary>A sequence number anywhere, or within a few KB of the 2^32 wrap, or exactly 0.</summary>
    private static readonly Gen<uint> Isn = Gen.OneOf(Gen.UInt, Gen.UInt[uint.MaxValue - 5000, uint.MaxValue], Gen.Const(0u));

    /// <summary>Cuts <paramref name="data"/> at the given positions into (offset, bytes) segments.</summary>
    private static List<(int Offset, byte[] Bytes)> Cut(byte[] data, IEnumerable<int> positions)
    {
        int[] cuts = positions.Select(c => 1 + (c % Math.Max(1, data.Length - 1))).Where(c => c < data.Length).Distinct().Order().ToArray();
        var segments = new List<(int, byte[])>();
        int start = 0;
        foreach (int cut in cuts.Append(data.Length))
        {
            segments.Add((start, data[start..cut]));
            start = cut;
        }

        return segments;
    }

    /// <summary>Feeds primary and secondary segments, interleaved by <paramref name="order"/> (true = primary next).</summary>
    private static void Feed(EngineHarness h, IReadOnlyList<byte[]> primary, IReadOnlyList<byte[]> secondary, bool[] order)
    {
        int p = 0;
        int s = 0;
        int i = 0;
        while (p < primary.Count || s < secondary.Count)
        {
            bool primaryNext = s >= secondary.Count || (p < primary.Count && order[i++ % order.Length]);
            if (primaryNext)
            {
                h.P(primary[p++]);
            }
            else
            {
                h.S(secondary[s++]);
            }
        }
    }

    private static readonly Gen<(uint Isn, byte[] Data, int[] PrimaryCuts, int[] SecondaryCuts, bool[] Order)> Conversation =
        from isn in Isn
        from data in Gen.Byte.Array[1, 3000]
        from primaryCuts in Gen.Int[0, 100_000].Array[0, 12]
        from secondaryCuts in Gen.Int[0, 100_000].Array[0, 12]
        from order in Gen.Bool.Array[1, 30]
        select (isn, data, primaryCuts, secondaryCuts, order);

    [Fact]
    public void One_stream_cut_two_ways_and_interleaved_is_released_in_order_without_checkpoints()
    {
        Conversation.Sample(
            c =>
            {
                var primarySegments = Cut(c.Data, c.PrimaryCuts);
                byte[][] primary = primarySegments.Select(seg => Frames.Tcp(c.Isn + (uint)seg.Offset, seg.Bytes)).ToArray();
                byte[][] secondary = Cut(c.Data, c.SecondaryCuts).Select(seg => Frames.Tcp(c.Isn + (uint)seg.Offset, seg.Bytes, ipId: 7, mac: 2)).ToArray();
                var h = new EngineHarness();
                Feed(h, primary, secondary, c.Order);
                Assert.Equal(primary, h.Released);
                Assert.All(h.ReleaseReasons, r => Assert.Equal(ReleaseReason.Matched, r));
                Assert.Empty(h.Requests);
                Assert.Equal(0, h.Counters.SecondaryQueued);
                h.AssertAccounting();
            },
            iter: 1500);
    }

    [Fact]
    public void One_changed_byte_requests_a_checkpoint_and_nothing_from_the_difference_on_leaves_before_it_completes()
    {
        Gen<(uint Isn, byte[] Data, int[] PrimaryCuts, int[] SecondaryCuts, bool[] Order, int At, bool OnPrimary)> gen =
            from c in Conversation
            from at in Gen.Int[0, 100_000]
            from onPrimary in Gen.Bool
            select (c.Isn, c.Data, c.PrimaryCuts, c.SecondaryCuts, c.Order, at % c.Data.Length, onPrimary);
        gen.Sample(
            c =>
            {
                byte[] changed = (byte[])c.Data.Clone();
                changed[c.At] ^= 0x5A;
                var primarySegments = Cut(c.OnPrimary ? changed : c.Data, c.PrimaryCuts);
                byte[][] primary = primarySegments.Select(seg => Frames.Tcp(c.Isn + (uint)seg.Offset, seg.Bytes)).ToArray();
                byte[][] secondary = Cut(c.OnPrimary ? c.Data : changed, c.SecondaryCuts).Select(seg => Frames.Tcp(c.Isn + (uint)seg.Offset, seg.Bytes, mac: 2)).ToArray();
                var h = new EngineHarness();
                Feed(h, primary, secondary, c.Order);

                // Exactly the segments wholly before the difference are out; a checkpoint was asked for.
                int before = primarySegments.Count(seg => seg.Offset + seg.Bytes.Length <= c.At);
                Assert.Equal(primary.Take(before), h.Released);
                Assert.Equal(CheckpointReason.Mismatch, h.Requests.Single().Reason);
                h.CheckpointCompleted();
                Assert.Equal(primary, h.Released);
                h.AssertAccounting();
                Assert.Equal(0, h.Counters.PrimaryQueued + h.Counters.SecondaryQueued);
            },
            iter: 1500);
    }

    [Fact]
    public void Interleaving_many_flows_never_changes_any_flows_release_order()
    {
        Gen<(byte[][] Streams, int[][] Cuts, int[] Schedule, bool[] UdpFlows)> gen =
            from streams in Gen.Byte.Array[1, 600].Array[1, 8]
            from cuts in Gen.Int[0, 10_000].Array[0, 6].Array[8]
            from schedule in Gen.Int[0, 1_000_000].Array[1, 400]
            from udp in Gen.Bool.Array[8]
            select (streams, cuts, schedule, udp);
        gen.Sample(
            c =>
            {
                // Per flow: primary segments and secondary segments (cut the same way: UDP cannot be re-segmented).
                var queues = new List<Queue<(bool Primary, byte[] Frame)>>();
                var expected = new Dictionary<ushort, List<byte[]>>();
                for (int f = 0; f < c.Streams.Length; f++)
                {
                    ushort port = (ushort)(1000 + f);
                    bool udp = c.UdpFlows[f];
                    var segments = Cut(c.Streams[f], c.Cuts[f]);
                    byte[] Make(int offset, byte[] bytes, byte mac) => udp
                        ? new Testbed.FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1").Udp(port, 9, bytes).Build()
                        : Frames.Tcp(123_456u + (uint)offset, bytes, mac: mac, sourcePort: port);
                    var primary = segments.Select(s => Make(s.Offset, s.Bytes, 1)).ToList();
                    var secondary = (udp ? segments : Cut(c.Streams[f], c.Cuts[f].Select(x => x * 7 + 3))).Select(s => Make(s.Offset, s.Bytes, 2)).ToList();
                    expected[port] = primary;
                    var queue = new Queue<(bool, byte[])>();
                    int si = 0;
                    for (int pi = 0; pi < primary.Count || si < secondary.Count;)
                    {
                        if (pi < primary.Count && (si >= secondary.Count || (c.Schedule[(pi + si) % c.Schedule.Length] & 1) == 0))
                        {
                            queue.Enqueue((true, primary[pi++]));
                        }
                        else
                        {
                            queue.Enqueue((false, secondary[si++]));
                        }
                    }

                    queues.Add(queue);
                }

                var h = new EngineHarness();
                int step = 0;
                while (queues.Any(q => q.Count > 0))
                {
                    var live = queues.Where(q => q.Count > 0).ToList();
                    var (isPrimary, frame) = live[c.Schedule[step++ % c.Schedule.Length] % live.Count].Dequeue();
                    if (isPrimary)
                    {
                        h.P(frame);
                    }
                    else
                    {
                        h.S(frame);
                    }
                }

                Assert.Empty(h.Requests);
                foreach ((ushort port, List<byte[]> frames) in expected)
                {
                    var released = h.Released.Where(f => PacketParser.TryParse(f, 0, out ParsedPacket p) && p.SourcePort == port).ToList();
                    Assert.Equal(frames, released);
                }

                h.AssertAccounting();
            },
            iter: 400);
    }

    [Fact]
    public void Segments_crossing_the_2_to_the_32_wrap_are_compared_and_released_in_order()
    {
        var h = new EngineHarness();
        byte[] a = Frames.Tcp(uint.MaxValue - 4, "abcde");
        byte[] b = Frames.Tcp(0, "fghij");
        byte[] c = Frames.Tcp(5, "klmno");
        h.P(b); // out of order on purpose: sorting must be wrap-aware
        h.P(a);
        h.P(c);
        h.S(Frames.Tcp(uint.MaxValue - 4, "abcdefgh", mac: 2));
        h.S(Frames.Tcp(3, "ijklmno", mac: 2));
        Assert.Equal([a, b, c], h.Released);
        Assert.Empty(h.Requests);
        h.AssertAccounting();
    }

    [Fact]
    public void Sequence_number_zero_is_an_ordinary_compared_point()
    {
        // QEMU treats compare_seq == 0 as "unset" and skips its retransmission rule once (spec §2.5.2).
        var h = new EngineHarness();
        h.P(Frames.Tcp(uint.MaxValue - 9, "0123456789")); // ends exactly at sequence 0
        h.S(Frames.Tcp(uint.MaxValue - 9, "0123456789", mac: 2));
        byte[] retransmission = Frames.Tcp(uint.MaxValue - 9, "XXXXXXXXXX");
        h.P(retransmission);
        Assert.Equal(retransmission, h.Released[^1]);
        Assert.Equal(ReleaseReason.Retransmission, h.ReleaseReasons[^1]);
        Assert.Empty(h.Requests);
    }

    [Fact]
    public void The_ack_gate_is_wrap_safe()
    {
        // The secondary's ACK 5 is "after" 0xFFFFFFF0 across the wrap: the partly matched segment may go.
        var h = new EngineHarness();
        byte[] p = Frames.Tcp(100, "abc", ack: 5);
        h.P(p);
        h.S(Frames.Tcp(100, "abcdef", ack: 0xFFFFFFF0, mac: 2));
        Assert.Empty(h.Released);
        h.S(Frames.Tcp(106, string.Empty, ack: 5, flags: TcpControlBits.Ack, mac: 2));
        Assert.Equal([p], h.Released);
    }

    [Fact]
    public void Misaligned_segments_are_never_compared_at_different_positions()
    {
        // QEMU assumes alignment: P [100,200) against S [150,210) compares 100 bytes against S's 60 (spec §2.5.2).
        var h = new EngineHarness(new CompareOptions { CompareTimeoutMs = 300, ExpiredScanCycleMs = 100 });
        h.P(Frames.Tcp(1000, "established"));
        h.S(Frames.Tcp(1000, "established", mac: 2));
        byte[] p = Frames.Tcp(1011, new string('p', 100));
        h.P(p);
        h.S(Frames.Tcp(1061, new string('p', 60), mac: 2)); // the secondary's first 50 bytes are missing
        Assert.Single(h.Released);
        Assert.Empty(h.Requests);
        h.S(Frames.Tcp(1011, new string('p', 50), mac: 2)); // they arrive late, out of order
        Assert.Equal(p, h.Released[^1]);
        Assert.Empty(h.Requests);
        Assert.Equal(1, h.Counters.SecondaryQueued); // the 10 bytes past the primary's end wait for it
    }

    [Fact]
    public void A_fully_matched_secondary_segment_does_not_linger_into_a_timeout()
    {
        // QEMU leaves the last fully compared secondary segment queued; compare_timeout later it requests a
        // checkpoint after nearly every TCP transfer.
        var h = new EngineHarness(new CompareOptions { CompareTimeoutMs = 300, ExpiredScanCycleMs = 100 });
        h.P(Frames.Tcp(1000, "abc"));
        h.P(Frames.Tcp(1003, "defghij"));
        h.S(Frames.Tcp(1000, "abcdefghij", mac: 2));
        Assert.Equal(2, h.Released.Count);
        Assert.Equal(0, h.Counters.SecondaryQueued);
        h.Advance(2000);
        Assert.Empty(h.Requests);
    }

    [Fact]
    public void Payload_length_comes_from_the_ip_length_so_padding_never_counts()
    {
        // QEMU counts the 6 pad bytes of a 60-byte pure ACK as payload and advances compare_seq by 6.
        var h = new EngineHarness();
        byte[] ack = new Testbed.FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Tcp(80, 40000, 1000, 1, TcpControlBits.Ack, []).PadTo(60).Build();
        h.P(ack);
        h.S(new Testbed.FrameBuilder().SourceMac(2).Ipv4("10.0.0.10", "10.0.0.1").Tcp(80, 40000, 1000, 1, TcpControlBits.Ack, []).PadTo(60).Build());
        Assert.Equal(ReleaseReason.ZeroPayload, h.ReleaseReasons.Single());
        byte[] data = Frames.Tcp(1000, "abcdef");
        h.P(data);
        h.S(Frames.Tcp(1000, "abcdef", mac: 2));
        Assert.Equal(ReleaseReason.Matched, h.ReleaseReasons[^1]);
    }
}
