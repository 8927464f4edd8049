using System.IO.Pipelines;
using System.Net.Sockets;
using ColoChardev.ChardevProtocol.Framing;

namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>
/// One live socket of a <see cref="ChardevEndpoint"/>, with its frame reader and writer. Disposing it closes the
/// socket and lets the endpoint take its next peer. <see cref="Closed"/> fires as soon as the peer is known to have
/// left: the reader saw the end of the stream or an error, or, on a connection that is only written to,
/// <see cref="WatchForPeerLeavingAsync"/> did.
/// </summary>
/// <remarks>
/// The pipes sit directly on the socket stream: the reader only reads from the socket when asked for frames and
/// the writer's flush completes only when the kernel has taken the bytes. Memory per connection is therefore
/// bounded by one receive buffer plus one partial frame in, and one batch out, whatever the peers do.
/// </remarks>
public sealed class ChardevConnection : IAsyncDisposable
{
    private readonly ChardevEndpoint _endpoint;
    private readonly NetworkStream _stream;
    private readonly CancellationTokenSource _closed = new();
    private int _disposed;

    internal ChardevConnection(ChardevEndpoint endpoint, Socket socket, string peer)
    {
        _endpoint = endpoint;
        Peer = peer;
        Socket = socket;
        ChardevEndpointOptions options = endpoint.Options;
        _stream = new NetworkStream(socket, ownsSocket: true);
        Input = PipeReader.Create(_stream, new StreamPipeReaderOptions(endpoint.PipeMemory, bufferSize: options.ReceiveBufferSize, minimumReadSize: Math.Min(4096, options.ReceiveBufferSize), leaveOpen: true));
        Output = PipeWriter.Create(_stream, new StreamPipeWriterOptions(endpoint.PipeMemory, minimumBufferSize: options.SendBufferSize, leaveOpen: true));
        Reader = new ChardevFrameReader(Input, options.VnetHdrSupport, endpoint.Name, endpoint.Statistics, options.FramePool);
        Writer = new ChardevFrameWriter(Output, options.VnetHdrSupport, endpoint.Statistics);
    }

    /// <summary>The peer's address, for logs.</summary>
    public string Peer { get; }

    /// <summary>Our own end of the socket (e.g. <c>127.0.0.1:44822</c>), as QEMU's query-chardev shows it; empty for Unix sockets.</summary>
    public string LocalAddress => Socket.LocalEndPoint is System.Net.IPEndPoint ip ? ip.ToString() : string.Empty;

    /// <summary>Reads frames from the peer.</summary>
    public ChardevFrameReader Reader { get; }

    /// <summary>Writes frames to the peer.</summary>
    public ChardevFrameWriter Writer { get; }

    /// <summary>The raw input pipe (for protocols other than frames, e.g. tests).</summary>
    public PipeReader Input { get; }

    /// <summary>The raw output pipe.</summary>
    public PipeWriter Output { get; }

    internal Socket Socket { get; }

    /// <summary>Cancelled once the peer has left (end of stream, reset, error) or the connection was disposed.</summary>
    public CancellationToken Closed => _closed.Token;

    /// <summary>Whether <see cref="Closed"/> has fired.</summary>
    public bool IsClosed => _closed.IsCancellationRequested;

    /// <summary>
    /// For a connection that is only written to (outdev): reads and discards whatever the peer sends (counted in
    /// <see cref="ChardevStatistics.BytesIgnored"/>), so that the peer's leaving is seen at once, whether or not we
    /// are writing. Without it, a peer that left is only noticed by the second write after it left (the first
    /// goes into the kernel's buffer and draws a reset), and the frames of both are lost. Completes when the peer
    /// has left; <see cref="Closed"/> fires then. Do not also read frames from this connection.
    /// </summary>
    public async Task WatchForPeerLeavingAsync()
    {
        try
        {
            while (true)
            {
                ReadResult result = await Input.ReadAsync(Closed).ConfigureAwait(false);
                _endpoint.Statistics.AddIgnored(result.Buffer.Length);
                Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or SocketException)
        {
            // A reset, an error, or our own disposal: the peer is gone either way.
        }

        MarkClosed();
    }

    /// <summary>
    /// Whether the peer has left as far as the kernel knows now: an end of stream or a reset already received but
    /// not yet read shows here (one <c>poll</c>). A writer asks before each write, so that frames released in the
    /// moment a peer leaves wait for the next peer instead of going into a socket whose peer is gone.
    /// </summary>
    public bool PeerHasLeft()
    {
        if (IsClosed)
        {
            return true;
        }

        try
        {
            // Readable with nothing to read: the end of the stream (or an error) is next.
            if (Socket.Poll(0, SelectMode.SelectRead) && Socket.Available == 0)
            {
                MarkClosed();
                return true;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            MarkClosed();
            return true;
        }

        return false;
    }

    /// <summary>Fires <see cref="Closed"/> (the reader saw the end of the stream, or an error).</summary>
    internal void MarkClosed()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Bytes written that the peer has not read yet (see <see cref="PeerCredentials.UnreadByPeer"/>), or -1.</summary>
    public int UnreadByPeer()
    {
        try
        {
            return PeerCredentials.UnreadByPeer(Socket);
        }
        catch (ObjectDisposedException)
        {
            return -1;
        }
    }

    /// <summary>
    /// Closes the connection at once with a TCP reset (RST) rather than an orderly FIN, as a crashed peer or a
    /// killed process's kernel does; on a Unix socket an ordinary close. Dispose it afterwards as usual.
    /// </summary>
    public void Abort()
    {
        try
        {
            if (Socket.ProtocolType == ProtocolType.Tcp)
            {
                Socket.LingerState = new LingerOption(true, 0);
            }

            Socket.Close();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        MarkClosed();
    }

    /// <summary>Closes the socket without waiting for unsent bytes, and frees the endpoint for its next peer.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        MarkClosed();
        try
        {
            await Input.CompleteAsync().ConfigureAwait(false);
            // Close the socket before completing the writer: completing flushes, and a peer that stopped
            // reading would make that flush wait forever.
            await _stream.DisposeAsync().ConfigureAwait(false);
            try
            {
                await Output.CompleteAsync().ConfigureAwait(false);
            }
            catch (IOException)
            {
            }
            catch (ObjectDisposedException)
            {
            }
        }
        finally
        {
            _endpoint.ReleasePeerSlot();
        }
    }
}
