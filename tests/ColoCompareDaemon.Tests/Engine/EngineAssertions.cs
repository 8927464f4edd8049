using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.Testbed;

namespace ColoChardev.ColoCompareDaemon.Tests.Engine;

/// <summary>Checks of the engine's accounting.</summary>
internal static class EngineHarnessAssertions
{
    /// <summary>Every accepted primary frame is released exactly once, dropped with a reason, or still queued.</summary>
    public static void AssertAccounting(this EngineHarness h)
    {
        CompareCounters c = h.Counters;
        Assert.Equal(c.PrimaryAccepted, c.PrimaryReleased + c.PrimaryDropped + c.PrimaryQueued);
        Assert.Equal(c.SecondaryAccepted, c.SecondaryDropped + c.SecondaryQueued);
        Assert.Equal(h.Released.Count, c.PrimaryReleased);
        Assert.Equal(h.Dropped.Count(d => d.Side == PacketSide.Primary), c.PrimaryDropped);
        Assert.Equal(h.Requests.Count, c.CheckpointRequests);
        Assert.True(c.PrimaryQueued >= 0 && c.SecondaryQueued >= 0 && c.QueuedBytes >= 0);
        if (c.PrimaryQueued == 0 && c.SecondaryQueued == 0)
        {
            Assert.Equal(0, c.QueuedBytes);
        }

        // The primary's share of the queued bytes (what the queue budget's back-pressure compares sides by).
        Assert.InRange(c.PrimaryQueuedBytes, 0, c.QueuedBytes);
        Assert.Equal(c.PrimaryQueued == 0, c.PrimaryQueuedBytes == 0);
        Assert.Equal(c.SecondaryQueued == 0, c.PrimaryQueuedBytes == c.QueuedBytes);
    }
}

/// <summary>Frames for engine tests: one TCP flow guest:80 → client:40000 unless told otherwise.</summary>
internal static class Frames
{
    public static byte[] Tcp(uint seq, string payload, uint ack = 5000, TcpControlBits flags = TcpControlBits.Ack | TcpControlBits.Psh, ushort ipId = 1, byte ttl = 64, byte mac = 1, byte[]? options = null, ushort sourcePort = 80) =>
        Tcp(seq, System.Text.Encoding.ASCII.GetBytes(payload), ack, flags, ipId, ttl, mac, options, sourcePort);

    public static byte[] Tcp(uint seq, byte[] payload, uint ack = 5000, TcpControlBits flags = TcpControlBits.Ack | TcpControlBits.Psh, ushort ipId = 1, byte ttl = 64, byte mac = 1, byte[]? options = null, ushort sourcePort = 80) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", ipId, ttl).Tcp(sourcePort, 40000, seq, ack, flags, payload, options).Build();

    public static byte[] Udp(string payload, ushort sourcePort = 53, ushort ipId = 1, byte ttl = 64, byte mac = 1) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", ipId, ttl).Udp(sourcePort, 40000, System.Text.Encoding.ASCII.GetBytes(payload)).Build();

    public static byte[] Icmp(string payload, ushort ipId = 1, byte ttl = 64, byte mac = 1) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", ipId, ttl).Icmp(0, 0, 7, 1, System.Text.Encoding.ASCII.GetBytes(payload)).Build();

    public static string Text(byte[] frame)
    {
        Assert.True(PacketParser.TryParse(frame, 0, out ParsedPacket packet));
        return System.Text.Encoding.ASCII.GetString(frame, packet.PayloadOffset, packet.PayloadLength);
    }
}
