using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.Testbed;

namespace ColoChardev.ColoCompareDaemon.Tests.Engine;

/// <summary>
/// TCP segments out of sequence order, flows first seen mid-stream, and 4-tuples reused by a new connection.
/// </summary>
public class TcpConnectionTests
{
    private const TcpControlBits SynAck = TcpControlBits.Syn | TcpControlBits.Ack;
    private const TcpControlBits FinAck = TcpControlBits.Fin | TcpControlBits.Ack;
    private const TcpControlBits RstAck = TcpControlBits.Rst | TcpControlBits.Ack;

    [Fact]
    public void Primary_segments_that_arrive_out_of_order_are_compared_and_released_in_sequence_order()
    {
        var h = new EngineHarness();
        byte[] late = Frames.Tcp(1003, "3456789");
        byte[] early = Frames.Tcp(1000, "012");
        h.P(late);
        h.P(early);
        h.S(Frames.Tcp(1000, "0123456789", mac: 2));
        Assert.Equal([early, late], h.Released);
        Assert.Equal([ReleaseReason.Matched, ReleaseReason.Matched], h.ReleaseReasons);
        Assert.Empty(h.Requests);
        h.AssertAccounting();
    }

    [Fact]
    public void When_the_secondary_overtakes_the_late_primary_bytes_they_are_still_compared_not_skipped()
    {
        var h = new EngineHarness();
        byte[] late = Frames.Tcp(1003, "3456789");
        byte[] early = Frames.Tcp(1000, "012");
        h.P(late);
        h.S(Frames.Tcp(1000, "0123456789", mac: 2)); // the secondary has bytes 0-2 the primary has not sent yet
        Assert.Empty(h.Released);
        h.Advance(TcpCompareGrace / 2);
        h.P(early);
        Assert.Equal([early, late], h.Released);
        Assert.Equal([ReleaseReason.Matched, ReleaseReason.Matched], h.ReleaseReasons);
        Assert.Empty(h.Requests);

        // And the late bytes really are compared: a difference in them is a mismatch.
        var g = new EngineHarness();
        g.P(Frames.Tcp(1003, "3456789"));
        g.S(Frames.Tcp(1000, "0123456789", mac: 2));
        g.P(Frames.Tcp(1000, "0X2"));
        Assert.Equal(CheckpointReason.Mismatch, g.Requests.Single().Reason);
        Assert.Empty(g.Released);
        h.AssertAccounting();
        g.AssertAccounting();
    }

    [Fact]
    public void A_flow_seen_mid_stream_skips_the_secondarys_earlier_bytes_after_a_grace_and_never_sends_uncompared_primary_bytes_from_before()
    {
        var h = new EngineHarness(new CompareOptions { ExpiredScanCycleMs = 50 });
        byte[] first = Frames.Tcp(1003, "3456789");
        h.P(first);
        h.S(Frames.Tcp(1000, "0123456789", mac: 2));
        h.Advance(TcpCompareGrace + 60);
        Assert.Equal([first], h.Released);
        Assert.Equal(DropReason.Matched, h.Dropped.Single().Reason); // the secondary segment, compared from byte 3 on
        Assert.Empty(h.Requests);

        // Bytes 0-2 arrive from the primary much later: the secondary's copy was skipped, so they cannot be compared.
        // Releasing them as a "retransmission" would send unverified bytes; they wait for a checkpoint instead.
        byte[] straggler = Frames.Tcp(1000, "012");
        byte[] after = Frames.Tcp(1010, "abc");
        h.P(straggler);
        h.P(after);
        h.S(Frames.Tcp(1010, "abc", mac: 2));
        Assert.Equal([first], h.Released);
        (CheckpointReason reason, _, _) = Assert.Single(h.Requests);
        Assert.Equal(CheckpointReason.Uncomparable, reason);
        Assert.Contains("from before sequence number 1003", Assert.Single(h.Divergences).Detail, StringComparison.Ordinal);
        h.CheckpointCompleted();
        Assert.Equal([first, straggler, after], h.Released);
        Assert.Equal(ReleaseReason.Checkpoint, h.ReleaseReasons[1]);

        // After the checkpoint everything the primary sent is the secondary's state: a retransmission is safe again.
        byte[] again = Frames.Tcp(1000, "012");
        h.P(again);
        Assert.Equal(again, h.Released[^1]);
        Assert.Equal(ReleaseReason.Retransmission, h.ReleaseReasons[^1]);
        h.AssertAccounting();
    }

