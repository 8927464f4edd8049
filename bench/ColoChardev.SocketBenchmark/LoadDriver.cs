using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using ColoChardev.Testbed;

namespace ColoChardev.SocketBenchmark;

/// <summary>How a run sends.</summary>
/// <param name="Frames">Frames measured in the throughput phase, after the warm-up.</param>
/// <param name="Window">Most frames sent but not yet back from outdev (keeps every queue below max_queue_size).</param>
/// <param name="PacedRate">Frames per second in the latency phase (well below every target's capacity).</param>
/// <param name="PacedFrames">Frames in the latency phase.</param>
/// <param name="WarmupSeconds">
/// How long the same traffic flows before the measured frames (tiered compilation, socket buffers, pools settle): a
/// daemon runs for months, so the benchmark measures it warm; start-up is measured apart (scripts/startup.sh).
/// </param>
internal sealed record LoadOptions(long Frames, int Window, int PacedRate, int PacedFrames, double WarmupSeconds = 2);

/// <summary>What one run measured. Latencies in microseconds; null where not measured.</summary>
internal sealed record LoadMeasurement(
    long MeasuredFrames,
    double Seconds,
    double PacketsPerSecond,
    double MegabytesPerSecond,
    double CpuSeconds,
    double LoadedLatencyP50,
    double LoadedLatencyP99,
    double PacedLatencyP50,
    double PacedLatencyP99,
    double PacedLatencyMax,
    long PeakRssBytes,
    long CheckpointRequests,
    long Divergences,
    double? AllocatedBytesPerFrame,
    long? Gen0Collections);

/// <summary>
/// Sends one workload through a started target and measures it. One thread sends (the same bytes to primary_in and
/// secondary_in, in chunks, never more than <see cref="LoadOptions.Window"/> frames ahead of outdev), one reads
/// outdev (checks every frame arrives exactly once, every 16th byte for byte, and records its latency from the
/// moment its chunk was sent), one answers checkpoint requests on notify_dev as a COLO checkpoint would.
/// A diverging frame ends its chunk and the sender waits until everything sent has come out (the checkpoint),
/// as COLO's VMs stop while it runs. Then a paced phase measures the latency a lightly loaded comparator adds.
/// </summary>
internal sealed class LoadDriver
{
    private static readonly TimeSpan Quiet = TimeSpan.FromSeconds(20);
    private readonly RunningTarget _target;
    private readonly SyntheticTraffic _traffic;
    private readonly LoadOptions _options;
    /// <summary>Most frames the warm-up sends, whatever its time (bounds the arrays below).</summary>
    private readonly long _warmupCap;
    private long _total; // read by the receiver: warm-up, measured and paced frames, known once the warm-up ends
    private long _warmup; // frames of the warm-up, once it ended
    private long _measuredEnd = long.MaxValue; // the receiver's end of the measured window: warm-up + measured frames, once known
    private readonly long[] _sendTicks;
    private readonly byte[] _seen;
    private readonly long[] _latencies;
    private readonly ManualResetEventSlim _progress = new();
    private readonly List<string> _errors = [];
    private long _received;
    private long _checkpointRequests;
    private long _divergences;
    private long _requestsInWarmup;
    private long _divergencesInWarmup;
    private volatile bool _failed;
    private long _warmTicks;
    private long _endTicks;
    private double _warmCpu;
    private double _endCpu;
    private int _warmLines;
    private int _endLines;

    public LoadDriver(RunningTarget target, SyntheticTraffic traffic, LoadOptions options)
    {
        _target = target;
        _traffic = traffic;
        _options = options;
        _warmupCap = options.Frames * 4;
        _total = _warmupCap + options.Frames + options.PacedFrames;
        _sendTicks = new long[_total];
        _seen = new byte[_total];
        _latencies = new long[_total];
    }

    public LoadMeasurement Run()
    {
        var threads = new List<Thread>
        {
            new(Send) { Name = "sender" },
            new(Receive) { Name = "outdev reader" },
        };
        if (_target.Notify is not null)
        {
            threads.Add(new Thread(AnswerCheckpoints) { Name = "notify_dev", IsBackground = true });
        }

        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        threads[0].Join();
        threads[1].Join();
        lock (_errors)
        {
            if (_errors.Count > 0)
            {
                throw new InvalidOperationException($"{RunningTarget.Name(_target.Kind)}: {string.Join("; ", _errors)}");
            }
        }

        return Measure();
    }

