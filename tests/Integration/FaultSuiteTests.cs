using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;
using Xunit.Abstractions;

namespace ColoChardev.Integration;

/// <summary>
/// The fault suite's input faults, on one long-lived daemon (all four chardevs TCP servers, QEMU's syntax): malformed
/// bytes on each input, and SIGTERM with hundreds of held packets. After every fault a matching pair on a fresh
/// connection must be released, and the control socket's accounting must hold: every primary frame accepted is
/// released, dropped with a reason, or still queued.
/// </summary>
public sealed class FaultSuiteTests(ITestOutputHelper output) : IDisposable
{
    private const int RandomFrames = 100_000;
    private const int ZeroLengthFrames = 10_000;
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromMinutes(4));
    private readonly Random _random = new(20261203);
    private int _marker;

    public void Dispose() => _timeout.Dispose();

    private CancellationToken Token => _timeout.Token;

    public static TheoryData<ChardevRole> Inputs => new() { ChardevRole.PrimaryIn, ChardevRole.SecondaryIn };

    [Theory]
    [MemberData(nameof(Inputs))]
    public async Task Malformed_input_never_stops_the_daemon_a_fresh_connection_works_and_every_primary_frame_is_accounted_for(ChardevRole input)
    {
        await using ChurnRig rig = await ChurnRig.StartAsync(ChurnMode.DaemonServesTcp, ",compare_timeout=60000", [], Token);
        using var draining = CancellationTokenSource.CreateLinkedTokenSource(Token);
        var released = new ConcurrentDictionary<string, int>();
        long drained = 0;
        Task drain = Task.Run(async () =>
        {
            // Outdev is read all along (a stopped reader would rightly pause the inputs).
            while (!draining.IsCancellationRequested)
            {
                using ChardevFrame frame = (await rig.Connection(ChardevRole.OutDev).Reader.ReadFrameAsync(draining.Token)) ?? throw new EndOfStreamException("outdev closed");
                released.AddOrUpdate(Convert.ToHexString(frame.Payload), 1, (_, n) => n + 1);
                Interlocked.Increment(ref drained);
            }
        }, CancellationToken.None);

        long primaryFrames = 0;
        long secondaryFrames = 0;
        (string Fault, Func<Task<long>> Inject)[] faults =
        [
            ("64 KiB of garbage bytes", () => RawAsync(rig, input, RandomBytes(64 * 1024), 0)),
            ("a length word of 69,633", () => RawAsync(rig, input, [.. BigEndian(69_633), .. RandomBytes(2000)], 0)),
            ($"{ZeroLengthFrames:N0} zero-length frames", () => RawAsync(rig, input, [.. Enumerable.Range(0, ZeroLengthFrames).SelectMany(_ => BigEndian(0))], 0)),
            ("a frame cut by a close", () => RawAsync(rig, input, [.. BigEndian(1000), .. RandomBytes(500)], 0)),
            ($"{RandomFrames:N0} random framed frames", () => RandomFramesAsync(rig, input)),
        ];
        foreach ((string fault, Func<Task<long>> inject) in faults)
        {
            long accepted = await inject();
            if (input == ChardevRole.PrimaryIn)
            {
                primaryFrames += accepted;
            }
            else
            {
                secondaryFrames += accepted;
            }

            if (accepted > 0)
            {
                // Broken packets that still parse queue as flows with no twin and can fill the queue budget, whereupon
                // the daemon asks for a checkpoint (QueueBudget): answer it as QEMU would, once all were read.
                string counter = input == ChardevRole.PrimaryIn ? "primary-in" : "secondary-in";
                long expected = input == ChardevRole.PrimaryIn ? primaryFrames : secondaryFrames;
                await WaitUntilAsync(() => StatsAsync(rig).GetAwaiter().GetResult().GetProperty(counter).GetInt64() == expected, $"all of {fault} read", rig);
                await rig.SendNotifyAsync("COLO_CHECKPOINT");
                await WaitUntilAsync(() => StatsAsync(rig).GetAwaiter().GetResult() is JsonElement q && q.GetProperty("primary-queued").GetInt64() == 0 && q.GetProperty("secondary-queued").GetInt64() == 0, $"the checkpoint after {fault}", rig);
            }

            // The input that had the fault is reconnected (the daemon may have closed it); a fresh pair gets through.
            await rig.CloseAsync(input);
            await rig.ConnectAsync(input, Token);
            ushort port = NextMarker();
            byte[] marker = Udp(port, "after the fault", 1);
            await rig.SendAsync(ChardevRole.PrimaryIn, [marker]);
            await rig.SendAsync(ChardevRole.SecondaryIn, [Udp(port, "after the fault", 2)]);
            primaryFrames++;
            secondaryFrames++;
            await WaitUntilAsync(() => released.ContainsKey(Convert.ToHexString(marker)), $"the matching pair after {fault}", rig);
            Assert.Equal(1, released[Convert.ToHexString(marker)]);
            Assert.False(rig.Daemon.HasExited, rig.Daemon.Output);
            output.WriteLine($"{input}: {fault}: daemon up, fresh pair released");
        }

        // What the random frames left queued (parseable flows with no twin) leaves at a checkpoint.
        await rig.SendNotifyAsync("COLO_CHECKPOINT");
        JsonElement stats = default;
        await WaitUntilAsync(() =>
        {
            stats = StatsAsync(rig).GetAwaiter().GetResult();
            return stats.GetProperty("primary-queued").GetInt64() == 0 && stats.GetProperty("outdev-written").GetInt64() == stats.GetProperty("released").GetInt64() && Interlocked.Read(ref drained) == stats.GetProperty("released").GetInt64();
        }, "the flush and outdev catching up", rig);

        long primaryIn = stats.GetProperty("primary-in").GetInt64();
        long releasedCount = stats.GetProperty("released").GetInt64();
        long dropped = stats.GetProperty("primary-dropped").GetInt64();
        Assert.Equal(primaryFrames, primaryIn); // every well-framed primary packet was accepted, none invented
        Assert.Equal(primaryIn, releasedCount + dropped + stats.GetProperty("primary-queued").GetInt64());
        // Framing faults never become packets; the faulted chardev counts them.
        JsonElement chardev = stats.GetProperty("chardevs").GetProperty(input == ChardevRole.PrimaryIn ? "primary_in" : "secondary_in");
        Assert.Equal(ZeroLengthFrames, chardev.GetProperty("zero-length").GetInt64());
        Assert.True(chardev.GetProperty("oversized").GetInt64() >= 2, chardev.ToString()); // the garbage and the 69,633
        Assert.True(chardev.GetProperty("truncated").GetInt64() >= 1, chardev.ToString()); // the frame cut by a close
        Assert.Equal(6, chardev.GetProperty("connections").GetInt64()); // the first and one per fault
        Assert.Equal(dropped, stats.GetProperty("primary-dropped-by").EnumerateObject().Sum(p => p.Value.GetInt64()));
        Assert.All(released, pair => Assert.True(pair.Value == 1 || RepeatedInTheInput(pair.Key), $"released {pair.Value} times: {pair.Key[..Math.Min(80, pair.Key.Length)]}"));
        Assert.Equal(0, stats.GetProperty("outdev-dropped").GetInt64());
        output.WriteLine($"{input}: primary-in {primaryIn:N0} = released {releasedCount:N0} + dropped {dropped:N0} (by reason: {stats.GetProperty("primary-dropped-by")}); released by reason {stats.GetProperty("released-by")}");
        await draining.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => drain);
        Assert.Equal(0, await rig.Daemon.StopAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task Sigterm_with_500_held_tcp_and_udp_packets_on_many_flows_releases_each_once_in_flow_order_and_exits_0()
    {
        await using ChurnRig rig = await ChurnRig.StartAsync(ChurnMode.DaemonServesTcp, ",compare_timeout=60000", [], Token);
        var held = new List<byte[]>();
        for (int i = 0; i < 250; i++)
        {
            int flow = i % 10;
            held.Add(new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Tcp((ushort)(2000 + flow), 40000, 1000 + (uint)(i / 10 * 20), 900, TcpControlBits.Ack | TcpControlBits.Psh, Encoding.ASCII.GetBytes($"tcp {i:D3} of {flow:D2}....")).Build());
            held.Add(Udp((ushort)(3000 + flow), $"udp {i:D3} of flow {flow}", 1));
        }

        await rig.SendAsync(ChardevRole.PrimaryIn, held);
        await WaitUntilAsync(() => StatsAsync(rig).GetAwaiter().GetResult().GetProperty("primary-queued").GetInt64() == held.Count, "500 packets held", rig);
        Assert.True(await rig.OutdevQuietAsync(0.2));

        Task<List<byte[]>> reading = rig.ReadOutdevAsync(held.Count);
        Assert.Equal(0, await rig.Daemon.StopAsync(TimeSpan.FromSeconds(20)));
        List<byte[]> released = await reading;
        Assert.Equal(held.Select(Convert.ToHexString).Order(), released.Select(Convert.ToHexString).Order()); // each once
        foreach (IGrouping<ushort, byte[]> flow in held.GroupBy(SourcePort))
        {
            Assert.Equal(flow.Select(Convert.ToHexString), released.Where(f => SourcePort(f) == flow.Key).Select(Convert.ToHexString));
        }

        Assert.Contains(rig.Daemon.Lines, l => l.Contains("500 queued primary frames released", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Control_socket_abuse_never_stops_the_comparison_and_the_socket_keeps_serving()
    {
        await using ChurnRig rig = await ChurnRig.StartAsync(ChurnMode.DaemonServesTcp, ",compare_timeout=60000", [], Token);

        // A 1 MiB line without a newline: that client is cut off, with a warning; nobody else notices.
        using (Socket huge = await RawControlAsync(rig))
        {
            byte[] line = new byte[1 << 20];
            Array.Fill(line, (byte)'x');
            try
            {
                await huge.SendAsync(line, SocketFlags.None, Token);
            }
            catch (SocketException)
            {
                // Closed by the daemon while we were still sending: the expected end.
            }

            Assert.Equal(0, await ReadToEndAsync(huge));
        }

        // Invalid JSON gets an error and the connection stays usable.
        using (Socket bad = await RawControlAsync(rig))
        {
            await bad.SendAsync("{\"execute\": \"qmp_capabilities\"}\n{not json at all\n{\"execute\": \"query-stats\", \"id\": 7}\n"u8.ToArray(), SocketFlags.None, Token);
            string replies = await ReadLinesAsync(bad, 3);
            Assert.Contains("\"error\"", replies, StringComparison.Ordinal);
            Assert.Contains("\"id\": 7", replies.Replace("\"id\":7", "\"id\": 7", StringComparison.Ordinal), StringComparison.Ordinal);
        }

        // A subscriber that never reads, while 3,000 divergences make events faster than it could ever hold.
        using Socket deaf = await RawControlAsync(rig);
        await deaf.SendAsync("{\"execute\": \"qmp_capabilities\"}\n"u8.ToArray(), SocketFlags.None, Token);
        await using ControlSocketClient reader = await ControlSocketClient.ConnectAsync(rig.ControlPath, Token);

        // And 50 clients at once, all answered.
        ControlSocketClient[] many = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => ControlSocketClient.ConnectAsync(rig.ControlPath, Token)));
        JsonElement[] answers = await Task.WhenAll(many.Select(c => c.ExecuteAsync("query-stats")));
        Assert.All(answers, a => Assert.Equal("comp0", a.GetProperty("nics")[0].GetProperty("id").GetString()));
        foreach (ControlSocketClient client in many)
        {
            await client.DisposeAsync();
        }

        const int Divergences = 3000;
        var primary = new List<byte[]>();
        var secondary = new List<byte[]>();
        for (int i = 0; i < Divergences; i++)
        {
            primary.Add(Udp((ushort)(10_000 + i), $"primary says {i} " + new string('p', 200), 1));
            secondary.Add(Udp((ushort)(10_000 + i), $"secondary says {i} " + new string('s', 200), 2));
        }

        await rig.SendAsync(ChardevRole.PrimaryIn, primary);
        await rig.SendAsync(ChardevRole.SecondaryIn, secondary);
        JsonElement first = await reader.NextEventAsync("COLO_COMPARE_DIVERGENCE", "COLO_COMPARE_CHECKPOINT_REQUEST", "COLO_COMPARE_CHARDEV");
        Assert.Equal("Mismatch", first.GetProperty("reason").GetString());
        await WaitUntilAsync(() => StatsAsync(rig).GetAwaiter().GetResult().GetProperty("divergences").GetInt64() == Divergences, "3,000 divergences", rig);

        // The comparison went on: the held frames leave at the checkpoint, a fresh pair is released as usual.
        Assert.Equal("DO_CHECKPOINT", await rig.ReadNotifyAsync());
        await rig.SendNotifyAsync("COLO_CHECKPOINT");
        Assert.Equal(Divergences, (await rig.ReadOutdevAsync(Divergences)).Count);
        byte[] after = Udp(9, "after the abuse", 1);
        await rig.SendAsync(ChardevRole.PrimaryIn, [after]);
        await rig.SendAsync(ChardevRole.SecondaryIn, [Udp(9, "after the abuse", 2)]);
        Assert.Equal(Convert.ToHexString(after), Convert.ToHexString(Assert.Single(await rig.ReadOutdevAsync(1))));

        // The deaf subscriber, reading at last, is told how many events it lost.
        string lost = await ReadUntilAsync(deaf, "COLO_COMPARE_EVENTS_LOST");
        Assert.Matches("\"count\": ?[1-9]", lost);
        Assert.False(rig.Daemon.HasExited, rig.Daemon.Output);
        Assert.Contains(rig.Daemon.Lines, l => l.Contains("request line longer than", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(ChurnMode.DaemonServesTcp)]
    [InlineData(ChurnMode.DaemonConnectsUnix)]
    public async Task An_operator_can_drop_a_chardevs_peer_over_the_control_socket_and_it_comes_back(ChurnMode mode)
    {
        await using ChurnRig rig = await ChurnRig.StartAsync(mode, ",compare_timeout=60000", [], Token);
        await using ControlSocketClient control = await ControlSocketClient.ConnectAsync(rig.ControlPath, Token);
        foreach (string chardev in new[] { "secondary_in", "outdev", "primary_in" })
        {
            JsonElement reply = await control.ExecuteAsync("chardev-drop-peer", new System.Text.Json.Nodes.JsonObject { ["path"] = "comp0", ["chardev"] = chardev });
            Assert.True(reply.GetProperty("dropped").GetBoolean());
            ChardevRole role = chardev switch { "secondary_in" => ChardevRole.SecondaryIn, "outdev" => ChardevRole.OutDev, _ => ChardevRole.PrimaryIn };
            await WaitUntilAsync(() => rig.Connection(role).IsClosed || rig.Connection(role).PeerHasLeft(), $"{chardev}'s peer seeing the drop", rig);
            await rig.CloseAsync(role);
            await rig.ConnectAsync(role, Token);
            ushort port = NextMarker();
            byte[] marker = Udp(port, $"after dropping {chardev}", 1);
            await rig.SendAsync(ChardevRole.PrimaryIn, [marker]);
            await rig.SendAsync(ChardevRole.SecondaryIn, [Udp(port, $"after dropping {chardev}", 2)]);
            Assert.Equal(Convert.ToHexString(marker), Convert.ToHexString(Assert.Single(await rig.ReadOutdevAsync(1))));
        }

        JsonElement stats = await StatsAsync(rig);
        Assert.True(stats.GetProperty("chardevs").GetProperty("secondary_in").GetProperty("connections").GetInt64() >= 2); // a client daemon may reconnect once more to our restarted listener
        Assert.Contains(rig.Daemon.Lines, l => l.Contains("secondary_in's peer dropped over the control socket", StringComparison.Ordinal));
        ColoChardev.Qmp.QmpCommandException refused = await Assert.ThrowsAsync<ColoChardev.Qmp.QmpCommandException>(() => control.ExecuteAsync("chardev-drop-peer", new System.Text.Json.Nodes.JsonObject { ["path"] = "comp0", ["chardev"] = "nonsense" }));
        Assert.Contains("has no chardev 'nonsense'", refused.Message, StringComparison.Ordinal);
    }

    /// <summary>The budgets a default daemon keeps (the queue budget and the outdev backlog), and what more its RSS may take.</summary>
    private const long QueueBudgetBytes = 64L << 20;
    private const long OutdevBacklogBytes = 4L << 20;
    private const long RssAllowance = 64L << 20;

    [Theory]
    [MemberData(nameof(Inputs))]
    public async Task A_one_sided_flood_of_2_million_frames_is_read_throughout_every_drop_counted_and_memory_stays_within_budget(ChardevRole input)
    {
        const int Frames = 2_000_000;
        await using ChurnRig rig = await ChurnRig.StartAsync(ChurnMode.DaemonServesTcp, ",compare_timeout=60000", [], Token);
        byte[][] templates = [.. Enumerable.Range(0, 64).Select(flow => new FrameBuilder().SourceMac(input == ChardevRole.PrimaryIn ? (byte)1 : (byte)2).Ipv4("10.0.0.10", "10.0.0.1")
            .Tcp((ushort)(5000 + flow), 40000, 1, 900, TcpControlBits.Ack | TcpControlBits.Psh, new byte[1400]).Build())];
        ChardevFrameWriter writer = rig.Connection(input).Writer;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        double longestFlushMs = 0;
        for (int sent = 0; sent < Frames;)
        {
            for (int i = 0; i < 1000; i++, sent++)
            {
                byte[] frame = templates[sent % 64];
                BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(38), 1 + (uint)(sent / 64 * 1400)); // the flow's next segment
                writer.Write(frame, 0);
            }

            var flush = System.Diagnostics.Stopwatch.StartNew();
            Assert.True(await writer.FlushAsync(Token), rig.Daemon.Output);
            longestFlushMs = Math.Max(longestFlushMs, flush.Elapsed.TotalMilliseconds);
        }

        double seconds = clock.Elapsed.TotalSeconds;
        JsonElement stats = default;
        await WaitUntilAsync(() => (stats = StatsAsync(rig).GetAwaiter().GetResult()).GetProperty(input == ChardevRole.PrimaryIn ? "primary-in" : "secondary-in").GetInt64() == Frames, "every frame read", rig);
        long peak = ProcessMetrics.PeakResidentBytes(rig.Daemon.ProcessId);
        output.WriteLine($"{input} flood: now RSS {ProcessMetrics.ResidentBytes(rig.Daemon.ProcessId) >> 20} MiB = anonymous {ProcessMetrics.AnonymousResidentBytes(rig.Daemon.ProcessId) >> 20} MiB + mapped files {ProcessMetrics.FileResidentBytes(rig.Daemon.ProcessId) >> 20} MiB; queued {stats.GetProperty("primary-queued").GetInt64() + stats.GetProperty("secondary-queued").GetInt64():N0} frames");
        output.WriteLine($"{input} flood: {Frames:N0} frames in {seconds:F1} s, longest flush {longestFlushMs:F0} ms, peak RSS {peak >> 20} MiB (budgets {(QueueBudgetBytes + OutdevBacklogBytes) >> 20} MiB + {RssAllowance >> 20} MiB allowed); {stats.GetProperty(input == ChardevRole.PrimaryIn ? "primary-dropped-by" : "secondary-dropped-by")}");

        // Read throughout: no send waited anywhere near 2 s. Every frame not queued was dropped with a reason.
        Assert.True(longestFlushMs < 2000, $"a send waited {longestFlushMs:F0} ms");
        if (input == ChardevRole.PrimaryIn)
        {
            Assert.Equal(Frames, stats.GetProperty("released").GetInt64() + stats.GetProperty("primary-dropped").GetInt64() + stats.GetProperty("primary-queued").GetInt64());
            Assert.True(stats.GetProperty("primary-dropped-by").GetProperty("QueueBudget").GetInt64() > 0);
        }

        Assert.True(stats.GetProperty("checkpoint-requests").GetProperty("QueueBudget").GetInt64() + stats.GetProperty("checkpoint-requests").GetProperty("QueueFull").GetInt64() > 0);
        Assert.True(peak <= QueueBudgetBytes + OutdevBacklogBytes + RssAllowance, $"peak RSS {peak >> 20} MiB");
    }

    [Fact]
    public async Task Two_hundred_thousand_distinct_flows_are_all_released_and_memory_stays_within_budget()
    {
        const int Flows = 200_000;
        await using ChurnRig rig = await ChurnRig.StartAsync(ChurnMode.DaemonServesTcp, ",compare_timeout=60000", [], Token);
        long released = 0;
        using var draining = CancellationTokenSource.CreateLinkedTokenSource(Token);
        Task drain = Task.Run(async () =>
        {
            while (Interlocked.Read(ref released) < Flows)
            {
                using ChardevFrame frame = (await rig.Connection(ChardevRole.OutDev).Reader.ReadFrameAsync(draining.Token)) ?? throw new EndOfStreamException();
                Interlocked.Increment(ref released);
            }
        }, CancellationToken.None);

        byte[] Flow(int i, byte mac) =>
            new FrameBuilder().SourceMac(mac).Ipv4($"10.{1 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}", "10.0.0.1").Udp((ushort)(1024 + (i % 50_000)), 53, "one datagram per flow"u8).Build();
        const int Batch = 5000;
        for (int start = 0; start < Flows; start += Batch)
        {
            // All the primaries of a batch first, so that the flows really are held at once, then their twins.
            await rig.SendAsync(ChardevRole.PrimaryIn, Enumerable.Range(start, Batch).Select(i => Flow(i, 1)));
            await rig.SendAsync(ChardevRole.SecondaryIn, Enumerable.Range(start, Batch).Select(i => Flow(i, 2)));
        }

        await drain.WaitAsync(TimeSpan.FromSeconds(60), Token);
        JsonElement stats = await StatsAsync(rig);
        long peak = ProcessMetrics.PeakResidentBytes(rig.Daemon.ProcessId);
        output.WriteLine($"{Flows:N0} flows: now RSS {ProcessMetrics.ResidentBytes(rig.Daemon.ProcessId) >> 20} MiB = anonymous {ProcessMetrics.AnonymousResidentBytes(rig.Daemon.ProcessId) >> 20} MiB + mapped files {ProcessMetrics.FileResidentBytes(rig.Daemon.ProcessId) >> 20} MiB; evicted {stats.GetProperty("flows-evicted")}");
        output.WriteLine($"{Flows:N0} flows: all released; peak RSS {peak >> 20} MiB; flows now {stats.GetProperty("flows")}");
        Assert.Equal(Flows, stats.GetProperty("released-by").GetProperty("Matched").GetInt64());
        Assert.Equal(0, stats.GetProperty("primary-dropped").GetInt64());
        Assert.True(peak <= QueueBudgetBytes + OutdevBacklogBytes + RssAllowance, $"peak RSS {peak >> 20} MiB");
    }

    private async Task<Socket> RawControlAsync(ChurnRig rig)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(rig.ControlPath), Token);
        await ReadLinesAsync(socket, 1); // the greeting
        return socket;
    }

    private async Task<int> ReadToEndAsync(Socket socket)
    {
        byte[] buffer = new byte[65536];
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(Token);
        wait.CancelAfter(TimeSpan.FromSeconds(10));
        try
        {
            while (true)
            {
                int n = await socket.ReceiveAsync(buffer, SocketFlags.None, wait.Token);
                if (n == 0)
                {
                    return 0;
                }
            }
        }
        catch (SocketException)
        {
            return 0; // reset by the daemon: closed too
        }
    }

    private async Task<string> ReadLinesAsync(Socket socket, int lines)
    {
        var text = new StringBuilder();
        byte[] one = new byte[1];
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(Token);
        wait.CancelAfter(TimeSpan.FromSeconds(10));
        while (lines > 0 && await socket.ReceiveAsync(one, SocketFlags.None, wait.Token) == 1)
        {
            text.Append((char)one[0]);
            if (one[0] == '\n')
            {
                lines--;
            }
        }

        return text.ToString();
    }

    private async Task<string> ReadUntilAsync(Socket socket, string text)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(Token);
        wait.CancelAfter(TimeSpan.FromSeconds(30));
        var line = new StringBuilder();
        byte[] buffer = new byte[65536];
        var pending = new List<byte>();
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, wait.Token);
            if (n == 0)
            {
                throw new EndOfStreamException($"the control socket closed before '{text}'");
            }

            for (int i = 0; i < n; i++)
            {
                if (buffer[i] != '\n')
                {
                    pending.Add(buffer[i]);
                    continue;
                }

                string current = Encoding.UTF8.GetString([.. pending]);
                pending.Clear();
                if (current.Contains(text, StringComparison.Ordinal))
                {
                    return current;
                }
            }
        }
    }

    [Fact]
    public async Task Sigterm_while_primary_frames_keep_arriving_writes_every_frame_it_accepted()
    {
        await using ChurnRig rig = await ChurnRig.StartAsync(ChurnMode.DaemonServesTcp, ",compare_timeout=60000", [], Token);
        var received = new List<byte[]>();
        Task reading = Task.Run(async () =>
        {
            // Until the daemon closes outdev on its way out.
            while (await rig.Connection(ChardevRole.OutDev).Reader.ReadFrameAsync(Token) is ChardevFrame frame)
            {
                using (frame)
                {
                    received.Add(frame.Payload.ToArray());
                }
            }
        }, CancellationToken.None);
        using var sending = CancellationTokenSource.CreateLinkedTokenSource(Token);
        Task sender = Task.Run(async () =>
        {
            // Unanswered primary datagrams, held until the stop, and more of them all through it.
            for (int i = 0; !sending.IsCancellationRequested && i < 1_000_000; i++)
            {
                try
                {
                    await rig.SendAsync(ChardevRole.PrimaryIn, [Udp((ushort)(1 + (i % 500)), $"datagram {i}", 1)]);
                }
                catch (IOException)
                {
                    return; // the daemon stopped reading and closed
                }
            }
        }, CancellationToken.None);
        await WaitUntilAsync(() => StatsAsync(rig).GetAwaiter().GetResult().GetProperty("primary-queued").GetInt64() > 1000, "frames held", rig);
        Assert.Equal(0, await rig.Daemon.StopAsync(TimeSpan.FromSeconds(20)));
        await sending.CancelAsync();
        await sender;
        await reading.WaitAsync(TimeSpan.FromSeconds(20), Token);

        DaemonSummary last = DaemonSummary.Last(rig.Daemon.Output) ?? throw new InvalidOperationException("no summary line");
        Match outdev = Regex.Match(rig.Daemon.Lines.Last(l => l.Contains("outdev written", StringComparison.Ordinal)), @"dropped (\d+), lost (\d+)");
        output.WriteLine($"accepted {last.PrimaryIn:N0}, released {last.Released:N0}, written {last.OutdevWritten:N0}, outdev {outdev.Value}; received {received.Count:N0}");
        Assert.Equal(last.PrimaryIn, last.Released);
        Assert.Equal(last.Released, last.OutdevWritten);
        Assert.Equal("dropped 0, lost 0", outdev.Value);
        Assert.Equal(last.OutdevWritten, received.Count);
        Assert.Equal(received.Count, received.Select(Convert.ToHexString).Distinct().Count());
    }

    private static async Task<long> RawAsync(ChurnRig rig, ChardevRole input, byte[] bytes, long frames)
    {
        try
        {
            await rig.Connection(input).Output.WriteAsync(bytes);
        }
        catch (IOException)
        {
            // The daemon closed the connection in the middle: that is one of the right answers.
        }

        await Task.Delay(100);
        return frames;
    }

    /// <summary>Well-framed frames whose packets are broken every way the parser must survive. Returns their number.</summary>
    private async Task<long> RandomFramesAsync(ChurnRig rig, ChardevRole input)
    {
        const int Batch = 1000;
        for (int sent = 0; sent < RandomFrames; sent += Batch)
        {
            var batch = new List<byte[]>(Batch);
            for (int i = 0; i < Batch; i++)
            {
                batch.Add(Broken());
            }

            await rig.SendAsync(input, batch);
        }

        return RandomFrames;
    }

    private byte[] Broken()
    {
        ushort port = (ushort)_random.Next(1, 65535);
        byte[] frame = _random.Next(4) switch
        {
            0 => new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Tcp(port, 80, (uint)_random.Next(), 1, TcpControlBits.Ack, RandomBytes(_random.Next(0, 1400))).Build(),
            1 => new FrameBuilder().Ipv4("10.0.0.10", "10.0.0.1").Udp(port, 53, RandomBytes(_random.Next(0, 1400))).Build(),
            2 => new FrameBuilder().Ipv6("fd00::10", "fd00::1").Ipv6Extension(0, 8).Ipv6Extension(60, 16).Tcp(port, 80, (uint)_random.Next(), 1, TcpControlBits.Ack, RandomBytes(_random.Next(0, 1200))).Build(),
            _ => RandomBytes(_random.Next(1, 1514)),
        };
        switch (_random.Next(6))
        {
            case 0: // truncated headers
                return frame[..Math.Max(1, _random.Next(1, Math.Min(frame.Length, 80)))];
            case 1 when frame.Length > 14: // bad IHL (IPv4) or a bogus next header (IPv6)
                frame[14] = (byte)((frame[14] & 0xF0) | _random.Next(16));
                frame[Math.Min(20, frame.Length - 1)] = (byte)_random.Next(256);
                return frame;
            case 2 when frame.Length > 46: // bad TCP data offset, or whatever sits there
                frame[46] = (byte)(_random.Next(16) << 4);
                return frame;
            case 3 when frame.Length > 60: // a bogus IPv6 extension chain: next-header and length bytes anywhere
                for (int i = 0; i < 4; i++)
                {
                    frame[_random.Next(14, 60)] = (byte)(_random.Next(3) switch { 0 => 0, 1 => 43, _ => _random.Next(256) });
                }

                return frame;
            case 4 when frame.Length > 20: // IP total length that lies
                frame[16] = (byte)_random.Next(256);
                frame[17] = (byte)_random.Next(256);
                return frame;
            default:
                return frame;
        }
    }

    private static bool RepeatedInTheInput(string hex) => hex.Length < 200; // tiny random frames can repeat by chance

    private ushort NextMarker() => (ushort)(60000 + Interlocked.Increment(ref _marker));

    private byte[] RandomBytes(int length)
    {
        byte[] bytes = new byte[length];
        _random.NextBytes(bytes);
        return bytes;
    }

    private static byte[] BigEndian(uint value)
    {
        byte[] bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        return bytes;
    }

    private static byte[] Udp(ushort port, string payload, byte mac) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", mac).Udp(port, 9, Encoding.ASCII.GetBytes(payload)).Build();

    private static ushort SourcePort(byte[] frame) => (ushort)((frame[34] << 8) | frame[35]);

    private async Task<JsonElement> StatsAsync(ChurnRig rig)
    {
        await using ControlSocketClient control = await ControlSocketClient.ConnectAsync(rig.ControlPath, Token);
        return (await control.ExecuteAsync("query-stats")).GetProperty("nics")[0].Clone();
    }

    private async Task WaitUntilAsync(Func<bool> condition, string what, ChurnRig rig)
    {
        DateTime deadline = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline || rig.Daemon.HasExited)
            {
                throw new TimeoutException($"{what} did not happen within 30 s; the daemon said:\n{string.Join('\n', rig.Daemon.Lines.TakeLast(40))}");
            }

            await Task.Delay(50, Token);
        }
    }
}
