namespace ColoChardev.Daemon.Engine;

/// <summary>
/// A growable ring buffer of <see cref="QueuedPacket"/>s: FIFO for datagrams, kept sorted by sequence number for
/// TCP (a new packet is placed from the back, so in-order arrivals cost O(1) and equal sequence numbers keep their
/// arrival order). Packets are built in place (<see cref="Append"/>) to avoid copying them around.
/// </summary>
internal sealed class PacketQueue(QueueArrayPool arrays)
{
    // An empty queue holds no array: a table of 200,000 idle flows then costs no slots (the arrays go back to the
    // engine's pool, so a queue that empties and fills again allocates nothing).
    private QueuedPacket[] _items = [];
    private int _head;

    public int Count { get; private set; }

    public ref QueuedPacket this[int index] => ref _items[(_head + index) & (_items.Length - 1)];

    public ref QueuedPacket Head => ref _items[_head];

    /// <summary>Adds an empty slot at the back and returns it, to be filled in place.</summary>
    public ref QueuedPacket Append()
    {
        if (Count == _items.Length)
        {
            Grow();
        }

        ref QueuedPacket slot = ref this[Count];
        slot = default;
        Count++;
        return ref slot;
    }

    /// <summary>Moves the packet just appended back to its place in ascending (wrap-aware) sequence order.</summary>
    public void SortLastBySeq()
    {
        int i = Count - 1;
        if (i == 0 || !SeqNumber.LessThan(this[i].Seq, this[i - 1].Seq))
        {
            return;
        }

        QueuedPacket packet = this[i];
        while (i > 0 && SeqNumber.LessThan(packet.Seq, this[i - 1].Seq))
        {
            this[i] = this[i - 1];
            i--;
        }

        this[i] = packet;
    }

    /// <summary>Forgets the head packet (read what you need from <see cref="Head"/> first).</summary>
    public void RemoveHead()
    {
        // Only the frame holds references; the rest is overwritten when the slot is reused.
        _items[_head].Frame = default;
        _head = (_head + 1) & (_items.Length - 1);
        Count--;
        if (Count == 0)
        {
            GiveBack();
        }
    }

    /// <summary>Forgets the packet at <paramref name="index"/>, keeping the order of the others.</summary>
    public void RemoveAt(int index)
    {
        if (index == 0)
        {
            RemoveHead();
            return;
        }

        for (int i = index; i < Count - 1; i++)
        {
            this[i] = this[i + 1];
        }

        this[Count - 1] = default;
        Count--;
        if (Count == 0)
        {
            GiveBack();
        }
    }

    /// <summary>The earliest arrival time in the queue, or <see cref="long.MaxValue"/> when empty.</summary>
    /// <summary>Index of the packet that arrived first (TCP queues are in sequence order, not arrival order); -1 when empty.</summary>
    public int OldestIndex()
    {
        int oldest = -1;
        for (int i = 0; i < Count; i++)
        {
            if (oldest < 0 || this[i].Order < this[oldest].Order)
            {
                oldest = i;
            }
        }

        return oldest;
    }

    public long OldestArrivalMs()
    {
        long oldest = long.MaxValue;
        for (int i = 0; i < Count; i++)
        {
            oldest = Math.Min(oldest, this[i].ArrivalMs);
        }

        return oldest;
    }

    private void Grow()
    {
        QueuedPacket[] larger = arrays.Rent(Math.Max(1, _items.Length * 2));
        for (int i = 0; i < Count; i++)
        {
            larger[i] = this[i];
            this[i] = default;
        }

        if (_items.Length > 0)
        {
            arrays.Return(_items);
        }

        _items = larger;
        _head = 0;
    }

    private void GiveBack()
    {
        arrays.Return(_items);
        _items = [];
        _head = 0;
    }
}

/// <summary>
/// The engine's spare queue arrays, by power-of-two capacity: a queue that empties gives its array back, one that
/// fills takes one. One engine, one thread: no locking. Each capacity keeps at most a few MiB of arrays.
/// </summary>
internal sealed class QueueArrayPool
{
    private const long RetainedBytesPerCapacity = 4L * 1024 * 1024;
    private readonly Stack<QueuedPacket[]>[] _spare = [.. Enumerable.Range(0, 32).Select(_ => new Stack<QueuedPacket[]>())];

    public QueuedPacket[] Rent(int capacity)
    {
        Stack<QueuedPacket[]> spare = _spare[System.Numerics.BitOperations.Log2((uint)capacity)];
        return spare.Count > 0 ? spare.Pop() : new QueuedPacket[capacity];
    }

    public void Return(QueuedPacket[] array)
    {
        int capacity = array.Length;
        Stack<QueuedPacket[]> spare = _spare[System.Numerics.BitOperations.Log2((uint)capacity)];
        if ((long)(spare.Count + 1) * capacity * System.Runtime.CompilerServices.Unsafe.SizeOf<QueuedPacket>() <= RetainedBytesPerCapacity || spare.Count < 4)
        {
            spare.Push(array);
        }
    }
}
