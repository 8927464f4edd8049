using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Captures;
using ColoChardev.Daemon.Engine;
using ColoChardev.ColoCompareDaemon.Tests.Engine;
using ColoChardev.Testbed;
using Microsoft.Extensions.Logging.Abstractions;

namespace ColoChardev.ColoCompareDaemon.Tests.Captures;

/// <summary>
/// Divergence captures: what the engine shows of a diverging flow, written as pcapng and read back by tshark (which
/// CI installs: scripts/install-deps.sh), and the files' size and count limits.
/// </summary>
public sealed class DivergenceCaptureTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("colo-capture-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task A_tcp_mismatch_is_written_as_pcapng_that_tshark_reads_with_both_sides_and_the_reason()
    {
        var settings = new CaptureSettings(_directory);
        string file;
        byte[] p1 = Frames.Tcp(1000, "0123456789");
        byte[] p2 = Frames.Tcp(1010, "abcdefghij");
        byte[] s1 = Frames.Tcp(1000, "01234X6789", mac: 2);
        await using (var capture = Started(new DivergenceCapture(settings, "comp0", "tcp:127.0.0.1:9001", "tcp:127.0.0.1:9002", NullLogger.Instance)))
        {
            var engine = new CompareEngine(new CompareOptions(), new CapturingActions(capture));
            engine.OnPrimary(ChardevFrame.Rent(p1, 0), 1000);
            engine.OnPrimary(ChardevFrame.Rent(p2, 0), 1001);
            engine.OnSecondary(ChardevFrame.Rent(s1, 0), 1003);
            await WaitAsync(() => capture.Written == 1);
            file = capture.CurrentFile!;
        }

        Assert.Equal(Path.Combine(_directory, "comp0-000001.pcapng"), file);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, Mode(file)); // guest traffic: owner only
        string[] rows = await TsharkAsync(file, "frame.interface_name", "eth.src", "tcp.seq_raw", "tcp.len", "frame.comment");
        Assert.Equal(3, rows.Length);
        Assert.Equal(["primary_in", "primary_in", "secondary_in"], rows.Select(r => r.Split('|')[0]));
        Assert.Equal(["52:54:00:12:34:01", "52:54:00:12:34:01", "52:54:00:12:34:02"], rows.Select(r => r.Split('|')[1]));
        Assert.Equal(["1000", "1010", "1000"], rows.Select(r => r.Split('|')[2]));
        Assert.Equal(["10", "10", "10"], rows.Select(r => r.Split('|')[3]));
        Assert.Contains("colo-compare divergence 1: Mismatch on tcp 10.0.0.10:80 > 10.0.0.1:40000; primary packet 1 of 2 queued, the diverging one. TCP payload differs at sequence number 1005", rows[0], StringComparison.Ordinal);
        Assert.EndsWith("primary packet 2 of 2 queued", rows[1], StringComparison.Ordinal);
        Assert.EndsWith("secondary packet 1 of 1 queued, the diverging one", rows[2], StringComparison.Ordinal);

        // The bytes are the frames as received; the arrival times keep their order and spacing (ms).
        string[] hex = await TsharkAsync(file, "frame.time_epoch");
        double[] times = [.. hex.Select(t => double.Parse(t, System.Globalization.CultureInfo.InvariantCulture))];
        Assert.Equal(0.003, times[2] - times[0], 3);
        Assert.Equal(0.001, times[1] - times[0], 3);
        string[] data = await TsharkRawAsync(file);
        Assert.Equal([Convert.ToHexString(p1), Convert.ToHexString(p2), Convert.ToHexString(s1)], data);
        string[] interfaces = await TsharkAsync(file, "frame.interface_description");
        Assert.Equal("colo-compare 'comp0' secondary_in tcp:127.0.0.1:9002", interfaces[2]);
    }

    [Fact]
    public async Task Files_rotate_by_size_and_only_the_newest_are_kept()
    {
        var settings = new CaptureSettings(_directory) { FileBytes = 4096, Files = 3 };
        await using (var capture = Started(new DivergenceCapture(settings, "nic/1", "a", "b", NullLogger.Instance)))
        {
            var engine = new CompareEngine(new CompareOptions(), new CapturingActions(capture));
            for (int i = 0; i < 12; i++)
            {
                // Each mismatch is a UDP pair of about 600 bytes with comments: about four fit a file.
                string payload = new('x', 500);
                engine.OnPrimary(ChardevFrame.Rent(Frames.Udp(payload + "A", sourcePort: (ushort)(100 + i)), 0), i);
                engine.OnSecondary(ChardevFrame.Rent(Frames.Udp(payload + "B", sourcePort: (ushort)(100 + i), mac: 2), 0), i);
                engine.OnCheckpointCompleted(i);
            }

            await WaitAsync(() => capture.Written == 12);
            Assert.Equal(0, capture.Failed);
        }

        string[] files = [.. Directory.GetFiles(_directory).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        Assert.Equal(3, files.Length);
        Assert.All(files, f => Assert.Matches("^nic_1-0000[0-9]{2}\\.pcapng$", f));
        Assert.All(files, f => Assert.True(new FileInfo(Path.Combine(_directory, f)).Length <= 4096, f));

        // Whole divergences only, none split between files, the newest kept: the last file ends with divergence 12.
        var divergences = new List<int>();
        foreach (string f in files)
        {
            string[] comments = await TsharkAsync(Path.Combine(_directory, f), "frame.comment");
            Assert.Equal(0, comments.Length % 2);
            divergences.AddRange(comments.Select(c => int.Parse(c.Split(' ')[2].TrimEnd(':'), System.Globalization.CultureInfo.InvariantCulture)).Distinct());
        }

        Assert.Equal(12, divergences[^1]);
        Assert.Equal(divergences.Order(), divergences);
        Assert.True(divergences.Count < 12, "older files were deleted");
    }

    [Fact]
    public async Task Only_the_configured_number_of_packets_per_side_is_written_and_the_comment_counts_them_all()
    {
        var settings = new CaptureSettings(_directory) { PacketsPerSide = 2 };
        string file;
        await using (var capture = Started(new DivergenceCapture(settings, "comp0", "a", "b", NullLogger.Instance)))
        {
            var engine = new CompareEngine(new CompareOptions { MaxQueueSize = 5 }, new CapturingActions(capture));
            for (int i = 0; i < 5; i++)
            {
                engine.OnPrimary(ChardevFrame.Rent(Frames.Udp($"p{i}"), 0), i);
            }

            await WaitAsync(() => capture.Written == 1);
            file = capture.CurrentFile!;
        }

        string[] comments = await TsharkAsync(file, "frame.comment");
        Assert.Equal(2, comments.Length);
        Assert.Contains("QueueFull", comments[0], StringComparison.Ordinal);
        Assert.Contains("primary packet 2 of 5 queued", comments[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_divergence_takes_at_most_half_the_pending_limit_per_side_and_always_its_first_packet()
    {
        byte[] big = Frames.Udp(new string('p', 1000));
        var settings = new CaptureSettings(_directory) { PendingLimitBytes = 2 * ((2 * big.Length) + 10) };
        string file;
        await using (var capture = Started(new DivergenceCapture(settings, "comp0", "a", "b", NullLogger.Instance)))
        {
            var engine = new CompareEngine(new CompareOptions { MaxQueueSize = 5 }, new CapturingActions(capture));
            for (int i = 0; i < 5; i++)
            {
                engine.OnPrimary(ChardevFrame.Rent(big, 0), i);
            }

            await WaitAsync(() => capture.Written == 1);
            file = capture.CurrentFile!;
        }

        string[] comments = await TsharkAsync(file, "frame.comment");
        Assert.Equal(2, comments.Length); // two fit in half the limit; all five are counted in the comments
        Assert.Contains("primary packet 2 of 5 queued", comments[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_write_that_fails_is_counted_and_the_writer_carries_on()
    {
        string directory = Path.Combine(_directory, "gone-for-a-while");
        await using var capture = Started(new DivergenceCapture(new CaptureSettings(directory), "comp0", "a", "b", NullLogger.Instance));
        var engine = new CompareEngine(new CompareOptions(), new CapturingActions(capture));
        Directory.Delete(directory);
        engine.OnPrimary(ChardevFrame.Rent(Frames.Udp("A", sourcePort: 1), 0), 0);
        engine.OnSecondary(ChardevFrame.Rent(Frames.Udp("B", sourcePort: 1, mac: 2), 0), 0);
        await WaitAsync(() => capture.Failed == 1);

        Directory.CreateDirectory(directory);
        engine.OnPrimary(ChardevFrame.Rent(Frames.Udp("A", sourcePort: 2), 0), 0);
        engine.OnSecondary(ChardevFrame.Rent(Frames.Udp("B", sourcePort: 2, mac: 2), 0), 0);
        await WaitAsync(() => capture.Written == 1);
        string[] comments = await TsharkAsync(capture.CurrentFile!, "frame.comment");
        Assert.All(comments, c => Assert.StartsWith("colo-compare divergence 2:", c, StringComparison.Ordinal));
    }

    [Fact]
    public void A_capture_directory_the_daemon_makes_is_its_users_only()
    {
        string made = Path.Combine(_directory, "new", "captures");
        DivergenceCapture.EnsureWritable(new CaptureSettings(made));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, Mode(made));
        Assert.Empty(Directory.GetFileSystemEntries(made)); // the probe file is gone
    }

    [Fact]
    public void A_directory_that_cannot_be_written_is_refused_with_one_sentence()
    {
        string notADirectory = Path.Combine(_directory, "file");
        File.WriteAllText(notADirectory, "x");
        var e = Assert.Throws<InvalidOperationException>(() => Started(new DivergenceCapture(new CaptureSettings(notADirectory), "comp0", "a", "b", NullLogger.Instance)));
        Assert.StartsWith($"--capture {notADirectory}: cannot write there", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_restarted_daemon_starts_a_new_file_after_the_ones_already_there()
    {
        await File.WriteAllBytesAsync(Path.Combine(_directory, "comp0-000007.pcapng"), []);
        await using var capture = Started(new DivergenceCapture(new CaptureSettings(_directory), "comp0", "a", "b", NullLogger.Instance));
        var engine = new CompareEngine(new CompareOptions(), new CapturingActions(capture));
        engine.OnPrimary(ChardevFrame.Rent(Frames.Udp("A"), 0), 0);
        engine.OnSecondary(ChardevFrame.Rent(Frames.Udp("B", mac: 2), 0), 0);
        await WaitAsync(() => capture.Written == 1);
        Assert.Equal(Path.Combine(_directory, "comp0-000008.pcapng"), capture.CurrentFile);
    }

    [Fact]
    public async Task While_earlier_captures_wait_for_the_disk_beyond_the_limit_further_ones_are_skipped_and_counted()
    {
        var settings = new CaptureSettings(_directory) { PendingLimitBytes = 1 };
        await using var capture = new DivergenceCapture(settings, "comp0", "a", "b", NullLogger.Instance);
        var actions = new CapturingActions(capture, expectTaken: false);
        var engine = new CompareEngine(new CompareOptions(), actions);
        for (ushort port = 1; port <= 3; port++)
        {
            engine.OnPrimary(ChardevFrame.Rent(Frames.Udp("A", sourcePort: port), 0), 0);
            engine.OnSecondary(ChardevFrame.Rent(Frames.Udp("B", sourcePort: port, mac: 2), 0), 0);
        }

        // The writer is not started yet: the first divergence is taken (nothing waited), the next two are not.
        Assert.Equal([true, false, false], actions.Taken);
        Assert.Equal(2, capture.SkippedBusy);
        capture.Start();
        await WaitAsync(() => capture.Written == 1);
        string[] comments = await TsharkAsync(capture.CurrentFile!, "frame.comment");
        Assert.All(comments, c => Assert.StartsWith("colo-compare divergence 1:", c, StringComparison.Ordinal));
    }

    private static UnixFileMode Mode(string path) => OperatingSystem.IsWindows() ? UnixFileMode.None : File.GetUnixFileMode(path);

    private static DivergenceCapture Started(DivergenceCapture capture)
    {
        capture.Start();
        return capture;
    }

    private static async Task WaitAsync(Func<bool> condition)
    {
        DateTime deadline = DateTime.UtcNow.AddSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the capture was not written within 20 s");
            await Task.Delay(10);
        }
    }

    private static async Task<string[]> TsharkAsync(string file, params string[] fields)
    {
        List<string> arguments = ["-r", file, "-T", "fields", "-E", "separator=|"];
        foreach (string field in fields)
        {
            arguments.AddRange(["-e", field]);
        }

        ProcessResult result = await ExternalProcess.RunAsync("tshark", arguments, TimeSpan.FromSeconds(60));
        Assert.True(result.ExitCode == 0, $"tshark -r {file}: {result.Output}");
        return result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary>Each packet's bytes as hex (tshark's JSON raw output).</summary>
    private static async Task<string[]> TsharkRawAsync(string file)
    {
        ProcessResult result = await ExternalProcess.RunAsync("tshark", ["-r", file, "-T", "json", "-x"], TimeSpan.FromSeconds(60));
        Assert.True(result.ExitCode == 0, result.Output);
        using var json = System.Text.Json.JsonDocument.Parse(result.StandardOutput);
        return [.. json.RootElement.EnumerateArray().Select(p => p.GetProperty("_source").GetProperty("layers").GetProperty("frame_raw")[0].GetString()!.ToUpperInvariant())];
    }

    private sealed class CapturingActions(DivergenceCapture capture, bool expectTaken = true) : ICompareActions
    {
        private long _number;

        public List<bool> Taken { get; } = [];

        public void Release(ChardevFrame frame, ReleaseReason reason) => frame.Dispose();

        public void Drop(ChardevFrame frame, PacketSide side, DropReason reason) => frame.Dispose();

        public void RequestCheckpoint(CheckpointReason reason, FlowKey flow)
        {
        }

        public void Diverged(Divergence divergence)
        {
            bool taken = capture.Enqueue(divergence, ++_number, divergence.Describe(), DateTimeOffset.UtcNow);
            Taken.Add(taken);
            Assert.True(taken || !expectTaken);
        }
    }
}