    private LoadMeasurement Measure()
    {
        long measured = _options.Frames;
        double seconds = (double)(_endTicks - _warmTicks) / Stopwatch.Frequency;
        double pps = measured / seconds;
        long[] loaded = _latencies[(int)_warmup..(int)(_warmup + _options.Frames)];
        long[] paced = _latencies[(int)(_warmup + _options.Frames)..(int)_total];
        if (Environment.GetEnvironmentVariable("SOCKET_BENCH_DUMP") is string dump)
        {
            File.WriteAllLines(Path.Combine(dump, $"{_target.Kind}-{_traffic.Shape.FrameBytes}-{Environment.TickCount64}.txt"), paced.Select(t => (t * 1e6 / Stopwatch.Frequency).ToString("0", System.Globalization.CultureInfo.InvariantCulture)));
        }

        Array.Sort(loaded);
        Array.Sort(paced);
        (double? perFrame, long? gen0) = DaemonAllocations();
        return new LoadMeasurement(
            measured,
            seconds,
            pps,
            pps * _traffic.Shape.FrameBytes / 1e6,
            _endCpu - _warmCpu,
            Percentile(loaded, 0.50),
            Percentile(loaded, 0.99),
            Percentile(paced, 0.50),
            Percentile(paced, 0.99),
            Percentile(paced, 1.0),
            ProcessMetrics.PeakResidentBytes(_target.ProcessId),
            Interlocked.Read(ref _checkpointRequests) - _requestsInWarmup,
            _divergences - _divergencesInWarmup,
            perFrame,
            gen0);
    }

    /// <summary>
    /// Bytes the daemon allocated per frame read (both inputs) between summaries in the second half of the measured
    /// window (the first half may still see tiered compilation finish), or the whole window when the half holds fewer
    /// than two summaries.
    /// </summary>
    private (double? PerFrame, long? Gen0) DaemonAllocations()
    {
        if (_target.Kind != TargetKind.Daemon)
        {
            return (null, null);
        }

        IReadOnlyList<string> lines = _target.Lines;
        List<DaemonGcFigures> Figures(int from)
        {
            var found = new List<DaemonGcFigures>();
            for (int i = from; i < Math.Min(_endLines, lines.Count); i++)
            {
                if (DaemonGcFigures.TryParse(lines[i]) is DaemonGcFigures figures)
                {
                    found.Add(figures);
                }
            }

            return found;
        }

        List<DaemonGcFigures> window = Figures((_warmLines + _endLines) / 2);
        if (window.Count < 2)
        {
            window = Figures(_warmLines);
        }

        if (window.Count < 2 || window[^1].Frames == window[0].Frames)
        {
            return (null, null);
        }

        return ((double)(window[^1].Allocated - window[0].Allocated) / (window[^1].Frames - window[0].Frames), window[^1].Gen0 - window[0].Gen0);
    }

