using System.Buffers;
using System.Collections.Concurrent;

namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>
/// The memory the connections' pipes read into and write from. <see cref="MemoryPool{T}.Shared"/> allocates a new
/// owner object for every block it hands out (one per socket read and per flush: ~100 KB/s of garbage at full
/// rate); this pool keeps both the blocks and their owners, so a connection in steady state allocates nothing.
/// Blocks are <see cref="BlockSize"/> bytes; at most <see cref="MaxKept"/> free blocks are kept.
/// </summary>
internal sealed class ReusableMemoryPool(int blockSize, int maxKept) : MemoryPool<byte>
{
    private readonly ConcurrentQueue<Block> _free = new();

    public int BlockSize { get; } = blockSize;

    public int MaxKept { get; } = maxKept;

    public override int MaxBufferSize => BlockSize;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        if (minBufferSize > BlockSize)
        {
            return new Block(null, new byte[minBufferSize]); // larger than a block: not kept
        }

        return _free.TryDequeue(out Block? block) ? block.Reuse() : new Block(this, new byte[BlockSize]);
    }

    protected override void Dispose(bool disposing)
    {
    }

    private void Return(Block block)
    {
        if (_free.Count < MaxKept)
        {
            _free.Enqueue(block);
        }
    }

    private sealed class Block(ReusableMemoryPool? pool, byte[] array) : IMemoryOwner<byte>
    {
        private int _rented = 1;

        public Memory<byte> Memory => Volatile.Read(ref _rented) == 1 ? array : throw new ObjectDisposedException(nameof(Block));

        public Block Reuse()
        {
            Volatile.Write(ref _rented, 1);
            return this;
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _rented, 0) == 1)
            {
                pool?.Return(this);
            }
        }
    }
}
