using System.Buffers;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;

namespace ColoChardev.Benchmarks;

internal static class SampleFrames
{
    /// <summary>An IPv4 TCP frame of exactly <paramref name="size"/> bytes (54 bytes of headers).</summary>
    public static byte[] Tcp(int size) =>
        new FrameBuilder().Ipv4("10.0.0.1", "10.0.0.2").Tcp(80, 40000, 1, 1, TcpControlBits.Ack | TcpControlBits.Psh, new byte[size - 54]).Build();

    public static ReadOnlySequence<byte> Segmented(ReadOnlyMemory<byte> bytes, int segmentSize)
    {
        Segment? first = null;
        Segment? last = null;
        for (int offset = 0; offset < bytes.Length; offset += segmentSize)
        {
            ReadOnlyMemory<byte> slice = bytes.Slice(offset, Math.Min(segmentSize, bytes.Length - offset));
            var next = new Segment(slice, offset);
            if (last is null)
            {
                first = next;
            }
            else
            {
                last.SetNext(next);
            }

            last = next;
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public void SetNext(Segment next) => Next = next;
    }
}
