namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>
/// Counters of one chardev endpoint, shared by all its successive connections. Updated by the endpoint's
/// reader and writer, readable from any thread.
/// </summary>
public sealed class ChardevStatistics
{
    private long _framesRead;
    private long _bytesRead;
    private long _zeroLengthFrames;
    private long _truncatedFrames;
    private long _oversizedFrames;
    private long _framesWritten;
    private long _bytesWritten;
    private long _connections;
    private long _refusedPeers;
    private long _readYields;
    private long _bytesIgnored;

    /// <summary>Frames with a non-empty payload handed on to the consumer.</summary>
    public long FramesRead => Volatile.Read(ref _framesRead);

    /// <summary>Payload bytes of <see cref="FramesRead"/>.</summary>
    public long BytesRead => Volatile.Read(ref _bytesRead);

    /// <summary>Zero-length frames received: counted, never handed on (QEMU 7.2 aborts on them).</summary>
    public long ZeroLengthFrames => Volatile.Read(ref _zeroLengthFrames);

    /// <summary>Partial frames lost because the peer closed the connection in the middle of one.</summary>
    public long TruncatedFrames => Volatile.Read(ref _truncatedFrames);

    /// <summary>Frames above the 69,632-byte limit; each one closed its connection.</summary>
    public long OversizedFrames => Volatile.Read(ref _oversizedFrames);

    /// <summary>Frames written (buffered for sending) by the endpoint's writer.</summary>
    public long FramesWritten => Volatile.Read(ref _framesWritten);

    /// <summary>Payload bytes of <see cref="FramesWritten"/>.</summary>
    public long BytesWritten => Volatile.Read(ref _bytesWritten);

    /// <summary>Connections established (accepted or connected) so far.</summary>
    public long Connections => Volatile.Read(ref _connections);

    /// <summary>Connections established after the first one: reconnects and new peers.</summary>
    public long Reconnects => Math.Max(0, Connections - 1);

    /// <summary>Bytes a peer sent on a connection that is only written to (outdev): read and discarded.</summary>
    public long BytesIgnored => Volatile.Read(ref _bytesIgnored);

    /// <summary>Peers refused by the <c>peer-uid</c> check.</summary>
    public long RefusedPeers => Volatile.Read(ref _refusedPeers);

    /// <summary>Times the read loop yielded its socket engine's thread after reads in a row that all found data waiting.</summary>
    public long ReadYields => Volatile.Read(ref _readYields);

    internal void AddRead(long frames, long bytes, long zeroLength)
    {
        if (frames != 0)
        {
            Interlocked.Add(ref _framesRead, frames);
            Interlocked.Add(ref _bytesRead, bytes);
        }

        if (zeroLength != 0)
        {
            Interlocked.Add(ref _zeroLengthFrames, zeroLength);
        }
    }

    internal void AddReadYield() => Interlocked.Increment(ref _readYields);

    internal void AddWritten(long frames, long bytes)
    {
        Interlocked.Add(ref _framesWritten, frames);
        Interlocked.Add(ref _bytesWritten, bytes);
    }

    internal void AddIgnored(long bytes)
    {
        if (bytes != 0)
        {
            Interlocked.Add(ref _bytesIgnored, bytes);
        }
    }

    internal void AddTruncated() => Interlocked.Increment(ref _truncatedFrames);

    internal void AddOversized() => Interlocked.Increment(ref _oversizedFrames);

    internal void AddConnection() => Interlocked.Increment(ref _connections);

    internal void AddRefusedPeer() => Interlocked.Increment(ref _refusedPeers);
}
