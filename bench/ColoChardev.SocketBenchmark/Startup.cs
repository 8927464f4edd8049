using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;

namespace ColoChardev.SocketBenchmark;

/// <summary>What one start of a daemon build measured, in milliseconds from the moment the process was started.</summary>
/// <param name="Accepting">primary_in accepted a connection.</param>
/// <param name="FirstReleased">The first frame pair, sent as soon as all four chardevs were connected, came out of outdev.</param>
/// <param name="FirstDivergence">A diverging pair sent after it drew <c>DO_CHECKPOINT</c> on notify_dev (ms from sending it).</param>
/// <param name="First100k">The first 100,000 frames of 1,454-byte TCP, sent right after, all came out (ms from sending the first).</param>
/// <param name="Warm100k">The same again, 10 s later, on the warm process (ms).</param>
/// <param name="CpuSeconds">CPU the process used until then.</param>
/// <param name="PeakRssBytes">Its peak RSS.</param>
internal sealed record StartupMeasurement(double Accepting, double FirstReleased, double FirstDivergence, double First100k, double Warm100k, double CpuSeconds, long PeakRssBytes);

/// <summary>
/// <c>socket-bench startup</c>: how fast a daemon build starts comparing, and what its first moments cost (JIT): a
/// fresh process per run, its command given as is (a framework-dependent <c>dotnet colo-compare.dll</c>, a ReadyToRun
/// or self-contained publish, any <c>DOTNET_</c> setting in <c>--env</c>). <c>scripts/startup.sh</c> builds the variants.
/// </summary>
internal static class Startup
{
    private const int Burst = 100_000;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    public static StartupMeasurement Run(string command, IReadOnlyDictionary<string, string> environment, int basePort)
    {
        var traffic = new SyntheticTraffic(new TrafficShape(IpProtocol.Tcp, 1454, 1));
        int[] ports = [basePort, basePort + 1, basePort + 2, basePort + 3];
        string Server(string id, int port) => $"socket,id={id},host=127.0.0.1,port={port.ToString(CultureInfo.InvariantCulture)},server=on,wait=off";
        string[] words = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var info = new ProcessStartInfo(words[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string word in words[1..].Concat(
        [
            "-chardev", Server("pri", ports[0]), "-chardev", Server("sec", ports[1]), "-chardev", Server("out", ports[2]), "-chardev", Server("ntf", ports[3]),
            "-object", "iothread,id=it",
            "-object", "colo-compare,id=cc0,primary_in=pri,secondary_in=sec,outdev=out,iothread=it,notify_dev=ntf,max_queue_size=8192",
        ]))
        {
            info.ArgumentList.Add(word);
        }

        foreach ((string name, string value) in environment)
        {
            info.Environment[name] = value;
        }

        var clock = Stopwatch.StartNew();
        using Process process = Process.Start(info) ?? throw new InvalidOperationException($"'{command}' did not start");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using Socket primary = Connect(ports[0], clock, process);
            double accepting = clock.Elapsed.TotalMilliseconds;
            using Socket secondary = Connect(ports[1], clock, process);
            using Socket outdev = Connect(ports[2], clock, process);
            using Socket notify = Connect(ports[3], clock, process);
            byte[] frame = new byte[traffic.FramedLength];
            traffic.Write(0, frame);
            primary.Send(frame);
            secondary.Send(frame);
            var reader = new OutdevCounter(outdev, traffic.FramedLength);
            reader.WaitFor(1, clock);
            double firstReleased = clock.Elapsed.TotalMilliseconds;

            long divergedAt = Stopwatch.GetTimestamp();
            traffic.Write(1, frame);
            primary.Send(frame);
            traffic.MakeDiverge(frame);
            secondary.Send(frame);
            WaitForCheckpointRequest(notify);
            double divergence = Stopwatch.GetElapsedTime(divergedAt).TotalMilliseconds;
            // The checkpoint completes (as COLO's would): the diverging primary frame is released.
            byte[] answer = Encoding.ASCII.GetBytes("COLO_CHECKPOINT");
            byte[] framedAnswer = new byte[4 + answer.Length];
            BinaryPrimitives.WriteUInt32BigEndian(framedAnswer, (uint)answer.Length);
            answer.CopyTo(framedAnswer, 4);
            notify.Send(framedAnswer);
            reader.WaitFor(2, clock);

            double first = SendBurst(traffic, 2, primary, secondary, reader, clock);
            Thread.Sleep(TimeSpan.FromSeconds(10));
            double warm = SendBurst(traffic, 2 + Burst, primary, secondary, reader, clock);
            return new StartupMeasurement(accepting, firstReleased, divergence, first, warm, ProcessMetrics.CpuSeconds(process.Id), ProcessMetrics.PeakResidentBytes(process.Id));
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }

            process.WaitForExit();
        }
    }

    /// <summary>Frames <paramref name="first"/> .. +<see cref="Burst"/> in chunks of 64, at most 1,024 ahead of outdev; ms until all came out.</summary>
    private static double SendBurst(SyntheticTraffic traffic, long first, Socket primary, Socket secondary, OutdevCounter reader, Stopwatch clock)
    {
        const int chunk = 64;
        byte[] buffer = new byte[chunk * traffic.FramedLength];
        long start = Stopwatch.GetTimestamp();
        for (long id = first; id < first + Burst; id += chunk)
        {
            reader.WaitFor(id + chunk - 1024, clock);
            for (int i = 0; i < chunk; i++)
            {
                traffic.Write(id + i, buffer.AsSpan(i * traffic.FramedLength, traffic.FramedLength));
            }

            primary.Send(buffer);
            secondary.Send(buffer);
        }

        reader.WaitFor(first + Burst, clock);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    private static Socket Connect(int port, Stopwatch clock, Process process)
    {
        while (true)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                socket.Connect(new IPEndPoint(IPAddress.Loopback, port));
                return socket;
            }
            catch (SocketException) when (clock.Elapsed < Limit && !process.HasExited)
            {
                socket.Dispose();
                Thread.Sleep(1);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    private static void WaitForCheckpointRequest(Socket notify)
    {
        notify.ReceiveTimeout = (int)Limit.TotalMilliseconds;
        byte[] buffer = new byte[256];
        int have = 0;
        while (true)
        {
            int read = notify.Receive(buffer, have, buffer.Length - have, SocketFlags.None);
            if (read == 0)
            {
                throw new InvalidOperationException("notify_dev closed before DO_CHECKPOINT");
            }

            have += read;
            if (have >= 4 && have >= 4 + (int)BinaryPrimitives.ReadUInt32BigEndian(buffer))
            {
                string message = Encoding.ASCII.GetString(buffer, 4, (int)BinaryPrimitives.ReadUInt32BigEndian(buffer));
                if (message != "DO_CHECKPOINT")
                {
                    throw new InvalidOperationException($"notify_dev said '{message}'");
                }

                return;
            }
        }
    }

    /// <summary>Counts the frames read from outdev, in a thread of its own.</summary>
    private sealed class OutdevCounter
    {
        private readonly ManualResetEventSlim _arrived = new();
        private long _frames;

        public OutdevCounter(Socket outdev, int framedLength)
        {
            var thread = new Thread(() =>
            {
                byte[] buffer = new byte[1 << 20];
                long bytes = 0;
                try
                {
                    int read;
                    while ((read = outdev.Receive(buffer)) > 0)
                    {
                        bytes += read;
                        Volatile.Write(ref _frames, bytes / framedLength);
                        _arrived.Set();
                    }
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                }
            }) { IsBackground = true, Name = "outdev" };
            thread.Start();
        }

        public void WaitFor(long frames, Stopwatch clock)
        {
            while (Volatile.Read(ref _frames) < frames)
            {
                if (clock.Elapsed > Limit + Limit)
                {
                    throw new TimeoutException($"only {Volatile.Read(ref _frames)} of {frames} frames came out of outdev");
                }

                _arrived.Reset();
                if (Volatile.Read(ref _frames) < frames)
                {
                    _arrived.Wait(TimeSpan.FromMilliseconds(5));
                }
            }
        }
    }
}
