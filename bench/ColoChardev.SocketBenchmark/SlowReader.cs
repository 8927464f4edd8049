using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using ColoChardev.Testbed;

namespace ColoChardev.SocketBenchmark;

/// <summary>What an unthrottled sender and a slow outdev reader did to a target.</summary>
internal sealed record SlowReaderMeasurement(
    string Reader,
    long Sent,
    long Received,
    double Seconds,
    double LongestSendMs,
    long PeakRssBytes,
    string Account);

/// <summary>
/// Overload (the reliability issue's item 2): matching frames on both inputs as fast as the sender goes, with no
/// window and no flow control of its own, and an outdev reader several times slower: it reads 64 KiB, then sleeps
/// 1 ms. With <c>stops</c> the reader also stops for 3 s once a third has arrived, as QEMU's redirector that went deaf
/// does, then carries on. A target that back-pressures loses nothing while the reader makes progress; what it drops
/// when the reader stops is the difference between sent and received.
/// </summary>
internal static class SlowReader
{
    public static SlowReaderMeasurement Run(RunningTarget target, SyntheticTraffic traffic, long frames, bool stops, TimeSpan limit)
    {
        target.Primary.SendTimeout = (int)limit.TotalMilliseconds;
        target.Secondary.SendTimeout = (int)limit.TotalMilliseconds;
        long received = 0;
        var reader = new Thread(() => Read(target.Outdev, traffic.HeaderLength, stops ? frames / 3 : -1, ref received)) { IsBackground = true };
        reader.Start();
        int chunk = Math.Max(1, 64 * 1024 / traffic.FramedLength);
        byte[] buffer = new byte[chunk * traffic.FramedLength];
        var clock = Stopwatch.StartNew();
        double longest = 0;
        long sent = 0;
        try
        {
            while (sent < frames && clock.Elapsed < limit)
            {
                for (int i = 0; i < chunk; i++)
                {
                    traffic.Write(sent + i, buffer.AsSpan(i * traffic.FramedLength, traffic.FramedLength));
                }

                var send = Stopwatch.StartNew();
                SendAll(target.Primary, buffer);
                SendAll(target.Secondary, buffer);
                longest = Math.Max(longest, send.Elapsed.TotalMilliseconds);
                sent += chunk;
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
        {
            longest = limit.TotalMilliseconds;
        }

        // Whatever is still on its way arrives, or nothing more comes for 3 s.
        long last = -1;
        var quiet = Stopwatch.StartNew();
        while (quiet.Elapsed < TimeSpan.FromSeconds(3) && Interlocked.Read(ref received) < sent)
        {
            long now = Interlocked.Read(ref received);
            if (now != last)
            {
                last = now;
                quiet.Restart();
            }

            Thread.Sleep(50);
        }

        double seconds = clock.Elapsed.TotalSeconds;
        string account = target.Lines.LastOrDefault(l => l.Contains("': in ", StringComparison.Ordinal)) is string line
            ? line[(line.IndexOf("': in ", StringComparison.Ordinal) + 3)..]
            : string.Empty;
        return new SlowReaderMeasurement(stops ? "slow, stops 3 s" : "slow", sent, Interlocked.Read(ref received), seconds, longest, ProcessMetrics.PeakResidentBytes(target.ProcessId), account);
    }

    public static string Describe(string target, SlowReaderMeasurement m) => string.Create(CultureInfo.InvariantCulture,
        $"slow reader {m.Reader,-16} {target,-20} sent {m.Sent,9:N0} pairs, outdev got {m.Received,9:N0} (lost {m.Sent - m.Received:N0}) in {m.Seconds:0.0} s, longest send {m.LongestSendMs:0} ms, peak rss {m.PeakRssBytes / 1048576.0:0} MB");

    private static void SendAll(Socket socket, ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            bytes = bytes[socket.Send(bytes)..];
        }
    }

    private static void Read(Socket socket, int header, long stopAt, ref long count)
    {
        byte[] buffer = new byte[64 * 1024 + 70_000];
        int have = 0;
        bool stopped = false;
        try
        {
            while (true)
            {
                int read = socket.Receive(buffer, have, Math.Min(64 * 1024, buffer.Length - have), SocketFlags.None);
                if (read == 0)
                {
                    return;
                }

                have += read;
                Flood.CountFrames(buffer, ref have, header, null, ref count);
                if (!stopped && stopAt >= 0 && Interlocked.Read(ref count) >= stopAt)
                {
                    stopped = true;
                    Thread.Sleep(3000);
                }

                Thread.Sleep(1);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }
}
