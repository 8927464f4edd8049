using System.Buffers.Binary;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.Testbed;
using CsCheck;

namespace ColoChardev.ColoCompareDaemon.Tests.Engine;

/// <summary>The accounting invariant: every accepted primary frame is released exactly once or dropped with a reason.</summary>
public class AccountingPropertyTests
{
    private enum Op
    {
        Primary,
        Secondary,
        Tick,
        Checkpoint,
        Failover,
    }

    private static readonly Gen<(Op Op, int Kind, int Flow, int Value, int Size)> Step =
        from op in Gen.Int[0, 99].Select(n => n switch { < 45 => Op.Primary, < 85 => Op.Secondary, < 95 => Op.Tick, < 99 => Op.Checkpoint, _ => Op.Failover })
        from kind in Gen.Int[0, 9]
        from flow in Gen.Int[0, 3]
        from value in Gen.Int[0, 2000]
        from size in Gen.Int[0, 40]
        select (op, kind, flow, value, size);

    /// <summary>A frame of one of several kinds; primary frames carry a unique id in the IP ID (or the payload).</summary>
    private static byte[] MakeFrame(int kind, int flow, int value, int size, ushort id, byte mac)
    {
        byte[] payload = new byte[size];
        payload.AsSpan().Fill((byte)(value % 3)); // small alphabet: some pairs match, some do not
        ushort port = (ushort)(100 + flow);
        return kind switch
        {
            <= 3 => new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", id).Tcp(port, 1, (uint)(value * 7), (uint)value, kind == 3 ? TcpControlBits.Ack : TcpControlBits.Ack | TcpControlBits.Psh, kind == 3 ? [] : payload).Build(),
            4 or 5 => new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", id).Udp(port, 1, payload).Build(),
            6 => new FrameBuilder().SourceMac(mac).Ipv6("fd00::10", "fd00::1").Icmp(128, 0, port, 1, payload).Build(),
            7 => new FrameBuilder().SourceMac(mac).Vlan(EtherTypes.Vlan8021Q, 3).Ipv4("10.0.0.10", "10.0.0.1", id).Fragment(value % 2 * 8, true).RawL4(IpProtocol.Udp, [.. payload, 1, 2, 3, 4, 5, 6, 7, 8]).Build(),
            8 => Malformed(id, size),
            _ => size == 0 ? [] : new FrameBuilder().SourceMac(mac).NonIp(EtherTypes.Arp, [.. payload, (byte)id, (byte)(id >> 8)]).Build(),
        };
    }

