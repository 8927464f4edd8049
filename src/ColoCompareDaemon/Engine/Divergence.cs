using System.Globalization;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>
/// A flow at the moment the engine found it diverging (a mismatch, or a timeout or full queue that asks for a
/// checkpoint): its queued packets on both sides, oldest first, and which of them are the diverging pair. A view of
/// the engine's queues, valid only during <see cref="ICompareActions.Diverged"/>: copy what you keep, dispose nothing.
/// </summary>
public readonly ref struct Divergence
{
    private readonly Flow _flow;
    private readonly CompareOptions _options;

    /// <summary>For a timeout, the index of the packet that waited too long; -1 otherwise.</summary>
    private readonly int _timedOut;

    internal Divergence(CheckpointReason reason, Flow flow, CompareOptions options, long nowMs)
    {
        Reason = reason;
        _flow = flow;
        _options = options;
        NowMs = nowMs;
        _timedOut = reason switch
        {
            CheckpointReason.PrimaryTimeout => flow.Primary.OldestIndex(),
            CheckpointReason.SecondaryTimeout => flow.Secondary.OldestIndex(),
            _ => -1,
        };
    }

    public CheckpointReason Reason { get; }

    /// <summary>The engine's clock when the divergence was found (the same clock as <see cref="ArrivalMs"/>).</summary>
    public long NowMs { get; }

    public FlowKey Flow => _flow.Id.Key;

    public CompareProtocol Protocol => _flow.Protocol;

    /// <summary>Packets queued on <paramref name="side"/>, the diverging ones included.</summary>
    public int Count(PacketSide side) => Queue(side).Count;

    /// <summary>The Ethernet frame of a queued packet (vnet header left out), oldest (or lowest sequence) first.</summary>
    public ReadOnlySpan<byte> Packet(PacketSide side, int index)
    {
        ChardevFrame frame = Queue(side)[index].Frame;
        int vnet = _options.VnetHdrSupport ? (int)Math.Min(frame.VnetHdrLen, (uint)frame.Length) : 0;
        return frame.Payload[vnet..];
    }

    /// <summary>When a queued packet arrived (the engine's clock, ms).</summary>
    public long ArrivalMs(PacketSide side, int index) => Queue(side)[index].ArrivalMs;

    /// <summary>Arrival number over both sides: sorting by it gives the order the daemon saw the packets in.</summary>
    public long Order(PacketSide side, int index) => Queue(side)[index].Order;

    /// <summary>
    /// Whether this queued packet is one of the pair that made the flow diverge: for a mismatch the two heads
    /// compared last; for a timeout the packet that waited too long (the first to arrive, which in a TCP queue kept
    /// in sequence order need not be the head).
    /// </summary>
    public bool IsDiverging(PacketSide side, int index) => Reason switch
    {
        CheckpointReason.Mismatch => index == 0,
        CheckpointReason.Uncomparable => side == PacketSide.Primary && index == 0,
        CheckpointReason.PrimaryTimeout => side == PacketSide.Primary && index == _timedOut,
        CheckpointReason.SecondaryTimeout => side == PacketSide.Secondary && index == _timedOut,
        _ => false,
    };

    /// <summary>One sentence on what differs, for a capture's comment, the log and the control socket's event.</summary>
    public string Describe()
    {
        PacketQueue primary = _flow.Primary;
        PacketQueue secondary = _flow.Secondary;
        string queued = string.Create(CultureInfo.InvariantCulture, $"{primary.Count} primary and {secondary.Count} secondary packets queued");
        switch (Reason)
        {
            case CheckpointReason.Mismatch when primary.Count > 0 && secondary.Count > 0:
                ref QueuedPacket p = ref primary.Head;
                ref QueuedPacket s = ref secondary.Head;
                if (Protocol == CompareProtocol.Tcp)
                {
                    int length = Math.Min(p.DataLength - p.Compared, s.DataLength - s.Compared);
                    int at = FirstDifference(p.Data.Slice(p.Compared, length), s.Data.Slice(s.Compared, length), -1);
                    uint seq = p.Seq + (uint)p.Compared + (uint)Math.Max(at, 0);
                    return string.Create(CultureInfo.InvariantCulture,
                        $"TCP payload differs at sequence number {seq} (primary segment {p.Seq}+{p.DataLength}, secondary segment {s.Seq}+{s.DataLength}); {queued}");
                }

                int first = FirstDifference(p.Data, s.Data, p.ChecksumAt);
                string where = p.DataLength != s.DataLength
                    ? $"{p.DataLength} bytes against {s.DataLength}"
                    : $"first difference at byte {first} after the IP header";
                string kind = Protocol switch { CompareProtocol.Udp => "UDP", CompareProtocol.Icmp => "ICMP", _ => "IP" };
                return string.Create(CultureInfo.InvariantCulture,
                    $"the oldest primary {kind} packet has no twin among the secondary's; against the oldest secondary one: {where}; {queued}");
            case CheckpointReason.PrimaryTimeout when primary.Count > 0:
                return string.Create(CultureInfo.InvariantCulture,
                    $"the oldest primary packet waited {NowMs - primary.OldestArrivalMs()} ms for the secondary's (compare_timeout {_options.CompareTimeoutMs} ms); {queued}");
            case CheckpointReason.SecondaryTimeout when secondary.Count > 0:
                return string.Create(CultureInfo.InvariantCulture,
                    $"the oldest secondary packet waited {NowMs - secondary.OldestArrivalMs()} ms for the primary's (compare_timeout {_options.CompareTimeoutMs} ms); {queued}");
            case CheckpointReason.Uncomparable when primary.Count > 0 && _flow.HasCompareStart:
                return string.Create(CultureInfo.InvariantCulture,
                    $"TCP primary segment {primary.Head.Seq}+{primary.Head.DataLength} has bytes from before sequence number {_flow.CompareStartSeq}, where comparison of the flow began (the secondary's copy was skipped), so they cannot be compared; {queued}");
            case CheckpointReason.QueueFull:
                return string.Create(CultureInfo.InvariantCulture, $"a queue reached max_queue_size {_options.MaxQueueSize}; {queued}");
            default:
                return string.Create(CultureInfo.InvariantCulture, $"{Reason}; {queued}");
        }
    }

    private PacketQueue Queue(PacketSide side) => side == PacketSide.Primary ? _flow.Primary : _flow.Secondary;

    /// <summary>Index of the first differing byte (the checksum at <paramref name="skip"/> excepted), or -1.</summary>
    private static int FirstDifference(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, int skip)
    {
        int length = Math.Min(a.Length, b.Length);
        for (int i = 0; i < length; i++)
        {
            if (a[i] != b[i] && (skip < 0 || i < skip || i >= skip + 2))
            {
                return i;
            }
        }

        return a.Length == b.Length ? -1 : length;
    }
}
