using System.Text;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.Testbed;

namespace ColoChardev.ColoCompareDaemon.Tests.Engine;

public class BypassRuleTests
{
    private static FlowKey Flow(byte[] frame)
    {
        Assert.True(PacketParser.TryParse(frame, 0, out ParsedPacket packet));
        return packet.Flow;
    }

    private static byte[] Tcp(string source, string destination, ushort sourcePort, ushort destinationPort, string payload = "x", byte mac = 1, uint seq = 100) =>
        new FrameBuilder().SourceMac(mac).Ipv4(source, destination).Tcp(sourcePort, destinationPort, seq, 1, TcpControlBits.Ack | TcpControlBits.Psh, Encoding.ASCII.GetBytes(payload)).Build();

    [Theory]
    [InlineData("proto=tcp,port=3389", "proto=tcp,port=3389")]
    [InlineData("port=3389, proto=tcp", "proto=tcp,port=3389")]
    [InlineData("host=10.0.0.0/8", "host=10.0.0.0/8")]
    [InlineData("host=10.0.0.7", "host=10.0.0.7/32")]
    [InlineData("proto=udp,host=[fd00::1]/64,port=5000-5010", "proto=udp,host=[fd00::1]/64,port=5000-5010")]
    [InlineData("proto=47", "proto=47")]
    public void Rules_parse_to_one_canonical_form(string text, string canonical) => Assert.Equal(canonical, BypassRule.Parse(text).Text);

