namespace ColoChardev.Daemon.Engine;

/// <summary>
/// A growable ring buffer of <see cref="QueuedPacket"/>s: FIFO for datagrams, kept sorted by sequence number for
/// TCP (a new packet is placed from the back, so in-order arrivals cost O(1) and equal sequence numbers keep their
/// arrival order). Packets are built in place (<see cref="Append"/>) to avoid copying them around.
/// </summary>
internal sealed class PacketQueue
{
    private QueuedPacket[] _items = new QueuedPacket[4];
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
        var larger = new QueuedPacket[_items.Length * 2];
        for (int i = 0; i < Count; i++)
        {
            larger[i] = this[i];
        }

        _items = larger;
        _head = 0;
    }
}
