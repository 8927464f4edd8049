using System.IO.Pipelines;
using System.Runtime.CompilerServices;

namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>
/// Writes frames to one connection's <see cref="PipeWriter"/>: <see cref="Write(ReadOnlySpan{byte}, uint)"/>
/// buffers, <see cref="FlushAsync"/> sends the batch. The flush waits while the peer is not reading
/// (back-pressure), so a slow reader never makes our memory grow beyond one batch.
/// Not thread-safe: one writer per connection, one caller at a time.
/// </summary>
public sealed class ChardevFrameWriter
{
    private readonly PipeWriter _output;
    private readonly bool _vnetHdrSupport;
    private readonly ChardevStatistics _statistics;
    private long _unflushedFrames;
    private long _unflushedBytes;

    public ChardevFrameWriter(PipeWriter output, bool vnetHdrSupport, ChardevStatistics? statistics = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        _output = output;
        _vnetHdrSupport = vnetHdrSupport;
        _statistics = statistics ?? new ChardevStatistics();
    }

    /// <summary>Frames buffered since the last flush.</summary>
    public long UnflushedFrames => _unflushedFrames;

    /// <summary>Buffers one frame. Refuses empty and oversized payloads (see <see cref="FrameEncoder.WriteFrame"/>).</summary>
    public void Write(ReadOnlySpan<byte> payload, uint vnetHdrLen)
    {
        FrameEncoder.WriteFrame(_output, payload, _vnetHdrSupport, vnetHdrLen);
        _unflushedFrames++;
        _unflushedBytes += payload.Length;
    }

    /// <summary>Buffers one received frame exactly as it arrived, with its vnet_hdr_len word.</summary>
    public void Write(in ChardevFrame frame) => Write(frame.Payload, frame.VnetHdrLen);

    /// <summary>
    /// Sends every buffered frame. Returns false when the connection is gone or <paramref name="cancellationToken"/>
    /// fired (pass the connection's <c>Closed</c> token: a flush waiting on a peer that left returns at once); the
    /// frames of this batch may not have reached the peer then.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))] // no allocation when the send completes later
    public async ValueTask<bool> FlushAsync(CancellationToken cancellationToken = default)
    {
        long frames = _unflushedFrames;
        long bytes = _unflushedBytes;
        _unflushedFrames = 0;
        _unflushedBytes = 0;
        try
        {
            FlushResult result = await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
            if (result.IsCompleted)
            {
                return false;
            }
        }
        catch (IOException)
        {
            return false;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            // The pipe was completed because the connection closed.
            return false;
        }
        catch (OperationCanceledException)
        {
            return false;
        }

        _statistics.AddWritten(frames, bytes);
        return true;
    }
}
