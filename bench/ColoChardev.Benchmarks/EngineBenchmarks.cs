using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;
using ColoChardev.Testbed;

namespace ColoChardev.Benchmarks;

/// <summary>
/// The comparator engine alone, on one core: one operation is one primary TCP segment and its secondary twin going
/// through the engine (parse, flow lookup, queue, compare, release and drop). Frames wrap one primary and one
/// secondary buffer whose ports and sequence numbers are rewritten in place: like a frame just copied from the
/// socket, the bytes are in cache, and what is measured is the engine, not buffer copies.
/// </summary>
public class EngineBenchmarks
{
    private const int SegmentsPerInvoke = 1000;
    private const int PayloadLength = 1400;
    private const int SeqOffset = 14 + 20 + 4;
    private const int PortOffset = 14 + 20;
    private const int AddressOffset = 14 + 16 + 2;
    private CompareEngine _engine = null!;
    private byte[] _primary = null!;
    private byte[] _secondary = null!;
    private uint[] _seq = null!;
    private int _next;
    private long _now;

    [Params(1, 10_000)]
    public int Flows { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _engine = new CompareEngine(new CompareOptions(), new DiscardActions());
        _seq = new uint[Flows];
        byte[] payload = new byte[PayloadLength];
        new Random(1).NextBytes(payload);
        _primary = new FrameBuilder().SourceMac(1).Ipv4("10.0.0.10", "10.1.0.1", 1).Tcp(1, 80, 0, 1, TcpControlBits.Ack | TcpControlBits.Psh, payload).Build();
        _secondary = new FrameBuilder().SourceMac(2).Ipv4("10.0.0.10", "10.1.0.1", 2).Tcp(1, 80, 0, 1, TcpControlBits.Ack | TcpControlBits.Psh, payload).Build();

        // Warm the flow table so the measured operations find their flows.
        for (int i = 0; i < Flows; i++)
        {
            ComparePair();
        }
    }

    [Benchmark(OperationsPerInvoke = SegmentsPerInvoke)]
    public long MatchingTcpSegments()
    {
        for (int i = 0; i < SegmentsPerInvoke; i++)
        {
            ComparePair();
        }

        return _engine.Counters.PrimaryReleased;
    }

    private void ComparePair()
    {
        int f = _next;
        _next = f + 1 == Flows ? 0 : f + 1;
        uint seq = _seq[f];
        _seq[f] = seq + PayloadLength;
        Address(_primary, f, seq);
        Address(_secondary, f, seq);
        _engine.OnPrimary(ChardevFrame.Wrap(_primary, _primary.Length, 0), ++_now);
        _engine.OnSecondary(ChardevFrame.Wrap(_secondary, _secondary.Length, 0), _now);
    }

    /// <summary>Flow f: source port 1 + f % 60000 and the third address byte f / 60000; then its sequence number.</summary>
    private static void Address(byte[] frame, int flow, uint seq)
    {
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(PortOffset), (ushort)(1 + (flow % 60000)));
        frame[AddressOffset] = (byte)(flow / 60000);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(SeqOffset), seq);
    }

    private sealed class DiscardActions : ICompareActions
    {
        public void Release(ChardevFrame frame, ReleaseReason reason)
        {
        }

        public void Drop(ChardevFrame frame, PacketSide side, DropReason reason)
        {
        }

        public void RequestCheckpoint(CheckpointReason reason, FlowKey flow) =>
            throw new InvalidOperationException($"identical traffic requested a checkpoint: {reason} on {flow}");

        public void Diverged(Divergence divergence) =>
            throw new InvalidOperationException($"identical traffic diverged: {divergence.Describe()}");
    }
}
