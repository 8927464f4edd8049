using System.IO.Pipelines;
using System.Net.Sockets;
using ColoChardev.ChardevProtocol.Framing;

namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>
/// One live socket of a <see cref="ChardevEndpoint"/>, with its frame reader and writer. Disposing it closes the
/// socket and lets the endpoint take its next peer.
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

    /// <summary>Closes the socket without waiting for unsent bytes, and frees the endpoint for its next peer.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

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
