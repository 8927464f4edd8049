using System.Buffers;

namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>
/// One received frame, its payload held in a pooled buffer. Whoever holds the frame owns the buffer and
/// must call <see cref="Dispose"/> exactly once when done; copies of this struct share the buffer, so hand
/// a frame on (move it) rather than keep using a copy.
/// </summary>
public readonly struct ChardevFrame : IDisposable
{
    private readonly byte[]? _buffer;
    private readonly ArrayPool<byte>? _pool;

    private ChardevFrame(byte[] buffer, ArrayPool<byte>? pool, int length, uint vnetHdrLen)
    {
        _buffer = buffer;
        _pool = pool;
        Length = length;
        VnetHdrLen = vnetHdrLen;
    }

    /// <summary>Payload length in bytes (any virtio-net header included).</summary>
    public int Length { get; }

    /// <summary>Bytes of memory the frame holds: its buffer, which a pool may round up from <see cref="Length"/>.</summary>
    public int Capacity => _buffer?.Length ?? 0;

    /// <summary>The <c>vnet_hdr_len</c> word received with the frame (0 when vnet_hdr_support is off).</summary>
    public uint VnetHdrLen { get; }

    /// <summary>The payload exactly as received.</summary>
    public ReadOnlySpan<byte> Payload => _buffer is null ? ReadOnlySpan<byte>.Empty : _buffer.AsSpan(0, Length);

    /// <summary>The payload exactly as received, as memory.</summary>
    public ReadOnlyMemory<byte> Memory => _buffer is null ? ReadOnlyMemory<byte>.Empty : _buffer.AsMemory(0, Length);

    /// <summary>Copies <paramref name="payload"/> into a buffer rented from <paramref name="pool"/>.</summary>
    public static ChardevFrame Rent(in ReadOnlySequence<byte> payload, uint vnetHdrLen, ArrayPool<byte> pool)
    {
        ArgumentNullException.ThrowIfNull(pool);
        int length = checked((int)payload.Length);
        byte[] buffer = pool.Rent(length);
        payload.CopyTo(buffer);
        return new ChardevFrame(buffer, pool, length, vnetHdrLen);
    }

    /// <summary>Copies <paramref name="payload"/> into a buffer rented from <paramref name="pool"/>.</summary>
    public static ChardevFrame Rent(ReadOnlySpan<byte> payload, uint vnetHdrLen, ArrayPool<byte> pool)
    {
        ArgumentNullException.ThrowIfNull(pool);
        byte[] buffer = pool.Rent(payload.Length);
        payload.CopyTo(buffer);
        return new ChardevFrame(buffer, pool, payload.Length, vnetHdrLen);
    }

    /// <summary>Copies <paramref name="payload"/> into a buffer rented from <see cref="FrameBufferPool.Shared"/>.</summary>
    public static ChardevFrame Rent(ReadOnlySpan<byte> payload, uint vnetHdrLen)
    {
        byte[] buffer = FrameBufferPool.Shared.Rent(payload.Length);
        payload.CopyTo(buffer);
        return new ChardevFrame(buffer, FrameBufferPool.Shared, payload.Length, vnetHdrLen);
    }

    /// <summary>
    /// A frame over a buffer the caller owns (no pool): disposing it does nothing. For tests and benchmarks that
    /// replay the same bytes.
    /// </summary>
    public static ChardevFrame Wrap(byte[] buffer, int length, uint vnetHdrLen)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, buffer.Length);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return new ChardevFrame(buffer, null, length, vnetHdrLen);
    }

    /// <summary>Returns the buffer to its pool.</summary>
    public void Dispose()
    {
        if (_buffer is not null)
        {
            _pool?.Return(_buffer);
        }
    }
}
