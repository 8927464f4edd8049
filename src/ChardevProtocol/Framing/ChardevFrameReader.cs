using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;

namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>
/// Reads frames from one connection's <see cref="PipeReader"/>: the I/O loop around <see cref="FrameDecoder"/>.
/// Every frame handed out is copied into a pooled buffer before the pipe is advanced.
/// Not thread-safe: one reader per connection, one caller at a time.
/// </summary>
public sealed class ChardevFrameReader
{
    private readonly PipeReader _input;
    private readonly bool _vnetHdrSupport;
    private readonly string _endpoint;
    private readonly ChardevStatistics _statistics;
    private readonly ArrayPool<byte> _pool;
    private readonly List<ChardevFrame> _pending = [];
    private int _pendingIndex;
    private ChardevFrameTooLargeException? _error;
    private bool _completed;

    public ChardevFrameReader(PipeReader input, bool vnetHdrSupport, string endpoint, ChardevStatistics? statistics = null, ArrayPool<byte>? pool = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        _input = input;
        _vnetHdrSupport = vnetHdrSupport;
        _endpoint = endpoint;
        _statistics = statistics ?? new ChardevStatistics();
        _pool = pool ?? FrameBufferPool.Shared;
    }

    /// <summary>The counters this reader updates.</summary>
    public ChardevStatistics Statistics => _statistics;

    /// <summary>
    /// Appends every complete frame that is available (waiting for at least one) to <paramref name="frames"/>;
    /// the caller owns the appended frames. Returns false once the peer has closed and no frame is left.
    /// Zero-length frames are counted and skipped. A partial frame at close is counted as truncated.
    /// </summary>
    /// <exception cref="ChardevFrameTooLargeException">
    /// An oversized frame was announced; frames before it were returned by the previous call.
    /// </exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> ReadBatchAsync(List<ChardevFrame> frames, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(frames);
        if (_pendingIndex < _pending.Count)
        {
            for (int i = _pendingIndex; i < _pending.Count; i++)
            {
                frames.Add(_pending[i]);
            }

            _pending.Clear();
            _pendingIndex = 0;
            return true;
        }

        while (true)
        {
            if (_error is not null)
            {
                throw _error;
            }

            if (_completed)
            {
                return false;
            }

            ReadResult result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (DecodeAvailable(result, frames))
            {
                return true;
            }
        }
    }

    /// <summary>
    /// Reads one frame, or null once the peer has closed. The caller owns the returned frame.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<ChardevFrame?> ReadFrameAsync(CancellationToken cancellationToken = default)
    {
        if (_pendingIndex >= _pending.Count)
        {
            _pending.Clear();
            _pendingIndex = 0;
            while (_pending.Count == 0)
            {
                if (_error is not null)
                {
                    throw _error;
                }

                if (_completed)
                {
                    return null;
                }

                ReadResult result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
                DecodeAvailable(result, _pending);
            }
        }

        return _pending[_pendingIndex++];
    }

    /// <summary>Decodes every complete frame in <paramref name="result"/> and advances the pipe. True if any frame was added.</summary>
    private bool DecodeAvailable(in ReadResult result, List<ChardevFrame> frames)
    {
        ReadOnlySequence<byte> buffer = result.Buffer;
        int headerLength = ChardevFraming.HeaderLength(_vnetHdrSupport);
        long added = 0;
        long bytes = 0;
        long zeroLength = 0;
        while (true)
        {
            // Fast path: the frames that lie whole in the first segment, read from its span.
            ReadOnlySpan<byte> span = buffer.FirstSpan;
            int consumed = 0;
            FrameReadStatus status;
            FrameHeader header;
            while ((status = FrameDecoder.TryReadFrame(span[consumed..], _vnetHdrSupport, out header, out int frameLength)) == FrameReadStatus.Complete)
            {
                if (header.Length == 0)
                {
                    zeroLength++;
                }
                else
                {
                    frames.Add(ChardevFrame.Rent(span.Slice(consumed + headerLength, (int)header.Length), header.VnetHdrLen, _pool));
                    added++;
                    bytes += header.Length;
                }

                consumed += frameLength;
            }

            buffer = buffer.Slice(consumed);
            if (status == FrameReadStatus.Incomplete && consumed > 0 && consumed == span.Length && !buffer.IsEmpty)
            {
                // The segment ended exactly at a frame boundary: go on with the next one (which may be all that is
                // left, so the sequence is single-segment again).
                continue;
            }

            if (status == FrameReadStatus.Incomplete && !buffer.IsSingleSegment)
            {
                // A frame (or its header) split across segments.
                status = FrameDecoder.TryReadFrame(ref buffer, _vnetHdrSupport, out header, out ReadOnlySequence<byte> payload);
                if (status == FrameReadStatus.Complete)
                {
                    if (header.Length == 0)
                    {
                        zeroLength++;
                    }
                    else
                    {
                        frames.Add(ChardevFrame.Rent(payload, header.VnetHdrLen, _pool));
                        added++;
                        bytes += header.Length;
                    }

                    continue;
                }
            }

            if (status == FrameReadStatus.Oversized)
            {
                _statistics.AddOversized();
                _error = new ChardevFrameTooLargeException(_endpoint, header.Length);
            }

            break;
        }

        _statistics.AddRead(added, bytes, zeroLength);
        Advance(result, buffer);
        return added > 0;
    }

    /// <summary>
    /// Gives the pipe back what was decoded: after an oversized frame nothing more is read; at the peer's end a partial
    /// frame is counted as truncated; otherwise what is left waits for more bytes.
    /// </summary>
    private void Advance(in ReadResult result, ReadOnlySequence<byte> rest)
    {
        if (_error is not null)
        {
            _input.AdvanceTo(rest.Start);
        }
        else if (result.IsCompleted)
        {
            if (!rest.IsEmpty)
            {
                // The peer closed mid-frame: only this partial frame is lost.
                _statistics.AddTruncated();
            }

            _completed = true;
            _input.AdvanceTo(rest.End);
        }
        else
        {
            _input.AdvanceTo(rest.Start, rest.End);
        }
    }
}