    private static byte[] Malformed(ushort id, int size)
    {
        byte[] frame = new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1", id).Udp(1, 2, new byte[4]).Build();
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(16), (ushort)(200 + size)); // IP total length past the end
        return frame;
    }

    [Fact]
    public void Every_primary_frame_is_released_exactly_once_or_dropped_with_a_reason_under_random_traffic()
    {
        Step.Array[1, 300].Sample(
            steps =>
            {
                var h = new EngineHarness(new CompareOptions { CompareTimeoutMs = 50, ExpiredScanCycleMs = 20, MaxQueueSize = 8, QueueBudgetBytes = 4000, FlowIdleTimeoutMs = 200, ClosedFlowLingerMs = 100 });
                var primaries = new Dictionary<string, int>();
                ushort id = 0;
                foreach ((Op op, int kind, int flow, int value, int size) in steps)
                {
                    switch (op)
                    {
                        case Op.Primary:
                            byte[] frame = MakeFrame(kind, flow, value, size, ++id, 1);
                            string key = Convert.ToHexString(frame);
                            primaries[key] = primaries.GetValueOrDefault(key) + 1;
                            h.P(frame);
                            break;
                        case Op.Secondary:
                            h.S(MakeFrame(kind, flow, value, size, (ushort)(value + 30000), 2));
                            break;
                        case Op.Tick:
                            h.Advance(value % 120);
                            break;
                        case Op.Checkpoint:
                            h.CheckpointCompleted();
                            break;
                        case Op.Failover:
                            h.Failover();
                            break;
                    }

                    h.AssertAccounting();
                }

                // A final checkpoint empties every queue: then each primary frame is out exactly once or dropped.
                h.CheckpointCompleted();
                h.AssertAccounting();
                Assert.Equal(0, h.Counters.PrimaryQueued);
                Assert.Equal(0, h.Counters.SecondaryQueued);
                Assert.Equal(0, h.Counters.QueuedBytes);
                var released = h.Released.GroupBy(Convert.ToHexString).ToDictionary(g => g.Key, g => g.Count());
                var dropped = h.Dropped.Where(d => d.Side == PacketSide.Primary).GroupBy(d => Convert.ToHexString(d.Frame)).ToDictionary(g => g.Key, g => g.Count());
                foreach ((string frame, int count) in primaries)
                {
                    Assert.Equal(count, released.GetValueOrDefault(frame) + dropped.GetValueOrDefault(frame));
                }

                Assert.All(released.Keys, frame => Assert.True(primaries.ContainsKey(frame), "released a frame that was never a primary frame"));
                Assert.All(h.Dropped.Where(d => d.Side == PacketSide.Primary), d => Assert.Contains(d.Reason, new[] { DropReason.ZeroLength, DropReason.QueueBudget }));
            },
            iter: 600);
    }

    [Fact]
    public void The_queue_budget_bounds_queued_bytes_and_every_drop_is_counted_with_a_checkpoint_request()
    {
        var h = new EngineHarness(new CompareOptions { QueueBudgetBytes = 10_000 });
        for (int i = 0; i < 100; i++)
        {
            h.P(Frames.Udp(new string('x', 200), sourcePort: (ushort)(1 + i)));
            Assert.True(h.Counters.QueuedBytes <= 10_000);
        }

        Assert.True(h.Counters.PrimaryDroppedBy(DropReason.QueueBudget) > 0);
        Assert.Equal(CheckpointReason.QueueBudget, h.Requests.Single().Reason);
        h.AssertAccounting();
    }

    [Fact]
    public void A_stalled_queue_budget_pause_asks_for_one_checkpoint_for_the_fullest_flow_and_nothing_when_the_queues_are_empty()
    {
        var h = new EngineHarness();
        h.Engine.OnQueueStalled(h.Now);
        Assert.Empty(h.Requests); // nothing queued: nothing to ask for

        h.P(Frames.Udp("one", sourcePort: 1));
        for (int i = 0; i < 3; i++)
        {
            h.P(Frames.Udp($"many {i}", sourcePort: 2));
        }

        h.Engine.OnQueueStalled(h.Now);
        h.Engine.OnQueueStalled(h.Now); // coalesced into the outstanding request
        (CheckpointReason reason, FlowKey flow, _) = Assert.Single(h.Requests);
        Assert.Equal(CheckpointReason.QueueBudget, reason);
        Assert.Equal(2, flow.SourcePort);
        Assert.Equal(0, h.Counters.PrimaryDropped);

        h.CheckpointCompleted();
        Assert.Equal(4, h.Released.Count);
        h.AssertAccounting();
    }

    [Fact]
    public void Closed_and_idle_flows_expire_and_the_table_never_wipes_queued_packets()
    {
        var h = new EngineHarness(new CompareOptions { FlowIdleTimeoutMs = 1000, ClosedFlowLingerMs = 100, CompareTimeoutMs = 100_000, ExpiredScanCycleMs = 50 });
        h.P(Frames.Tcp(1, "data", sourcePort: 1));
        h.S(Frames.Tcp(1, "data", sourcePort: 1, mac: 2));
        h.P(Frames.Tcp(5, string.Empty, flags: TcpControlBits.Fin | TcpControlBits.Ack, sourcePort: 1));
        h.S(Frames.Tcp(5, string.Empty, flags: TcpControlBits.Fin | TcpControlBits.Ack, sourcePort: 1, mac: 2));
        h.P(Frames.Udp("idle", sourcePort: 2));
        h.S(Frames.Udp("idle", sourcePort: 2));
        h.P(Frames.Udp("waiting", sourcePort: 3)); // stays queued: its flow must survive
        Assert.Equal(3, h.Counters.Flows);
        h.Advance(300, step: 50);
        // The closed TCP flow is gone after its linger, the empty UDP flow after one scan cycle (a datagram flow with
        // nothing queued holds no state); the one with a queued packet stays, however long it waits.
        Assert.Equal(1, h.Counters.Flows);
        Assert.Equal(2, h.Counters.FlowsExpired);
        h.Advance(1000, step: 50);
        Assert.Equal(1, h.Counters.Flows);
        h.CheckpointCompleted();
        Assert.Equal("waiting", Frames.Text(h.Released[^1]));
        h.AssertAccounting();
    }

    [Fact]
    public void After_failover_primary_frames_pass_straight_through_and_secondary_frames_are_dropped()
    {
        var h = new EngineHarness();
        byte[] queued = Frames.Udp("queued");
        h.P(queued);
        h.Failover();
        Assert.Equal([queued], h.Released);
        byte[] later = Frames.Tcp(1, "later");
        h.P(later);
        h.S(Frames.Tcp(1, "other"));
        Assert.Equal([queued, later], h.Released);
        Assert.All(h.ReleaseReasons, r => Assert.Equal(ReleaseReason.Failover, r));
        Assert.Equal(DropReason.Failover, h.Dropped.Single().Reason);
        Assert.True(h.Engine.IsFailedOver);
        h.AssertAccounting();
    }

    [Fact]
    public void Checkpoint_requests_are_coalesced_until_a_checkpoint_completes()
    {
        var h = new EngineHarness();
        h.P(Frames.Udp("a", sourcePort: 1));
        h.S(Frames.Udp("b", sourcePort: 1));
        h.P(Frames.Udp("c", sourcePort: 2));
        h.S(Frames.Udp("d", sourcePort: 2));
        Assert.Single(h.Requests);
        Assert.Equal(1, h.Counters.CheckpointRequestsCoalesced);
        Assert.True(h.Engine.CheckpointOutstanding);
        h.CheckpointCompleted();
        Assert.False(h.Engine.CheckpointOutstanding);
        h.P(Frames.Udp("e", sourcePort: 3));
        h.S(Frames.Udp("f", sourcePort: 3));
        Assert.Equal(2, h.Requests.Count);
    }

    [Fact]
    public void Bad_options_are_refused_with_the_option_named()
    {
        ArgumentException error = Assert.Throws<ArgumentException>(() => new EngineHarness(new CompareOptions { CompareTimeoutMs = 0 }));
        Assert.Contains("compare_timeout=0", error.Message, StringComparison.Ordinal);
        error = Assert.Throws<ArgumentException>(() => new EngineHarness(new CompareOptions { MaxQueueSize = -1 }));
        Assert.Contains("max_queue_size=-1", error.Message, StringComparison.Ordinal);
    }
}