    [Theory]
    [InlineData("", "is not KEY=VALUE")]
    [InlineData("colour=red", "'colour' is unknown or given twice")]
    [InlineData("port=1,port=2", "'port' is unknown or given twice")]
    [InlineData("proto=smtp", "proto 'smtp' is not")]
    [InlineData("host=example.org", "is not an IP address")]
    [InlineData("host=10.0.0.0/33", "prefix must be 0 to 32")]
    [InlineData("port=0", "within 1-65535")]
    [InlineData("port=9-1", "within 1-65535")]
    [InlineData("proto=icmp,port=7", "has no ports")]
    public void Bad_rules_are_refused_saying_why(string text, string why)
    {
        FormatException e = Assert.Throws<FormatException>(() => BypassRule.Parse(text));
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
        Assert.Contains("e.g. proto=tcp,host=10.0.0.0/24,port=3389", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Host_and_port_match_either_end_of_the_flow()
    {
        BypassRule rdp = BypassRule.Parse("proto=tcp,port=3389");
        Assert.True(rdp.Matches(Flow(Tcp("10.0.0.2", "10.0.0.1", 3389, 50000))));
        Assert.True(rdp.Matches(Flow(Tcp("10.0.0.1", "10.0.0.2", 50000, 3389))));
        Assert.False(rdp.Matches(Flow(Tcp("10.0.0.2", "10.0.0.1", 80, 50000))));
        Assert.False(rdp.Matches(Flow(new FrameBuilder().Ipv4("10.0.0.2", "10.0.0.1").Udp(3389, 50000, "x"u8).Build())));
        BypassRule net = BypassRule.Parse("host=192.168.1.0/24");
        Assert.True(net.Matches(Flow(Tcp("192.168.1.200", "10.0.0.1", 1, 2))));
        Assert.True(net.Matches(Flow(Tcp("10.0.0.1", "192.168.1.3", 1, 2))));
        Assert.False(net.Matches(Flow(Tcp("192.168.2.1", "10.0.0.1", 1, 2))));
        Assert.False(net.Matches(Flow(new FrameBuilder().Ipv6("fd00::1", "fd00::2").Udp(1, 2, "x"u8).Build())));
        BypassRule v6 = BypassRule.Parse("host=fd00::/16,port=53");
        Assert.True(v6.Matches(Flow(new FrameBuilder().Ipv6("2001:db8::1", "fd00::2").Udp(40000, 53, "x"u8).Build())));
        Assert.False(v6.Matches(Flow(new FrameBuilder().Ipv6("2001:db8::1", "fd00::2").Udp(40000, 54, "x"u8).Build())));
        Assert.False(v6.Matches(Flow(new FrameBuilder().Ipv6("2001:db8::1", "2001:db8::2").Udp(40000, 53, "x"u8).Build())));
    }

    [Fact]
    public void A_bypassed_flow_is_released_uncompared_and_never_asks_for_a_checkpoint_while_others_still_do()
    {
        var h = new EngineHarness(new CompareOptions { Bypass = [BypassRule.Parse("proto=tcp,port=3389")] });
        byte[] rdp = Tcp("10.0.0.2", "10.0.0.1", 3389, 50000, "primary's screen");
        h.P(rdp);
        h.S(Tcp("10.0.0.2", "10.0.0.1", 3389, 50000, "secondary's screen!", mac: 2));
        Assert.Equal([rdp], h.Released);
        Assert.Equal([ReleaseReason.Bypass], h.ReleaseReasons);
        Assert.Contains(h.Dropped, d => d.Side == PacketSide.Secondary && d.Reason == DropReason.Bypass);
        h.Advance(10_000);
        Assert.Empty(h.Requests);

        h.P(Tcp("10.0.0.2", "10.0.0.1", 80, 50000, "primary says"));
        h.S(Tcp("10.0.0.2", "10.0.0.1", 80, 50000, "second says", mac: 2));
        Assert.Equal(CheckpointReason.Mismatch, Assert.Single(h.Requests).Reason);
        Assert.Equal(1, h.Counters.ReleasedBy(ReleaseReason.Bypass));
        Assert.Equal(h.Counters.PrimaryAccepted, h.Counters.PrimaryReleased + h.Counters.PrimaryDropped + h.Counters.PrimaryQueued);
    }

    [Fact]
    public void A_rule_added_while_its_flow_has_packets_queued_releases_them_first_in_order()
    {
        var h = new EngineHarness();
        byte[] first = Tcp("10.0.0.2", "10.0.0.1", 3389, 50000, "frame one", seq: 100);
        byte[] second = Tcp("10.0.0.2", "10.0.0.1", 3389, 50000, "frame two", seq: 109);
        byte[] other = Tcp("10.0.0.2", "10.0.0.1", 80, 50000, "not bypassed");
        h.P(first);
        h.P(second);
        h.P(other);
        h.S(Tcp("10.0.0.2", "10.0.0.1", 3389, 50000, "frame 1!!", seq: 100, mac: 2));
        Assert.Empty(h.Released);
        Assert.Equal(CheckpointReason.Mismatch, Assert.Single(h.Requests).Reason);

        Assert.Null(h.Engine.UpdateOptions(h.Engine.Options with { Bypass = [BypassRule.Parse("port=3389")] }));
        Assert.Equal([first, second], h.Released);
        Assert.Equal([ReleaseReason.Bypass, ReleaseReason.Bypass], h.ReleaseReasons);
        Assert.Equal(DropReason.Bypass, h.Dropped[^1].Reason);
        Assert.Equal(1, h.Counters.PrimaryQueued); // port 80 is not the rule's: still waiting for its twin

        byte[] third = Tcp("10.0.0.2", "10.0.0.1", 3389, 50000, "frame three", seq: 118);
        h.P(third);
        Assert.Equal([first, second, third], h.Released);
        Assert.Equal(h.Counters.PrimaryAccepted, h.Counters.PrimaryReleased + h.Counters.PrimaryDropped + h.Counters.PrimaryQueued);
    }

    [Fact]
    public void Rules_change_at_run_time_for_the_packets_that_follow()
    {
        var h = new EngineHarness();
        Assert.Null(h.Engine.UpdateOptions(h.Engine.Options with { Bypass = [BypassRule.Parse("host=10.0.0.9")] }));
        byte[] frame = Tcp("10.0.0.9", "10.0.0.1", 80, 50000, "alone");
        h.P(frame);
        Assert.Equal([frame], h.Released);
        Assert.Null(h.Engine.UpdateOptions(h.Engine.Options with { Bypass = [] }));
        h.P(Tcp("10.0.0.9", "10.0.0.1", 80, 50000, "now compared", seq: 105));
        Assert.Single(h.Released);
        Assert.Equal(1, h.Counters.PrimaryQueued);
    }
}
