using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.Testbed;
using Microsoft.Extensions.Logging;

namespace ColoChardev.ChardevProtocol.Tests.Endpoints;

public sealed class ChardevEndpointTests : IDisposable
{
    private readonly string _directory = FreePort.TempSocketDirectory();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));

    public void Dispose()
    {
        _timeout.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private CancellationToken Token => _timeout.Token;

    private static async Task<string> ReadOneAsync(ChardevConnection connection, CancellationToken token)
    {
        using ChardevFrame frame = (await connection.Reader.ReadFrameAsync(token)) ?? throw new EndOfStreamException();
        return Describe(frame.Payload.ToArray(), frame.VnetHdrLen);
    }

    /// <summary>A frame as comparable text: hex payload and vnet word.</summary>
    private static string Describe(byte[] payload, uint vnet) => $"{Convert.ToHexString(payload)}/{vnet}";

    public static TheoryData<string> Transports => new() { "tcp", "unix" };

    private (ChardevSocketSpec Server, Func<ChardevEndpoint, ChardevSocketSpec> Client) Specs(string transport, string? extra = null)
    {
        if (transport == "tcp")
        {
            return (ChardevSocketSpec.Parse($"socket,id=srv,host=127.0.0.1,port=0,server=on,wait=off{extra}"),
                server => ChardevSocketSpec.Parse($"socket,id=cli,host=127.0.0.1,port={server.ListenPort}"));
        }

        string path = Path.Combine(_directory, "s.sock");
        return (ChardevSocketSpec.Parse($"socket,id=srv,path={path},server=on,wait=off{extra}"),
            _ => ChardevSocketSpec.Parse($"socket,id=cli,path={path}"));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Client_and_server_exchange_frames_both_ways(string transport)
    {
        (ChardevSocketSpec serverSpec, Func<ChardevEndpoint, ChardevSocketSpec> clientSpec) = Specs(transport);
        var options = new ChardevEndpointOptions { VnetHdrSupport = true };
        await using var server = new ChardevEndpoint(serverSpec, options);
        server.StartListening();
        await using var client = new ChardevEndpoint(clientSpec(server), options);
        Task<ChardevConnection> accepting = server.ConnectAsync(Token).AsTask();
        await using ChardevConnection toServer = await client.ConnectAsync(Token);
        await using ChardevConnection toClient = await accepting;

        toServer.Writer.Write([1, 2, 3], 12);
        toServer.Writer.Write([4], 0);
        Assert.True(await toServer.Writer.FlushAsync(Token));
        Assert.Equal(Describe([1, 2, 3], 12), await ReadOneAsync(toClient, Token));
        Assert.Equal(Describe([4], 0), await ReadOneAsync(toClient, Token));

        toClient.Writer.Write([9, 9], 10);
        Assert.True(await toClient.Writer.FlushAsync(Token));
        Assert.Equal(Describe([9, 9], 10), await ReadOneAsync(toServer, Token));
        Assert.Equal(2, client.Statistics.FramesWritten);
        Assert.Equal(2, server.Statistics.FramesRead);
        Assert.Equal(1, server.Statistics.Connections);
    }

    [Fact]
    public async Task A_read_loop_that_always_finds_data_waiting_yields_its_thread_now_and_then_and_loses_nothing()
    {
        // The sink takes 1 ms a batch while the peer writes without pause, so each read finds data waiting: the loop
        // must still let its socket engine's thread serve the other sockets it has (completions run inline there).
        var server = new ChardevEndpoint(ChardevSocketSpec.Parse("socket,id=srv,host=127.0.0.1,port=0,server=on,wait=off"));
        await using (server)
        {
            server.StartListening();
            await using var client = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=cli,host=127.0.0.1,port={server.ListenPort}"));
            var sink = new SlowCountingSink();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(Token);
            Task receiving = client.ReceiveFramesAsync(sink, stop.Token);
            await using ChardevConnection peer = await server.ConnectAsync(Token);
            const int Frames = 40_000; // 56 MB of 1,400-byte frames
            byte[] payload = new byte[1400];
            for (int i = 0; i < Frames; i++)
            {
                BinaryPrimitives.WriteInt32BigEndian(payload, i);
                peer.Writer.Write(payload, 0);
                if (i % 100 == 99)
                {
                    Assert.True(await peer.Writer.FlushAsync(Token));
                }
            }

            Assert.True(await peer.Writer.FlushAsync(Token));
            await sink.WaitForAsync(Frames, Token);
            await stop.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => receiving);
            Assert.Equal(Frames, sink.InOrder);
            Assert.True(client.Statistics.ReadYields > 0, $"no yield in {sink.Batches} batches");
        }
    }

    /// <summary>Counts frames that arrive in order (their first four bytes number them), taking 1 ms a batch.</summary>
    private sealed class SlowCountingSink : IChardevFrameSink
    {
        private int _inOrder;

        public int InOrder => Volatile.Read(ref _inOrder);

        public int Batches { get; private set; }

        public ValueTask OnFramesAsync(List<ChardevFrame> frames, CancellationToken cancellationToken)
        {
            Batches++;
            foreach (ChardevFrame frame in frames)
            {
                if (BinaryPrimitives.ReadInt32BigEndian(frame.Payload) == _inOrder)
                {
                    Volatile.Write(ref _inOrder, _inOrder + 1);
                }

                frame.Dispose();
            }

            Thread.Sleep(1);
            return ValueTask.CompletedTask;
        }

        /// <summary>Until <paramref name="frames"/> came in order, for at most 60 s.</summary>
        public async Task WaitForAsync(int frames, CancellationToken token)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (InOrder < frames && clock.Elapsed < TimeSpan.FromSeconds(60))
            {
                await Task.Delay(10, token);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_client_reconnects_after_its_peer_restarts(string transport)
    {
        (ChardevSocketSpec serverSpec, Func<ChardevEndpoint, ChardevSocketSpec> clientSpec) = Specs(transport);
        var first = new ChardevEndpoint(serverSpec);
        first.StartListening();
        ChardevSocketSpec clientSide = clientSpec(first);
        int port = first.ListenPort;
        await using var client = new ChardevEndpoint(clientSide);
        var sink = new CollectingSink();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Token);
        Task receiving = client.ReceiveFramesAsync(sink, stop.Token);

        ChardevConnection connection = await first.ConnectAsync(Token);
        connection.Writer.Write([1], 0);
        Assert.True(await connection.Writer.FlushAsync(Token));
        Assert.Equal([1], (await sink.NextAsync()).Payload);

        // The peer goes away entirely (listener first, so the client cannot slip into its backlog), and comes back
        // later on the same address.
        await first.DisposeAsync();
        await connection.DisposeAsync();
        await Task.Delay(200, Token);
        ChardevSocketSpec again = transport == "tcp"
            ? ChardevSocketSpec.Parse($"socket,id=srv,host=127.0.0.1,port={port},server=on,wait=off")
            : serverSpec;
        await using var second = new ChardevEndpoint(again);
        await using (ChardevConnection returned = await second.ConnectAsync(Token))
        {
            returned.Writer.Write([2], 0);
            Assert.True(await returned.Writer.FlushAsync(Token));
            Assert.Equal([2], (await sink.NextAsync()).Payload);
            Assert.Equal(2, client.Statistics.Connections);
            Assert.Equal(1, client.Statistics.Reconnects);
        }

        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => receiving);
    }

    [Fact]
    public async Task A_client_started_before_its_server_retries_until_the_server_appears()
    {
        int port = FreePort.Next();
        await using var client = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=cli,host=127.0.0.1,port={port}"));
        Task<ChardevConnection> connecting = client.ConnectAsync(Token).AsTask();
        await Task.Delay(300, Token);
        Assert.False(connecting.IsCompleted);
        await using var server = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=srv,host=127.0.0.1,port={port},server=on,wait=off"));
        server.StartListening();
        await using ChardevConnection accepted = await server.ConnectAsync(Token);
        await using ChardevConnection connected = await connecting;
        Assert.Equal(1, client.Statistics.Connections);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_server_takes_one_peer_at_a_time_and_the_next_after_the_old_one_leaves(string transport)
    {
        (ChardevSocketSpec serverSpec, Func<ChardevEndpoint, ChardevSocketSpec> clientSpec) = Specs(transport);
        await using var server = new ChardevEndpoint(serverSpec);
        server.StartListening();
        await using var clientA = new ChardevEndpoint(clientSpec(server));
        await using var clientB = new ChardevEndpoint(clientSpec(server));
        await using ChardevConnection a = await clientA.ConnectAsync(Token);
        ChardevConnection fromA = await server.ConnectAsync(Token);
        await using ChardevConnection b = await clientB.ConnectAsync(Token); // sits in the listen backlog
        b.Writer.Write([0xB], 0);
        Assert.True(await b.Writer.FlushAsync(Token));

        Task<ChardevConnection> next = server.ConnectAsync(Token).AsTask();
        await Task.Delay(300, Token);
        Assert.False(next.IsCompleted, "a second peer was accepted while the first was still connected");

        await fromA.DisposeAsync();
        await using ChardevConnection fromB = await next;
        Assert.Equal(Describe([0xB], 0), await ReadOneAsync(fromB, Token));
        Assert.Equal(2, server.Statistics.Connections);
    }

    [Fact]
    public async Task Connection_changes_are_announced_when_a_peer_comes_and_when_its_connection_ends()
    {
        await using var server = new ChardevEndpoint(ChardevSocketSpec.Parse("socket,id=compare1,host=127.0.0.1,port=0,server=on,wait=off"));
        var changes = new System.Collections.Concurrent.ConcurrentQueue<bool>();
        server.ConnectionChanged += (endpoint, connected) =>
        {
            Assert.Same(server, endpoint);
            Assert.Equal(connected, endpoint.IsConnected);
            changes.Enqueue(connected);
        };
        server.StartListening();
        await using var client = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=red1,host=127.0.0.1,port={server.ListenPort}"));
        for (int round = 0; round < 2; round++)
        {
            await using ChardevConnection outgoing = await client.ConnectAsync(Token);
            ChardevConnection incoming = await server.ConnectAsync(Token);
            Assert.Equal(round == 0 ? [true] : [true, false, true], changes);
            await incoming.DisposeAsync();
        }

        Assert.Equal([true, false, true, false], changes);
    }

    [Fact]
    public async Task Vector17_differs_from_qemu_an_oversized_frame_closes_only_that_connection_which_is_then_re_established()
    {
        await using var listener = new ChardevEndpoint(ChardevSocketSpec.Parse("socket,id=peer,host=127.0.0.1,port=0,server=on,wait=off"));
        listener.StartListening();
        await using var bystanderServer = new ChardevEndpoint(ChardevSocketSpec.Parse("socket,id=peer2,host=127.0.0.1,port=0,server=on,wait=off"));
        bystanderServer.StartListening();

        var log = new ListLogger();
        await using var victim = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=compare0-0,host=127.0.0.1,port={listener.ListenPort}"), logger: log);
        await using var bystander = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=bystander,host=127.0.0.1,port={bystanderServer.ListenPort}"));
        var victimSink = new CollectingSink();
        var bystanderSink = new CollectingSink();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Token);
        Task victimLoop = victim.ReceiveFramesAsync(victimSink, stop.Token);
        Task bystanderLoop = bystander.ReceiveFramesAsync(bystanderSink, stop.Token);

        await using ChardevConnection bystanderPeer = await bystanderServer.ConnectAsync(Token);
        await using (ChardevConnection first = await listener.ConnectAsync(Token))
        {
            first.Writer.Write([1], 0);
            await first.Writer.FlushAsync(Token);
            byte[] oversized = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(oversized, 70000);
            await first.Output.WriteAsync(oversized, Token);
            first.Writer.Write([0xDE, 0xAD], 0); // never seen: the stream is dead after the bad length
            await first.Writer.FlushAsync(Token);
            Assert.Equal([1], (await victimSink.NextAsync()).Payload);

            // Our side closes the connection: the peer reads end of stream.
            ReadResultProbe probe = await ReadUntilClosedAsync(first, Token);
            Assert.True(probe.Closed);
        }

        await using (ChardevConnection second = await listener.ConnectAsync(Token))
        {
            second.Writer.Write([2], 0);
            await second.Writer.FlushAsync(Token);
            Assert.Equal([2], (await victimSink.NextAsync()).Payload);
            Assert.Equal(2, victim.Statistics.Connections);
        }

        bystanderPeer.Writer.Write([7], 0);
        await bystanderPeer.Writer.FlushAsync(Token);
        Assert.Equal([7], (await bystanderSink.NextAsync()).Payload);
        Assert.Equal(1, victim.Statistics.OversizedFrames);
        Assert.Contains(log.Entries, e => e.Level == LogLevel.Error && e.Message.Contains("'compare0-0'", StringComparison.Ordinal) && e.Message.Contains("70000", StringComparison.Ordinal));
        Assert.Equal(0, bystander.Statistics.OversizedFrames);
        Assert.Equal(1, bystander.Statistics.Connections);
        Assert.False(victimSink.TryTake(out _));
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => victimLoop);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => bystanderLoop);
    }

    private readonly record struct ReadResultProbe(bool Closed);

    private static async Task<ReadResultProbe> ReadUntilClosedAsync(ChardevConnection connection, CancellationToken token)
    {
        while (true)
        {
            System.IO.Pipelines.ReadResult result = await connection.Input.ReadAsync(token);
            connection.Input.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return new ReadResultProbe(true);
            }
        }
    }

    [Fact]
    public async Task A_peer_that_stops_reading_stalls_our_writer_without_growing_our_memory()
    {
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        peer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        peer.Listen(1);
        int port = ((IPEndPoint)peer.LocalEndPoint!).Port;
        await using var endpoint = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=outdev,host=127.0.0.1,port={port}"));
        await using ChardevConnection connection = await endpoint.ConnectAsync(Token);
        using Socket slowReader = await peer.AcceptAsync(Token);

        const int FrameCount = 40_000; // 40,000 x 1,454 bytes = 58 MB, far beyond any loopback socket buffering
        byte[] payload = new byte[1454];
        long written = 0;
        long before = GC.GetTotalMemory(forceFullCollection: true);
        Task writing = Task.Run(
            async () =>
            {
                for (int i = 0; i < FrameCount; i++)
                {
                    BinaryPrimitives.WriteInt32BigEndian(payload, i);
                    connection.Writer.Write(payload, 0);
                    if (i % 16 == 15)
                    {
                        Assert.True(await connection.Writer.FlushAsync(Token));
                    }

                    Interlocked.Exchange(ref written, i + 1);
                }

                Assert.True(await connection.Writer.FlushAsync(Token));
            },
            Token);

        // Wait until the writer makes no progress: it is held by back-pressure.
        long last = -1;
        while (Interlocked.Read(ref written) != last)
        {
            last = Interlocked.Read(ref written);
            await Task.Delay(500, Token);
        }

        Assert.False(writing.IsCompleted, "the writer finished although nobody read");
        Assert.True(last < FrameCount / 2, $"{last} frames were accepted although the peer read nothing");
        long growth = GC.GetTotalMemory(forceFullCollection: true) - before;
        Assert.True(growth < 8 * 1024 * 1024, $"managed memory grew by {growth} bytes while the peer was not reading");

        // The peer starts reading again: every frame arrives, in order.
        var received = new byte[1 << 20];
        long total = 0;
        long expected = FrameCount * (4L + 1454);
        int nextIndex = 0;
        var pending = new List<byte>();
        while (total < expected)
        {
            int n = await slowReader.ReceiveAsync(received, SocketFlags.None, Token);
            Assert.True(n > 0);
            total += n;
            pending.AddRange(received.AsSpan(0, n).ToArray());
            while (pending.Count >= 1458)
            {
                Assert.Equal(1454, BinaryPrimitives.ReadInt32BigEndian(pending.GetRange(0, 4).ToArray()));
                Assert.Equal(nextIndex, BinaryPrimitives.ReadInt32BigEndian(pending.GetRange(4, 4).ToArray()));
                pending.RemoveRange(0, 1458);
                nextIndex++;
            }
        }

        await writing;
        Assert.Equal(FrameCount, nextIndex);
        Assert.Equal(FrameCount, endpoint.Statistics.FramesWritten);
    }

    [Fact]
    public async Task Peer_uid_check_accepts_our_own_uid_and_refuses_any_other()
    {
        uint self = CurrentUid();
        string allowedPath = Path.Combine(_directory, "allowed.sock");
        await using var allowed = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=ok,path={allowedPath},server=on,wait=off,peer-uid={self}"));
        allowed.StartListening();
        await using var client = new ChardevEndpoint(ChardevSocketSpec.Parse($"unix:{allowedPath}"));
        Task<ChardevConnection> accepting = allowed.ConnectAsync(Token).AsTask();
        await using ChardevConnection c1 = await client.ConnectAsync(Token);
        await using ChardevConnection s1 = await accepting;
        Assert.Equal(0, allowed.Statistics.RefusedPeers);

        string refusedPath = Path.Combine(_directory, "refused.sock");
        uint other = self == 4242 ? 4243u : 4242u;
        var log = new ListLogger();
        await using var refusing = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=no,path={refusedPath},server=on,wait=off,peer-uid={other}"), logger: log);
        refusing.StartListening();
        Task<ChardevConnection> refusedAccept = refusing.ConnectAsync(Token).AsTask();
        using var raw = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await raw.ConnectAsync(new UnixDomainSocketEndPoint(refusedPath), Token);
        int n = await raw.ReceiveAsync(new byte[1], SocketFlags.None, Token);
        Assert.Equal(0, n); // closed on us
        Assert.Equal(1, refusing.Statistics.RefusedPeers);
        Assert.Contains(log.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains($"refused a peer with uid {self}", StringComparison.Ordinal) && e.Message.Contains($"only uid {other}", StringComparison.Ordinal));
        Assert.False(refusedAccept.IsCompleted);
    }

    [Fact]
    public async Task A_unix_server_replaces_a_stale_socket_file_and_removes_it_when_closed()
    {
        string path = Path.Combine(_directory, "stale.sock");
        // .NET unlinks a socket file when its socket is disposed, so keep a hard link to leave a stale one behind.
        using (var stale = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            stale.Bind(new UnixDomainSocketEndPoint(path + ".tmp"));
            using var link = System.Diagnostics.Process.Start("ln", [path + ".tmp", path]);
            await link.WaitForExitAsync(Token);
            Assert.Equal(0, link.ExitCode);
        }

        Assert.True(File.Exists(path));
        var server = new ChardevEndpoint(ChardevSocketSpec.Parse($"unix:{path},server,nowait"));
        server.StartListening();
        await server.DisposeAsync();
        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task A_unix_server_never_deletes_a_regular_file_in_its_way()
    {
        string path = Path.Combine(_directory, "precious.txt");
        await File.WriteAllTextAsync(path, "keep me", Token);
        await using var server = new ChardevEndpoint(ChardevSocketSpec.Parse($"unix:{path},server,nowait"));
        ChardevEndpointException error = Assert.Throws<ChardevEndpointException>(server.StartListening);
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
        Assert.Equal("keep me", await File.ReadAllTextAsync(path, Token));
    }

    [Fact]
    public async Task Binding_a_port_in_use_gives_a_clear_error()
    {
        using var squatter = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        squatter.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        squatter.Listen(1);
        int port = ((IPEndPoint)squatter.LocalEndPoint!).Port;
        await using var server = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=compare1,host=127.0.0.1,port={port},server=on"));
        ChardevEndpointException error = Assert.Throws<ChardevEndpointException>(server.StartListening);
        Assert.Contains("compare1", error.Message, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{port}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_client_given_a_host_name_resolves_it_and_connects()
    {
        await using var server = new ChardevEndpoint(ChardevSocketSpec.Parse("socket,id=srv,host=127.0.0.1,port=0,server=on,wait=off"));
        server.StartListening();
        await using var client = new ChardevEndpoint(ChardevSocketSpec.Parse($"socket,id=cli,host=localhost,port={server.ListenPort},ipv4=on"));
        Task<ChardevConnection> accepting = server.ConnectAsync(Token).AsTask();
        await using ChardevConnection connected = await client.ConnectAsync(Token);
        await using ChardevConnection accepted = await accepting;
        Assert.StartsWith("127.0.0.1:", accepted.Peer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_with_no_host_listens_on_loopback_only()
    {
        await using var server = new ChardevEndpoint(ChardevSocketSpec.Parse("tcp::0,server,nowait"));
        server.StartListening();
        Assert.Equal(IPAddress.Loopback, ((IPEndPoint)server.ListenEndPoint!).Address);
    }

    private static uint CurrentUid()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("Uid:", StringComparison.Ordinal))
            {
                return uint.Parse(line.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException("no Uid line in /proc/self/status");
    }
}
