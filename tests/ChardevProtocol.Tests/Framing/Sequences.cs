using System.Buffers;

namespace ColoChardev.ChardevProtocol.Tests.Framing;

/// <summary>Builds multi-segment <see cref="ReadOnlySequence{T}"/>s, to test every split point.</summary>
internal static class Sequences
{
    public static ReadOnlySequence<byte> Create(params byte[][] chunks)
    {
        if (chunks.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var first = new Segment(chunks[0], 0);
        Segment last = first;
        for (int i = 1; i < chunks.Length; i++)
        {
            last = last.Append(chunks[i]);
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    /// <summary>Splits <paramref name="bytes"/> at the given (ascending) positions.</summary>
    public static ReadOnlySequence<byte> Split(byte[] bytes, params int[] cuts)
    {
        var chunks = new List<byte[]>();
        int start = 0;
        foreach (int cut in cuts)
        {
            chunks.Add(bytes[start..cut]);
            start = cut;
        }

        chunks.Add(bytes[start..]);
        return Create([.. chunks]);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