    [Theory]
    [InlineData("fin")]
    [InlineData("rst")]
    [InlineData("none")]
    public void A_new_connection_on_a_reused_4_tuple_is_compared_afresh_even_when_its_isn_is_below_the_old_connections_bytes(string close)
    {
        var h = new EngineHarness();
        OldConnection(h, close);
        int released = h.Released.Count;

        // The new connection's ISN is below everything the old one compared: without fresh state its bytes would
        // count as retransmissions of compared data and leave uncompared.
        h.P(Frames.Tcp(500, "", ack: 7000, flags: SynAck));
        h.S(Frames.Tcp(500, "", ack: 7000, flags: SynAck, mac: 2));
        byte[] data = Frames.Tcp(501, "new hello", ack: 7001);
        h.P(data);
        Assert.Equal(released + 1, h.Released.Count); // only the SYN-ACK so far: the data waits for the secondary's
        h.S(Frames.Tcp(501, "new HELLO", ack: 7001, mac: 2));
        Assert.Equal(CheckpointReason.Mismatch, h.Requests.Single().Reason);
        Assert.Equal(1, h.Counters.ConnectionsReused);
        Assert.DoesNotContain(data, h.Released);
        h.CheckpointCompleted();
        Assert.Equal(data, h.Released[^1]);
        h.AssertAccounting();
    }

    [Fact]
    public void A_retransmitted_syn_is_the_same_connection()
    {
        var h = new EngineHarness();
        h.P(Frames.Tcp(900, "", ack: 7000, flags: SynAck));
        h.S(Frames.Tcp(900, "", ack: 7000, flags: SynAck, mac: 2));
        h.P(Frames.Tcp(901, "hello", ack: 7001));
        h.S(Frames.Tcp(901, "hello", ack: 7001, mac: 2));
        h.P(Frames.Tcp(900, "", ack: 7000, flags: SynAck));
        h.S(Frames.Tcp(900, "", ack: 7000, flags: SynAck, mac: 2));
        byte[] retransmission = Frames.Tcp(901, "hello", ack: 7001);
        h.P(retransmission);
        Assert.Equal(ReleaseReason.Retransmission, h.ReleaseReasons[^1]);
        Assert.Equal(0, h.Counters.ConnectionsReused);
        h.AssertAccounting();
    }

    [Fact]
    public void The_old_connections_last_packets_of_the_side_that_has_not_moved_on_yet_stay_with_the_old_connection()
    {
        var h = new EngineHarness();
        // Old connection: the primary's data is queued, the secondary's twin still on its way.
        h.P(Frames.Tcp(900, "", ack: 7000, flags: SynAck));
        h.S(Frames.Tcp(900, "", ack: 7000, flags: SynAck, mac: 2));
        byte[] oldData = Frames.Tcp(901, "old bytes", ack: 7001);
        h.P(oldData);
        h.P(Frames.Tcp(910, "", ack: 7002, flags: FinAck));

        // The primary moves to a new connection on the same 4-tuple before the secondary's old packets arrive.
        byte[] synAck = Frames.Tcp(300, "", ack: 9000, flags: SynAck);
        h.P(synAck);
        byte[] newData = Frames.Tcp(301, "0123456789", ack: 9001);
        h.P(newData);

        // The secondary's old data and FIN still reach the old connection's comparison and release the old data.
        h.S(Frames.Tcp(901, "old bytes", ack: 7001, mac: 2));
        h.S(Frames.Tcp(910, "", ack: 7002, flags: FinAck, mac: 2));
        Assert.Contains(oldData, h.Released);
        Assert.DoesNotContain(newData, h.Released);

        // The secondary's ACK of the old connection (7002, above the new connection's 9001 in no meaningful way)
        // did not leak into the new one: a segment matched in two pieces waits for the secondary's own new ACK.
        h.S(Frames.Tcp(300, "", ack: 9000, flags: SynAck, mac: 2));
        h.S(Frames.Tcp(301, "01234", ack: 8000, mac: 2));
        h.S(Frames.Tcp(306, "56789", ack: 8000, mac: 2));
        Assert.DoesNotContain(newData, h.Released);
        h.S(Frames.Tcp(311, "", ack: 9001, mac: 2));
        Assert.Equal(newData, h.Released[^1]);
        Assert.Empty(h.Requests);
        Assert.Equal(1, h.Counters.ConnectionsReused);
        h.AssertAccounting();
    }

    [Fact]
    public void A_side_that_never_sends_the_new_connections_syn_is_not_waited_for_after_a_checkpoint()
    {
        var h = new EngineHarness(new CompareOptions { CompareTimeoutMs = 200, ExpiredScanCycleMs = 50 });
        h.P(Frames.Tcp(900, "", ack: 7000, flags: SynAck));
        h.S(Frames.Tcp(900, "", ack: 7000, flags: SynAck, mac: 2));
        h.P(Frames.Tcp(901, "old", ack: 7001));
        h.S(Frames.Tcp(901, "old", ack: 7001, mac: 2));

        // Only the primary answers the new SYN; the secondary gets the connection from the checkpoint.
        h.P(Frames.Tcp(300, "", ack: 9000, flags: SynAck));
        h.P(Frames.Tcp(301, "data", ack: 9001));
        h.Advance(300);
        Assert.Equal(CheckpointReason.PrimaryTimeout, h.Requests.Single().Reason);
        h.CheckpointCompleted();

        // From the checkpoint on the secondary speaks the new connection without a SYN of its own: compared.
        byte[] next = Frames.Tcp(305, "more", ack: 9001);
        h.P(next);
        h.S(Frames.Tcp(305, "more", ack: 9001, mac: 2));
        Assert.Equal(next, h.Released[^1]);
        Assert.Equal(ReleaseReason.Matched, h.ReleaseReasons[^1]);
        h.AssertAccounting();
    }

