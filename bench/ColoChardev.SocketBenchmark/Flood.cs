using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using ColoChardev.Testbed;

namespace ColoChardev.SocketBenchmark;

/// <summary>What a one-sided flood did to a target.</summary>
internal sealed record FloodMeasurement(
    string Side,
    long Sent,
    double Seconds,
    long Released,
    long CheckpointRequests,
    long PeakRssBytes,
    long FinalRssBytes,
    double CpuSeconds,
    bool StillReading,
    string DaemonAccount);

/// <summary>
/// Only one side sends, as fast as it can, and nobody answers checkpoint requests (COLO stuck, the worst case):
/// the comparator's memory must stay bounded. Bounded in frames and in time; outdev and notify_dev are drained.
/// </summary>
internal static class Flood
{
    public static FloodMeasurement Run(RunningTarget target, SyntheticTraffic traffic, bool primarySide, long frames, TimeSpan limit)
    {
        Socket input = primarySide ? target.Primary : target.Secondary;
        input.SendTimeout = 5000;
        long released = 0;
        long requests = 0;
        var drains = new List<Thread>
        {
            new(() => Drain(target.Outdev, traffic.HeaderLength, null, ref released)) { IsBackground = true },
        };
        if (target.Notify is not null)
        {
            drains.Add(new Thread(() => Drain(target.Notify, 4, "DO_CHECKPOINT"u8.ToArray(), ref requests)) { IsBackground = true });
        }

        foreach (Thread thread in drains)
        {
            thread.Start();
        }

        double cpuBefore = ProcessMetrics.CpuSeconds(target.ProcessId);
        int chunk = Math.Max(1, 128 * 1024 / traffic.FramedLength);
        byte[] buffer = new byte[chunk * traffic.FramedLength];
        var clock = Stopwatch.StartNew();
        long sent = 0;
        bool reading = true;
        try
        {
            while (sent < frames && clock.Elapsed < limit)
            {
                for (int i = 0; i < chunk; i++)
                {
                    traffic.Write(sent + i, buffer.AsSpan(i * traffic.FramedLength, traffic.FramedLength));
                }

                ReadOnlySpan<byte> bytes = buffer;
                while (!bytes.IsEmpty)
                {
                    bytes = bytes[input.Send(bytes)..];
                }

                sent += chunk;
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
        {
            reading = false; // the target stopped reading this input for 5 s
        }

        double seconds = clock.Elapsed.TotalSeconds;
        Thread.Sleep(1000); // let it settle: what it still holds now is what it keeps
        string account = target.Lines.LastOrDefault(l => l.Contains("': in ", StringComparison.Ordinal)) is string line
            ? line[(line.IndexOf("': in ", StringComparison.Ordinal) + 3)..]
            : string.Empty;
        return new FloodMeasurement(
            primarySide ? "primary only" : "secondary only",
            sent,
            seconds,
            Interlocked.Read(ref released),
            Interlocked.Read(ref requests),
            ProcessMetrics.PeakResidentBytes(target.ProcessId),
            ProcessMetrics.ResidentBytes(target.ProcessId),
            ProcessMetrics.CpuSeconds(target.ProcessId) - cpuBefore,
            reading,
            account);
    }

    /// <summary>
    /// Counts the whole frames at the start of <paramref name="buffer"/> (its first <paramref name="have"/> bytes; those
    /// equal to <paramref name="only"/>, when given) and moves what remains of a partial one to the front.
    /// </summary>
    internal static void CountFrames(byte[] buffer, ref int have, int header, byte[]? only, ref long count)
    {
        int offset = 0;
        while (have - offset >= header)
        {
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(offset));
            if (have - offset < header + length)
            {
                break;
            }

            if (only is null || buffer.AsSpan(offset + header, length).SequenceEqual(only))
            {
                Interlocked.Increment(ref count);
            }

            offset += header + length;
        }

        buffer.AsSpan(offset, have - offset).CopyTo(buffer);
        have -= offset;
    }

    /// <summary>Counts the frames read from <paramref name="socket"/> (those equal to <paramref name="only"/>, when given) until it closes.</summary>
    private static void Drain(Socket socket, int header, byte[]? only, ref long count)
    {
        byte[] buffer = new byte[1 << 20];
        int have = 0;
        try
        {
            while (true)
            {
                int read = socket.Receive(buffer, have, buffer.Length - have, SocketFlags.None);
                if (read == 0)
                {
                    return;
                }

                have += read;
                CountFrames(buffer, ref have, header, only, ref count);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }
}
