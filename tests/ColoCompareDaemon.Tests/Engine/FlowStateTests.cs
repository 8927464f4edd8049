using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.Testbed;

namespace ColoChardev.ColoCompareDaemon.Tests.Engine;

/// <summary>Flow state across checkpoints, and the less common packet kinds.</summary>
public class FlowStateTests
{
    [Fact]
    public void After_a_checkpoint_a_tcp_flow_continues_from_where_the_primary_was()
    {
        var h = new EngineHarness();
        h.P(Frames.Tcp(1000, "0123456789", ack: 700));
        h.S(Frames.Tcp(1000, "01234XXXXX", ack: 600, mac: 2));
        Assert.Single(h.Requests);
        h.P(Frames.Tcp(1010, "abcdefghij", ack: 700));
        h.CheckpointCompleted();
        Assert.Equal(2, h.Released.Count);

        // The secondary now holds the primary's state: it goes on at 1020 with the primary's ACK, segmented its way.
        byte[] next = Frames.Tcp(1020, "klmnopqrst", ack: 700);
        h.P(next);
        h.S(Frames.Tcp(1020, "klmnopqrstuvw", ack: 700, mac: 2));
        Assert.Equal(next, h.Released[^1]);
        Assert.Equal(ReleaseReason.Matched, h.ReleaseReasons[^1]);
        Assert.Single(h.Requests);

        // An old-epoch secondary straggler for bytes the flush released is dropped, not compared.
        h.S(Frames.Tcp(1010, "abcdefghij", ack: 600, mac: 2));
        Assert.Equal(DropReason.AlreadyCompared, h.Dropped[^1].Reason);
        h.AssertAccounting();
    }

