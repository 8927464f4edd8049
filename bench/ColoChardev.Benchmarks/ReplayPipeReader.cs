using System.Buffers;
using System.IO.Pipelines;

namespace ColoChardev.Benchmarks;

/// <summary>
/// A PipeReader that hands out one fixed byte sequence, a socket read at a time, and can be rewound: the reader
/// benchmark measures our code, not pipe allocation. It never reports completion (a connection that stays open).
/// </summary>
internal sealed class ReplayPipeReader : PipeReader
{
    private readonly ReadOnlySequence<byte> _data;
    private ReadOnlySequence<byte> _remaining;
    private long _available;

    public ReplayPipeReader(ReadOnlySequence<byte> data)
    {
        _data = data;
        _remaining = data;
    }

    public void Rewind()
    {
        _remaining = _data;
        _available = 0;
    }

    public override bool TryRead(out ReadResult result)
    {
        // Each read exposes one more 64 KiB segment, like successive socket reads.
        _available = Math.Min(_remaining.Length, Math.Max(_available, 0) + 64 * 1024);
        result = new ReadResult(_remaining.Slice(0, _available), isCanceled: false, isCompleted: false);
        return true;
    }

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        TryRead(out ReadResult result);
        return ValueTask.FromResult(result);
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        long before = _remaining.Length;
        _remaining = _remaining.Slice(consumed);
        _available -= before - _remaining.Length;
    }

    public override void CancelPendingRead()
    {
    }

    public override void Complete(Exception? exception = null)
    {
    }
}