    [Theory]
    [InlineData(1_000_000u)] // as the socket benchmark's flows, which found it: 2^31 bytes in, at ~1.5 M frames
    [InlineData(0xF000_0000u)] // and across the 32-bit wrap on the way
    public void A_flow_that_carries_more_than_two_gigabytes_stays_compared_without_a_checkpoint(uint start)
    {
        // Comparison starts where the flow was first seen; bytes from before that start are held for a checkpoint.
        // Wrap-safe sequence arithmetic only orders numbers within 2^31 of each other, so the start must not be
        // remembered for ever: 2^31 bytes later, every new byte looked like one from before it (a spurious
        // "Uncomparable" checkpoint, and thousands of frames released uncompared).
        var actions = new CountingActions();
        var engine = new CompareEngine(new CompareOptions(), actions);
        const int segment = 65_000;
        byte[] primary = Frames.Tcp(start, new byte[segment]);
        byte[] secondary = Frames.Tcp(start, new byte[segment], mac: 2);
        const int sequenceOffset = 14 + 20 + 4;
        long segments = ((1L << 31) / segment) + 2_000; // well past 2^31 bytes
        long now = 1_000;
        for (long i = 0; i < segments; i++)
        {
            uint seq = unchecked(start + (uint)(i * segment));
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(primary.AsSpan(sequenceOffset), seq);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(secondary.AsSpan(sequenceOffset), seq);
            engine.OnPrimary(ChardevFrame.Rent(primary, 0), now);
            engine.OnSecondary(ChardevFrame.Rent(secondary, 0), now);
            Assert.True(actions.Requests == 0, $"segment {i} (sequence {seq}, {i * (long)segment} bytes in): checkpoint requested ({actions.LastReason})");
        }

        Assert.Equal(segments, actions.Released);
        Assert.Equal(segments, engine.Counters.ReleasedBy(ReleaseReason.Matched));

        // A straggler from before the start is still held back while the start is recent (the rule itself stays).
        var fresh = new EngineHarness(new CompareOptions { ExpiredScanCycleMs = 50 });
        fresh.P(Frames.Tcp(2_003, "3456789"));
        fresh.S(Frames.Tcp(2_000, "0123456789", mac: 2));
        fresh.Advance(TcpCompareGrace + 60);
        fresh.P(Frames.Tcp(2_000, "012"));
        Assert.Equal(CheckpointReason.Uncomparable, Assert.Single(fresh.Requests).Reason);
    }

    private static long TcpCompareGrace => CompareEngine.MidStreamGraceMs;

    private static void OldConnection(EngineHarness h, string close)
    {
        h.P(Frames.Tcp(900, "", ack: 7000, flags: SynAck));
        h.S(Frames.Tcp(900, "", ack: 7000, flags: SynAck, mac: 2));
        h.P(Frames.Tcp(901, "old hello", ack: 7001));
        h.S(Frames.Tcp(901, "old hello", ack: 7001, mac: 2));
        if (close == "fin")
        {
            h.P(Frames.Tcp(910, "", ack: 7002, flags: FinAck));
            h.S(Frames.Tcp(910, "", ack: 7002, flags: FinAck, mac: 2));
        }
        else if (close == "rst")
        {
            h.P(Frames.Tcp(910, "", ack: 7002, flags: RstAck));
            h.S(Frames.Tcp(910, "", ack: 7002, flags: RstAck, mac: 2));
        }

        Assert.Empty(h.Requests);
    }

    /// <summary>Counts what the engine does, keeping nothing (gigabytes pass through).</summary>
    private sealed class CountingActions : ICompareActions
    {
        public long Released { get; private set; }

        public long Requests { get; private set; }

        public CheckpointReason? LastReason { get; private set; }

        public void Release(ChardevFrame frame, ReleaseReason reason)
        {
            Released++;
            frame.Dispose();
        }

        public void Drop(ChardevFrame frame, PacketSide side, DropReason reason) => frame.Dispose();

        public void RequestCheckpoint(CheckpointReason reason, FlowKey flow)
        {
            Requests++;
            LastReason = reason;
        }

        public void Diverged(Divergence divergence)
        {
        }
    }
}