    private static double Percentile(long[] sorted, double p)
    {
        if (sorted.Length == 0)
        {
            return double.NaN;
        }

        long ticks = sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];
        return ticks * 1e6 / Stopwatch.Frequency;
    }

    private void Fail(string error)
    {
        lock (_errors)
        {
            _errors.Add(error);
        }

        _failed = true;
        _progress.Set();
    }

    private void Send()
    {
        try
        {
            int chunkFrames = Math.Max(1, Math.Min(_options.Window / 4, 128 * 1024 / _traffic.FramedLength));
            byte[] primary = new byte[chunkFrames * _traffic.FramedLength];
            byte[] secondary = new byte[primary.Length];
            long warm = SendPhase(0, _warmupCap, chunkFrames, primary, secondary, paced: false, TimeSpan.FromSeconds(_options.WarmupSeconds));
            if (!WaitFor(warm, "the warm-up"))
            {
                return;
            }

            // Everything sent has come back: the measured window starts now, from an empty pipeline.
            (_warmTicks, _warmCpu, _warmLines) = (Stopwatch.GetTimestamp(), ProcessMetrics.CpuSeconds(_target.ProcessId), _target.Lines.Count);
            (_requestsInWarmup, _divergencesInWarmup) = (Interlocked.Read(ref _checkpointRequests), _divergences);
            long measuredEnd = warm + _options.Frames;
            _warmup = warm;
            Volatile.Write(ref _total, measuredEnd + _options.PacedFrames);
            Volatile.Write(ref _measuredEnd, measuredEnd);
            SendPhase(warm, measuredEnd, chunkFrames, primary, secondary, paced: false);
            if (!WaitFor(measuredEnd, "the throughput phase"))
            {
                return;
            }

            int burst = Math.Max(1, _options.PacedRate / 1000);
            SendPhase(measuredEnd, _total, burst, primary, secondary, paced: true);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            Fail($"sending failed after {Interlocked.Read(ref _received)} frames came back: {e.Message}");
        }
    }

    /// <summary>Sends frames <paramref name="first"/> up to <paramref name="end"/>, or for <paramref name="duration"/>; returns where it stopped.</summary>
    private long SendPhase(long first, long end, int chunkFrames, byte[] primary, byte[] secondary, bool paced, TimeSpan? duration = null)
    {
        long next = first;
        long start = Stopwatch.GetTimestamp();
        long burst = 0;
        while (next < end && !_failed && (duration is not TimeSpan limit || Stopwatch.GetElapsedTime(start) < limit))
        {
            long chunkEnd = Math.Min(end, next + chunkFrames);
            long diverging = -1;
            for (long id = next; id < chunkEnd; id++)
            {
                if (_traffic.Diverges(id))
                {
                    _divergences++;
                    diverging = id;
                    chunkEnd = id + 1;
                    break;
                }
            }

            if (paced)
            {
                // Burst k leaves at start + k ms, never earlier. Sleep whole milliseconds: a shorter Thread.Sleep is a
                // yield, and a sender spinning on yields takes a core from the target being measured.
                long due = start + (burst++ * Stopwatch.Frequency / 1000);
                while (Stopwatch.GetTimestamp() < due)
                {
                    Thread.Sleep(1);
                }
            }
            else if (!WaitFor(chunkEnd - _options.Window, "the window"))
            {
                return next;
            }

            int count = (int)(chunkEnd - next);
            int length = count * _traffic.FramedLength;
            for (int i = 0; i < count; i++)
            {
                _traffic.Write(next + i, primary.AsSpan(i * _traffic.FramedLength, _traffic.FramedLength));
            }

            byte[] toSecondary = primary;
            if (diverging >= 0)
            {
                primary.AsSpan(0, length).CopyTo(secondary);
                _traffic.MakeDiverge(secondary.AsSpan((count - 1) * _traffic.FramedLength, _traffic.FramedLength));
                toSecondary = secondary;
            }

            long now = Stopwatch.GetTimestamp();
            _sendTicks.AsSpan((int)next, count).Fill(now);
            SendAll(_target.Primary, primary.AsSpan(0, length));
            SendAll(_target.Secondary, toSecondary.AsSpan(0, length));
            next = chunkEnd;
            if (diverging >= 0 && !WaitFor(next, "a checkpoint"))
            {
                return next;
            }
        }

        return next;
    }

    /// <summary>Waits until at least <paramref name="count"/> frames came back from outdev.</summary>
    private bool WaitFor(long count, string what)
    {
        var quiet = Stopwatch.StartNew();
        long last = Interlocked.Read(ref _received);
        while (true)
        {
            long received = Interlocked.Read(ref _received);
            if (received >= count || _failed)
            {
                return !_failed;
            }

            if (received != last)
            {
                last = received;
                quiet.Restart();
            }
            else if (quiet.Elapsed > Quiet)
            {
                Fail($"waiting for {what}: only {received} of {count} frames came out of outdev, nothing for {Quiet.TotalSeconds:0} s ({Interlocked.Read(ref _checkpointRequests)} checkpoint requests so far)");
                return false;
            }

            _progress.Reset();
            if (Interlocked.Read(ref _received) < count && !_failed)
            {
                _progress.Wait(TimeSpan.FromMilliseconds(10));
            }
        }
    }

    private static void SendAll(Socket socket, ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            bytes = bytes[socket.Send(bytes)..];
        }
    }

    private void Receive()
    {
        Socket outdev = _target.Outdev;
        outdev.ReceiveTimeout = (int)Quiet.TotalMilliseconds;
        byte[] buffer = new byte[1 << 20];
        byte[] expected = new byte[_traffic.FramedLength];
        int framed = _traffic.FramedLength;
        int have = 0;
        long received = 0;
        try
        {
            while (received < Volatile.Read(ref _total) && !_failed)
            {
                int read = outdev.Receive(buffer, have, buffer.Length - have, SocketFlags.None);
                if (read == 0)
                {
                    Fail($"outdev closed after {received} of {_total} frames");
                    return;
                }

                long now = Stopwatch.GetTimestamp();
                have += read;
                int offset = 0;
                while (have - offset >= _traffic.HeaderLength)
                {
                    int length = _traffic.HeaderLength + (int)BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(offset));
                    if (length != framed)
                    {
                        Fail($"outdev frame {received}: {length - _traffic.HeaderLength} bytes, expected {framed - _traffic.HeaderLength}");
                        return;
                    }

                    if (have - offset < framed)
                    {
                        break;
                    }

                    ReadOnlySpan<byte> frame = buffer.AsSpan(offset, framed);
                    long id = _traffic.ReadId(frame);
                    if ((ulong)id >= (ulong)_total || _seen[id] != 0 || _sendTicks[id] == 0)
                    {
                        Fail($"outdev frame {received} carries frame number {id}: {(id >= 0 && id < _total && _seen[id] != 0 ? "a duplicate" : "never sent")}");
                        return;
                    }

                    if ((id & 15) == 0)
                    {
                        _traffic.Write(id, expected);
                        if (!frame.SequenceEqual(expected))
                        {
                            Fail($"outdev frame {id} is not byte for byte the primary frame sent");
                            return;
                        }
                    }

                    _seen[id] = 1;
                    _latencies[received] = now - _sendTicks[id];
                    received++;
                    offset += framed;
                    if (received == Volatile.Read(ref _measuredEnd))
                    {
                        (_endTicks, _endCpu) = (now, ProcessMetrics.CpuSeconds(_target.ProcessId));
                        _endLines = _target.Lines.Count;
                    }
                }

                buffer.AsSpan(offset, have - offset).CopyTo(buffer);
                have -= offset;
                Interlocked.Exchange(ref _received, received);
                _progress.Set();
            }
        }
        catch (SocketException e)
        {
            Fail($"outdev: {e.Message} after {received} of {_total} frames");
        }
    }

    private void AnswerCheckpoints()
    {
        Socket notify = _target.Notify!;
        byte[] answer = Encoding.ASCII.GetBytes("COLO_CHECKPOINT");
        // What a comparator reads on notify_dev carries the vnet word when vnet_hdr_support is on (spec §1.6).
        int header = _traffic.Shape.Vnet ? 8 : 4;
        byte[] framedAnswer = new byte[header + answer.Length];
        BinaryPrimitives.WriteUInt32BigEndian(framedAnswer, (uint)answer.Length);
        answer.CopyTo(framedAnswer, header);
        byte[] buffer = new byte[4096];
        int have = 0;
        try
        {
            while (true)
            {
                int read = notify.Receive(buffer, have, buffer.Length - have, SocketFlags.None);
                if (read == 0)
                {
                    return;
                }

                have += read;
                int offset = 0;
                // What it writes there never carries the vnet word.
                while (have - offset >= 4 && have - offset >= 4 + (int)BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(offset)))
                {
                    int length = (int)BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(offset));
                    string message = Encoding.ASCII.GetString(buffer, offset + 4, length);
                    offset += 4 + length;
                    if (message == "DO_CHECKPOINT")
                    {
                        Interlocked.Increment(ref _checkpointRequests);
                        SendAll(notify, framedAnswer);
                    }
                }

                buffer.AsSpan(offset, have - offset).CopyTo(buffer);
                have -= offset;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }
}

/// <summary>The GC figures at the end of the daemon's summary line, with its frame counts.</summary>
internal sealed record DaemonGcFigures(long Frames, long Allocated, long Gen0)
{
    public static DaemonGcFigures? TryParse(string line)
    {
        int inAt = line.IndexOf("': in ", StringComparison.Ordinal);
        int allocatedAt = line.IndexOf("process allocated ", StringComparison.Ordinal);
        int gcAt = line.IndexOf(" bytes, gc ", StringComparison.Ordinal);
        if (inAt < 0 || allocatedAt < 0 || gcAt < 0)
        {
            return null;
        }

        string[] frames = line[(inAt + 6)..line.IndexOf(' ', inAt + 6)].Split('/');
        long allocated = long.Parse(line[(allocatedAt + 18)..gcAt], System.Globalization.CultureInfo.InvariantCulture);
        string gen0 = line[(gcAt + 11)..].Split('/')[0];
        return new DaemonGcFigures(
            long.Parse(frames[0], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(frames[1], System.Globalization.CultureInfo.InvariantCulture),
            allocated,
            long.Parse(gen0, System.Globalization.CultureInfo.InvariantCulture));
    }
}
