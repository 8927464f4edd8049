using System.Buffers;
using System.Numerics;

namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>
/// The pool that received frames live in. Unlike <see cref="ArrayPool{T}.Shared"/>, which keeps only a few dozen
/// arrays per size, it keeps as many as a comparator holds at once (a socket read of 64-byte frames alone yields
/// ~1,000, and queues hold up to max_queue_size per flow), so frames cost no allocation in steady state.
/// Size classes are the powers of two from 64 bytes to 128 KiB and the midpoints between them (96, 192, ..., 1,536,
/// ...), so a full-size Ethernet frame (1,514 bytes, 1,526 with a virtio-net header) takes 1,536 bytes, not 2,048:
/// queues full of them hold 5 % more than their bytes instead of 40 %. Each class keeps at most
/// <see cref="MaxRetainedPerClass"/> arrays and at most <see cref="RetainedBytesPerClass"/> bytes.
/// </summary>
public sealed class FrameBufferPool : ArrayPool<byte>
{
    private const int MinimumSize = 64;
    private const int MaximumSize = 128 * 1024;
    private readonly SizeClass[] _classes;

    public FrameBufferPool(int maxRetainedPerClass = 16_384, long retainedBytesPerClass = 32L * 1024 * 1024)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxRetainedPerClass);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(retainedBytesPerClass);
        MaxRetainedPerClass = maxRetainedPerClass;
        RetainedBytesPerClass = retainedBytesPerClass;
        _classes = new SizeClass[ClassIndex(MaximumSize) + 1];
        for (int i = 0; i < _classes.Length; i++)
        {
            int size = ClassSize(i);
            _classes[i] = new SizeClass(size, (int)Math.Clamp(retainedBytesPerClass / size, 1, maxRetainedPerClass));
        }
    }

    /// <summary>The pool every endpoint uses unless told otherwise.</summary>
    public static new FrameBufferPool Shared { get; } = new();

    /// <summary>Most arrays kept per size class.</summary>
    public int MaxRetainedPerClass { get; }

    /// <summary>Most bytes kept per size class.</summary>
    public long RetainedBytesPerClass { get; }

    /// <summary>Arrays currently kept, over all classes (for tests and diagnostics).</summary>
    public int RetainedCount
    {
        get
        {
            int count = 0;
            foreach (SizeClass sizeClass in _classes)
            {
                count += sizeClass.Count;
            }

            return count;
        }
    }

    public override byte[] Rent(int minimumLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minimumLength);
        if (minimumLength > MaximumSize)
        {
            return new byte[minimumLength];
        }

        SizeClass sizeClass = _classes[ClassIndex(minimumLength)];
        return sizeClass.TryTake() ?? new byte[sizeClass.Size];
    }

    public override void Return(byte[] array, bool clearArray = false)
    {
        ArgumentNullException.ThrowIfNull(array);
        int length = array.Length;
        if (length < MinimumSize || length > MaximumSize || _classes[ClassIndex(length)].Size != length)
        {
            return; // not one of ours: let the GC have it
        }

        if (clearArray)
        {
            Array.Clear(array);
        }

        _classes[ClassIndex(length)].TryKeep(array);
    }

    /// <summary>
    /// The smallest class that holds <paramref name="length"/> bytes. Class 2k is 64·2^k bytes, class 2k+1 is 96·2^k:
    /// 64, 96, 128, 192, 256, ...
    /// </summary>
    private static int ClassIndex(int length)
    {
        if (length <= MinimumSize)
        {
            return 0;
        }

        int power = BitOperations.Log2((uint)length - 1); // 2^power < length <= 2^(power+1)
        int octave = power - 5; // 64·2^(octave-1) < length <= 64·2^octave
        return length <= 3 << (power - 1) ? (2 * octave) - 1 : 2 * octave;
    }

    private static int ClassSize(int index) => index % 2 == 0 ? MinimumSize << (index / 2) : 96 << (index / 2);

    /// <summary>A lock-protected stack of same-size arrays; the slot array grows by doubling up to its cap.</summary>
    private sealed class SizeClass(int size, int capacity)
    {
        private readonly Lock _lock = new();
        private byte[]?[] _items = new byte[]?[Math.Min(capacity, 64)];
        private int _count;

        public int Size { get; } = size;

        public int Count => Volatile.Read(ref _count);

        public byte[]? TryTake()
        {
            lock (_lock)
            {
                if (_count == 0)
                {
                    return null;
                }

                byte[]? array = _items[--_count];
                _items[_count] = null;
                return array;
            }
        }

        public void TryKeep(byte[] array)
        {
            lock (_lock)
            {
                if (_count == _items.Length)
                {
                    if (_items.Length >= capacity)
                    {
                        return;
                    }

                    Array.Resize(ref _items, Math.Min(capacity, _items.Length * 2));
                }

                _items[_count++] = array;
            }
        }
    }
}
