using System.Buffers.Binary;
using System.Net.Sockets;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.Daemon.Configuration;
using ColoChardev.Daemon.Nic;
using Microsoft.Extensions.Logging.Abstractions;

namespace ColoChardev.ColoCompareDaemon.Tests.Nic;

/// <summary>
/// Where bytes leave, on its own: an <see cref="OutdevWriter"/> on a real outdev chardev (a Unix socket server) and
/// peers that connect, read, stop reading and leave. Released frames are numbered; every test checks order and that
/// each frame was written or counted as dropped, with its reason.
/// </summary>
public sealed class OutdevWriterTests : IAsyncDisposable
{
    private const int FrameBytes = 1000;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));
    private readonly List<IAsyncDisposable> _cleanup = [];

    public async ValueTask DisposeAsync()
    {
        for (int i = _cleanup.Count - 1; i >= 0; i--)
        {
            await _cleanup[i].DisposeAsync();
        }

        _timeout.Dispose();
    }

    [Fact]
    public async Task Frames_released_before_any_peer_wait_for_it_and_reach_it_in_order()
    {
        Rig rig = await StartAsync(new OutdevLimits(4 << 20, 1000, 5000));
        rig.Release(Enumerable.Range(1, 100));
        await using Peer peer = await rig.ConnectAsync();
        Assert.Equal(Enumerable.Range(1, 100), await peer.ReadAsync(100, _timeout.Token));
        await WaitUntilAsync(() => rig.Writer.Written == 100 && rig.Writer.BacklogBytes == 0);
        Assert.Equal(0, rig.Writer.DroppedBeforeWrite + rig.Writer.Lost);
        Assert.Equal([true], rig.Connections);
    }

    [Fact]
    public async Task Frames_held_longer_than_hold_ms_without_a_peer_are_counted_as_expired_and_later_ones_still_arrive()
    {
        Rig rig = await StartAsync(new OutdevLimits(4 << 20, 1000, 100));
        rig.Release(Enumerable.Range(1, 10));
        await WaitUntilAsync(() => rig.Writer.DroppedBy(OutdevDropReason.Expired) == 10);
        Assert.Equal(0, rig.Writer.BacklogBytes);
        Assert.Equal(0, rig.Writer.BacklogFrames);
        await using Peer peer = await rig.ConnectAsync();
        await WaitUntilAsync(() => rig.Endpoint.IsConnected);
        rig.Release([11, 12]);
        Assert.Equal([11, 12], await peer.ReadAsync(2, _timeout.Token));
        Assert.Equal(0, rig.Writer.DroppedBy(OutdevDropReason.BacklogFull) + rig.Writer.Lost);
    }

    [Fact]
    public async Task A_peer_that_stops_reading_pauses_the_inputs_then_stalls_into_counted_drops_and_recovers_when_it_reads()
    {
        Rig rig = await StartAsync(new OutdevLimits(64 * 1024, 300, 5000));
        await using Peer peer = await rig.ConnectAsync();
        await WaitUntilAsync(() => rig.Endpoint.IsConnected);

        // Release until the readers would have to wait: the socket's buffers and then the backlog are full.
        int next = 1;
        Task room = Task.CompletedTask;
        for (int batch = 0; batch < 10_000 && room.IsCompleted; batch++)
        {
            rig.Release(Enumerable.Range(next, 16));
            next += 16;
            room = rig.Writer.WaitForRoomAsync(_timeout.Token).AsTask();
        }

        Assert.False(room.IsCompleted, "the backlog never filled");
        Assert.True(rig.Writer.IsPaused);
        Assert.Equal(1, rig.Writer.Pauses);
        Assert.Equal(0, rig.Writer.Stalls);

        // Nothing moves for StallMs: a stall; the readers go on and what does not fit is dropped, counted.
        await room.WaitAsync(Bound, _timeout.Token);
        long atStall = rig.Writer.BacklogBytes;
        Assert.True(rig.Writer.IsStalled);
        Assert.Equal(1, rig.Writer.Stalls);
        for (int batch = 0; batch < 1_000 && rig.Writer.DroppedBy(OutdevDropReason.BacklogFull) == 0; batch++)
        {
            rig.Release(Enumerable.Range(next, 16));
            next += 16;
        }

        long dropped = rig.Writer.DroppedBy(OutdevDropReason.BacklogFull);
        Assert.True(dropped > 0, "nothing was dropped while stalled");
        Assert.True(rig.Writer.BacklogBytes <= Math.Max(atStall, 64 * 1024), $"the stalled backlog grew from {atStall} to {rig.Writer.BacklogBytes} bytes");

        // The peer reads again: everything kept arrives in order, and the stall ends.
        int released = next - 1;
        List<int> read = await peer.ReadAsync(released - (int)dropped, _timeout.Token);
        Assert.Equal(read.Order(), read);
        Assert.Equal(read.Count, read.Distinct().Count());
        await WaitUntilAsync(() => !rig.Writer.IsStalled && rig.Writer.BacklogBytes == 0);
        Assert.Equal(released, rig.Writer.Written + rig.Writer.DroppedBy(OutdevDropReason.BacklogFull));
        Assert.Equal(0, rig.Writer.DroppedBy(OutdevDropReason.Expired) + rig.Writer.Lost);
        Assert.True(rig.Writer.WaitForRoomAsync(_timeout.Token).AsTask().IsCompleted);
    }

    [Fact]
    public async Task After_a_peer_leaves_the_next_one_gets_what_followed_and_every_frame_is_written_or_counted()
    {
        Rig rig = await StartAsync(new OutdevLimits(4 << 20, 1000, 10_000));
        for (int round = 0; round < 3; round++)
        {
            await using Peer peer = await rig.ConnectAsync();
            await WaitUntilAsync(() => rig.Endpoint.IsConnected);
            IEnumerable<int> numbers = Enumerable.Range((round * 50) + 1, 50);
            rig.Release(numbers);
            Assert.Equal(numbers, await peer.ReadAsync(50, _timeout.Token));
            await peer.DisposeAsync();
            await WaitUntilAsync(() => !rig.Endpoint.IsConnected);
        }

        // Released while nobody is connected: held for the next peer.
        rig.Release(Enumerable.Range(151, 20));
        await using Peer last = await rig.ConnectAsync();
        Assert.Equal(Enumerable.Range(151, 20), await last.ReadAsync(20, _timeout.Token));
        await WaitUntilAsync(() => rig.Writer.Written == 170);
        Assert.Equal(0, rig.Writer.DroppedBeforeWrite + rig.Writer.Lost);
        Assert.Equal([true, false, false, false], rig.Connections);
    }

    [Fact]
    public async Task The_first_write_on_a_connection_waits_for_the_redirector_to_be_restored()
    {
        var restored = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Rig rig = await StartAsync(new OutdevLimits(4 << 20, 300, 10_000), (_, _, _) => restored.Task);
        await using Peer peer = await rig.ConnectAsync();
        await WaitUntilAsync(() => rig.Connections.Count == 1);
        rig.Release([1, 2, 3]);

        // Held, and not a stall, however long the restore takes (here several stall periods).
        Assert.False(await peer.HasDataAsync(TimeSpan.FromMilliseconds(1000)), "outdev was written before the redirector was restored");
        Assert.False(rig.Writer.IsStalled);
        restored.SetResult();
        Assert.Equal([1, 2, 3], await peer.ReadAsync(3, _timeout.Token));
    }

    [Fact]
    public async Task Frames_held_for_a_peer_that_never_came_and_frames_released_after_complete_are_counted_as_shutdown()
    {
        Rig rig = await StartAsync(new OutdevLimits(4 << 20, 1000, 60_000));
        rig.Release(Enumerable.Range(1, 5));
        rig.Writer.Complete();
        await rig.StopAsync();
        await rig.Running.WaitAsync(Bound, _timeout.Token);
        rig.Writer.Dispose();
        rig.Release([6]);
        Assert.Equal(6, rig.Writer.DroppedBy(OutdevDropReason.Shutdown));
        Assert.Equal(0, rig.Writer.Written);
        Assert.Equal(0, rig.Writer.BacklogBytes);
    }

    private async Task<Rig> StartAsync(OutdevLimits limits, Func<ChardevConnection, bool, CancellationToken, Task>? connected = null)
    {
        var rig = new Rig(limits, connected, _timeout.Token);
        _cleanup.Add(rig);
        await Task.Yield();
        return rig;
    }

    private async Task WaitUntilAsync(Func<bool> condition)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < Bound, "the condition did not come true in time");
            await Task.Delay(10, _timeout.Token);
        }
    }

    /// <summary>An outdev endpoint (Unix socket server), its writer running, and what the connected callback saw.</summary>
    private sealed class Rig : IAsyncDisposable
    {
        private readonly string _path = Path.Combine(Path.GetTempPath(), $"outdev-test-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");
        private readonly List<bool> _connections = [];
        private readonly CancellationTokenSource _stopping;

        public Rig(OutdevLimits limits, Func<ChardevConnection, bool, CancellationToken, Task>? connected, CancellationToken timeout)
        {
            _stopping = CancellationTokenSource.CreateLinkedTokenSource(timeout);
            CancellationToken stopping = _stopping.Token;
            Endpoint = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=outdev,path={_path},server=on,wait=off"));
            Endpoint.StartListening();
            Writer = new OutdevWriter(Endpoint, limits, queueBudgetBytes: 1 << 20, "comp0", NullLogger.Instance, (connection, first, abandon) =>
            {
                lock (_connections)
                {
                    _connections.Add(first);
                }

                return connected?.Invoke(connection, first, abandon) ?? Task.CompletedTask;
            });
            Running = Task.Run(() => Writer.RunAsync(stopping), CancellationToken.None);
        }

        public ChardevEndpoint Endpoint { get; }

        public OutdevWriter Writer { get; }

        public Task Running { get; }

        public List<bool> Connections
        {
            get
            {
                lock (_connections)
                {
                    return [.. _connections];
                }
            }
        }

        /// <summary>Releases numbered frames as one engine call does: admitted into one batch, or dropped.</summary>
        public void Release(IEnumerable<int> numbers)
        {
            List<ChardevFrame> batch = Writer.RentBatch();
            long bytes = 0;
            foreach (int number in numbers)
            {
                byte[] payload = new byte[FrameBytes];
                BinaryPrimitives.WriteInt32BigEndian(payload, number);
                payload.AsSpan(4).Fill((byte)number);
                ChardevFrame frame = ChardevFrame.Rent(payload, 0);
                if (!Writer.Admits(frame.Length, bytes))
                {
                    Writer.Drop(frame, OutdevDropReason.BacklogFull);
                    continue;
                }

                batch.Add(frame);
                bytes += frame.Length;
            }

            Writer.Enqueue(batch, bytes);
        }

        /// <summary>The daemon's stopping token: the writer gives up waiting for a peer.</summary>
        public Task StopAsync() => _stopping.CancelAsync();

        public async Task<Peer> ConnectAsync()
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(_path));
            return new Peer(socket);
        }

        public async ValueTask DisposeAsync()
        {
            Writer.Complete();
            Endpoint.DropPeer();
            try
            {
                await Running.WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException)
            {
            }

            await _stopping.CancelAsync();
            Writer.Dispose();
            await Endpoint.DisposeAsync();
            _stopping.Dispose();
            File.Delete(_path);
        }
    }

    /// <summary>An outdev peer (QEMU's redirector's side): reads frames and returns their numbers, checking each payload.</summary>
    private sealed class Peer(Socket socket) : IAsyncDisposable
    {
        private readonly byte[] _buffer = new byte[1 << 20];
        private int _filled;

        public async Task<List<int>> ReadAsync(int count, CancellationToken cancellationToken)
        {
            var numbers = new List<int>();
            using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            bounded.CancelAfter(Bound);
            while (numbers.Count < count)
            {
                int offset = 0;
                while (FrameDecoder.TryReadFrame(_buffer.AsSpan(offset, _filled - offset), false, out FrameHeader header, out int length) == FrameReadStatus.Complete)
                {
                    ReadOnlySpan<byte> payload = _buffer.AsSpan(offset + length - (int)header.Length, (int)header.Length);
                    int number = BinaryPrimitives.ReadInt32BigEndian(payload);
                    Assert.Equal(FrameBytes, payload.Length);
                    Assert.True(payload[4..].IndexOfAnyExcept((byte)number) < 0, $"frame {number}'s payload is damaged");
                    numbers.Add(number);
                    offset += length;
                }

                Array.Copy(_buffer, offset, _buffer, 0, _filled - offset);
                _filled -= offset;
                if (numbers.Count >= count)
                {
                    break;
                }

                int read = await socket.ReceiveAsync(_buffer.AsMemory(_filled), SocketFlags.None, bounded.Token);
                if (read == 0)
                {
                    throw new EndOfStreamException($"outdev closed after {numbers.Count} of {count} frames");
                }

                _filled += read;
            }

            return numbers;
        }

        /// <summary>Whether any byte arrives within <paramref name="wait"/>.</summary>
        public async Task<bool> HasDataAsync(TimeSpan wait)
        {
            await Task.Delay(wait);
            return _filled > 0 || socket.Available > 0;
        }

        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