    [Fact]
    public void Ip_fragments_are_compared_as_bytes_in_their_own_flow()
    {
        var h = new EngineHarness();
        byte[] first = new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1", id: 9).Fragment(0, true).Udp(5000, 53, new byte[64]).Build();
        byte[] second = new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1", id: 9).Fragment(72, false).RawL4(IpProtocol.Udp, [1, 2, 3, 4]).Build();
        h.P(first);
        h.P(second);
        h.S(new FrameBuilder().SourceMac(2).Ipv4("10.0.0.10", "10.0.0.1", id: 44).Fragment(0, true).Udp(5000, 53, new byte[64]).Build());
        h.S(new FrameBuilder().SourceMac(2).Ipv4("10.0.0.10", "10.0.0.1", id: 44).Fragment(72, false).RawL4(IpProtocol.Udp, [1, 2, 3, 4]).Build());
        Assert.Equal([first, second], h.Released);
        h.P(new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1", id: 10).Fragment(72, false).RawL4(IpProtocol.Udp, [1, 2, 3, 4]).Build());
        h.S(new FrameBuilder().SourceMac(2).Ipv4("10.0.0.10", "10.0.0.1", id: 45).Fragment(72, false).RawL4(IpProtocol.Udp, [1, 2, 3, 5]).Build());
        Assert.Equal(CheckpointReason.Mismatch, h.Requests.Single().Reason);
        Assert.Equal(1, h.Counters.MismatchesBy(CompareProtocol.Other));
        h.AssertAccounting();
    }

    [Fact]
    public void Malformed_primary_frames_are_released_uncompared_and_malformed_secondary_frames_dropped()
    {
        var h = new EngineHarness();
        byte[] truncated = Frames.Udp("truncated")[..30];
        h.P(truncated);
        h.S(truncated);
        Assert.Equal([truncated], h.Released);
        Assert.Equal(1, h.Counters.ReleasedBy(ReleaseReason.Malformed));
        Assert.Equal(1, h.Counters.SecondaryDroppedBy(DropReason.Malformed));
        Assert.Equal(1, h.Counters.PrimaryReleasedUncompared);
        h.AssertAccounting();
    }

    [Fact]
    public void A_secondary_that_sends_data_the_primary_never_sends_times_out_into_a_checkpoint()
    {
        var h = new EngineHarness(new CompareOptions { CompareTimeoutMs = 300, ExpiredScanCycleMs = 100 });
        h.S(Frames.Tcp(1000, "only the secondary says this", mac: 2));
        h.Advance(450);
        Assert.Equal(CheckpointReason.SecondaryTimeout, h.Requests.Single().Reason);
        h.CheckpointCompleted();
        Assert.Equal(0, h.Counters.SecondaryQueued);
        Assert.Equal(DropReason.Checkpoint, h.Dropped.Single().Reason);
    }

    [Fact]
    public void Counters_say_what_happened_by_reason()
    {
        var h = new EngineHarness();
        h.P(Frames.Udp("same"));
        h.S(Frames.Udp("same"));
        h.P(new FrameBuilder().NonIp(EtherTypes.Arp, new byte[28]).Build());
        h.P(Frames.Tcp(1, "x"));
        h.S(Frames.Tcp(1, "y"));
        CompareCounters c = h.Counters;
        Assert.Equal(3, c.PrimaryAccepted);
        Assert.Equal(2, c.SecondaryAccepted);
        Assert.Equal(1, c.ReleasedBy(ReleaseReason.Matched));
        Assert.Equal(1, c.ReleasedBy(ReleaseReason.NonIp));
        Assert.Equal(1, c.SecondaryDroppedBy(DropReason.Matched));
        Assert.Equal(1, c.PrimaryQueued);
        Assert.Equal(1, c.SecondaryQueued);
        Assert.Equal(1, c.MismatchesBy(CompareProtocol.Tcp));
        Assert.Equal(1, c.CheckpointRequestsBy(CheckpointReason.Mismatch));
        Assert.Equal(2, c.Flows);
        Assert.True(c.QueuedBytes > 0);
        h.AssertAccounting();
    }

    [Fact]
    public void Forgotten_flows_are_reused_with_fresh_state_and_unused_spares_are_let_go()
    {
        var h = new EngineHarness(new CompareOptions { ExpiredScanCycleMs = 100 });
        for (int port = 1; port <= 20_000; port++)
        {
            h.P(Frames.Udp("same", sourcePort: (ushort)port));
            h.S(Frames.Udp("same", sourcePort: (ushort)port, mac: 2));
        }

        Assert.Equal(20_000, h.Counters.Flows);
        h.Advance(200, step: 100);
        // Every matched datagram flow is forgotten within a scan, and kept for reuse: the default budget has room.
        Assert.Equal(0, h.Counters.Flows);
        Assert.Equal(20_000, h.Engine.SpareFlowCount);
        Assert.True(h.Engine.SpareFlowCount <= new CompareOptions().QueueBudgetBytes / CompareEngine.FlowCostBytes);

        for (int port = 30_001; port <= 35_000; port++)
        {
            h.P(Frames.Udp("again", sourcePort: (ushort)port));
            h.S(Frames.Udp("again", sourcePort: (ushort)port, mac: 2));
        }

        // The new flows took spares instead of new objects, and compared from a clean slate.
        Assert.Equal(15_000, h.Engine.SpareFlowCount);
        Assert.Equal(25_000, h.Released.Count);
        Assert.All(h.ReleaseReasons, r => Assert.Equal(ReleaseReason.Matched, r));
        Assert.Empty(h.Requests);
        h.P(Frames.Udp("one", sourcePort: 35_001));
        h.S(Frames.Udp("two", sourcePort: 35_001, mac: 2));
        Assert.Equal(CheckpointReason.Mismatch, Assert.Single(h.Requests).Reason);

        // Spares that no new flow takes shrink back, half of the surplus per scan, to the floor kept for churn.
        h.CheckpointCompleted();
        h.Advance(6000, step: 100);
        Assert.Equal(0, h.Counters.Flows);
        Assert.Equal(4096, h.Engine.SpareFlowCount);
        h.AssertAccounting();
    }
}
