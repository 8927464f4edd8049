using ColoChardev.Daemon.Engine;
using ColoChardev.Testbed;

namespace ColoChardev.ColoCompareDaemon.Tests.Engine;

/// <summary>What the engine reports when a flow diverges (the source of divergence captures and events).</summary>
public class DivergenceTests
{
    [Fact]
    public void A_tcp_mismatch_shows_both_queues_marks_the_compared_pair_and_names_the_first_differing_sequence_number()
    {
        var h = new EngineHarness();
        byte[] p1 = Frames.Tcp(1000, "0123456789");
        byte[] p2 = Frames.Tcp(1010, "abcdefghij");
        byte[] s1 = Frames.Tcp(1000, "01234X6789", mac: 2);
        h.P(p1);
        h.P(p2);
        h.S(s1);

        DivergenceCopy d = Assert.Single(h.Divergences);
        Assert.Equal(CheckpointReason.Mismatch, d.Reason);
        Assert.Equal(CompareProtocol.Tcp, d.Protocol);
        Assert.Equal([p1, p2], d.Primary.Select(p => p.Frame));
        Assert.Equal([true, false], d.Primary.Select(p => p.Diverging));
        Assert.Equal(s1, Assert.Single(d.Secondary).Frame);
        Assert.True(d.Secondary[0].Diverging);
        Assert.Contains("TCP payload differs at sequence number 1005", d.Detail, StringComparison.Ordinal);
        Assert.Contains("2 primary and 1 secondary packets queued", d.Detail, StringComparison.Ordinal);
        Assert.Equal(h.Requests[0].Flow, d.Flow);
    }

    [Fact]
    public void A_tcp_mismatch_after_a_partial_match_names_the_byte_where_the_segments_part()
    {
        var h = new EngineHarness();
        h.P(Frames.Tcp(1000, "0123456789"));
        h.S(Frames.Tcp(1000, "01234", mac: 2));
        h.S(Frames.Tcp(1005, "5678X", mac: 2));

        DivergenceCopy d = Assert.Single(h.Divergences);
        Assert.Contains("sequence number 1009 (primary segment 1000+10, secondary segment 1005+5)", d.Detail, StringComparison.Ordinal);
        Assert.Single(d.Secondary); // the matched first half was dropped already
    }

    [Fact]
    public void A_udp_mismatch_names_the_first_differing_byte_after_the_ip_header()
    {
        var h = new EngineHarness();
        h.P(Frames.Udp("answer A"));
        h.S(Frames.Udp("answer B", mac: 2));

        DivergenceCopy d = Assert.Single(h.Divergences);
        Assert.Equal(CompareProtocol.Udp, d.Protocol);
        Assert.Contains("the oldest primary UDP packet has no twin", d.Detail, StringComparison.Ordinal);
        Assert.Contains("first difference at byte 15 after the IP header", d.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void A_primary_timeout_is_reported_once_with_the_packet_that_waited()
    {
        var h = new EngineHarness(new CompareOptions { CompareTimeoutMs = 100, ExpiredScanCycleMs = 10 });
        byte[] waiting = Frames.Udp("nobody answers");
        h.P(waiting);
        h.Advance(150);

        DivergenceCopy d = Assert.Single(h.Divergences);
        Assert.Equal(CheckpointReason.PrimaryTimeout, d.Reason);
        Assert.Equal(waiting, Assert.Single(d.Primary).Frame);
        Assert.True(d.Primary[0].Diverging);
        Assert.Empty(d.Secondary);
        Assert.Matches("the oldest primary packet waited 1[01][0-9] ms for the secondary's \\(compare_timeout 100 ms\\)", d.Detail);
        Assert.Equal(d.NowMs - d.Primary[0].ArrivalMs, long.Parse(d.Detail.Split(' ')[5], System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void In_a_tcp_timeout_the_packet_marked_is_the_one_that_arrived_first_not_the_lowest_sequence()
    {
        var h = new EngineHarness(new CompareOptions { CompareTimeoutMs = 100, ExpiredScanCycleMs = 10 });
        byte[] early = Frames.Tcp(1010, "second half");
        h.P(early);
        h.Advance(50);
        byte[] late = Frames.Tcp(1000, "first hal"); // lower sequence number, queued ahead of the early one
        h.P(late);
        h.Advance(60);

        DivergenceCopy d = Assert.Single(h.Divergences);
        Assert.Equal(CheckpointReason.PrimaryTimeout, d.Reason);
        Assert.Equal([late, early], d.Primary.Select(p => p.Frame));
        Assert.Equal([false, true], d.Primary.Select(p => p.Diverging));
        Assert.Contains("the oldest primary packet waited 1", d.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_mismatch_is_reported_even_when_its_checkpoint_request_is_coalesced_and_a_re_request_is_not_a_new_one()
    {
        var h = new EngineHarness(new CompareOptions { CompareTimeoutMs = 100, ExpiredScanCycleMs = 10 });
        h.P(Frames.Udp("one", sourcePort: 1));
        h.S(Frames.Udp("uno", sourcePort: 1, mac: 2));
        h.P(Frames.Udp("two", sourcePort: 2));
        h.S(Frames.Udp("dos", sourcePort: 2, mac: 2));
        Assert.Equal(2, h.Divergences.Count);
        Assert.Single(h.Requests);
        Assert.NotEqual(h.Divergences[0].Flow, h.Divergences[1].Flow);

        // Unanswered, the request is made again after compare_timeout: the same divergence, not reported twice.
        h.Advance(250);
        Assert.True(h.Requests.Count >= 2);
        Assert.Equal(2, h.Divergences.Count);
    }

    [Fact]
    public void A_frame_dropped_for_the_queue_budget_is_no_divergence_to_show()
    {
        byte[] frame = Frames.Udp("big enough");
        var h = new EngineHarness(new CompareOptions { QueueBudgetBytes = frame.Length });
        h.P(frame);
        h.P(Frames.Udp("over budget", sourcePort: 9));
        Assert.Equal(CheckpointReason.QueueBudget, Assert.Single(h.Requests).Reason);
        Assert.Empty(h.Divergences);
    }

    [Fact]
    public void A_full_queue_is_reported_with_its_packets()
    {
        var h = new EngineHarness(new CompareOptions { MaxQueueSize = 3 });
        for (int i = 0; i < 3; i++)
        {
            h.P(Frames.Udp($"p{i}"));
        }

        DivergenceCopy d = Assert.Single(h.Divergences);
        Assert.Equal(CheckpointReason.QueueFull, d.Reason);
        Assert.Equal(3, d.Primary.Count);
        Assert.DoesNotContain(d.Primary, p => p.Diverging);
        Assert.Contains("a queue reached max_queue_size 3", d.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void The_packets_shown_are_ethernet_frames_without_the_vnet_header()
    {
        var h = new EngineHarness(new CompareOptions { VnetHdrSupport = true });
        byte[] primary = new FrameBuilder().Vnet(12).Ipv4("10.0.0.10", "10.0.0.1").Udp(53, 40000, "answer A"u8).Build();
        byte[] secondary = new FrameBuilder().Vnet(12).SourceMac(2).Ipv4("10.0.0.10", "10.0.0.1").Udp(53, 40000, "answer B"u8).Build();
        h.P(primary, vnet: 12);
        h.S(secondary, vnet: 12);

        DivergenceCopy d = Assert.Single(h.Divergences);
        Assert.Equal(primary[12..], d.Primary[0].Frame);
        Assert.Equal(secondary[12..], d.Secondary[0].Frame);
    }
}
