using System.Buffers;
using System.Globalization;
using System.Text.RegularExpressions;
using System.Threading.Channels;
using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Captures;

/// <summary>Where and how much to capture (<c>--capture DIR</c> and its limits).</summary>
public sealed record CaptureSettings(string Directory)
{
    /// <summary>A file is closed and a new one started before a divergence would take it past this size.</summary>
    public long FileBytes { get; init; } = 16L * 1024 * 1024;

    /// <summary>Files kept per NIC; the oldest is deleted when a new one would exceed this.</summary>
    public int Files { get; init; } = 8;

    /// <summary>Queued packets written per side and divergence (the oldest ones: where the comparison stopped).</summary>
    public int PacketsPerSide { get; init; } = 64;

    /// <summary>Bytes copied and not yet written beyond which further divergences are skipped (counted as busy).</summary>
    public long PendingLimitBytes { get; init; } = 32L * 1024 * 1024;
}

/// <summary>
/// Divergence captures of one NIC: on every divergence the flow's queued packets of both sides, the diverging pair
/// marked, go to a pcapng file (Wireshark, tshark) with the reason in each packet's comment. Files are
/// <c>DIR/NIC-NNNNNN.pcapng</c>, rotated by size and count, so the directory holds at most
/// <see cref="CaptureSettings.Files"/> × <see cref="CaptureSettings.FileBytes"/> per NIC. The engine's thread only copies
/// the packets; a background task writes them. A capture that cannot be written in time or at all is skipped and
/// counted (the comparison never waits for the disk).
/// </summary>
internal sealed partial class DivergenceCapture : IAsyncDisposable
{
    private readonly CaptureSettings _settings;
    private readonly string _nic;
    private readonly string _prefix;
    private readonly (string Name, string Description)[] _interfaces;
    private readonly ILogger _logger;
    private readonly Channel<Record> _queue = Channel.CreateUnbounded<Record>(new UnboundedChannelOptions { SingleReader = true });
    private Task _writer = Task.CompletedTask;
    private long _pendingBytes;
    private long _written;
    private long _skippedBusy;
    private long _failed;
    private string? _currentFile;
    private FileStream? _file;
    private int _fileNumber;
    private long _headerLength;

    /// <summary>Creates <paramref name="settings"/>' directory if needed; <see cref="Start"/> starts the writer.</summary>
    /// <exception cref="InvalidOperationException">The directory cannot be created or written (message starts with --capture).</exception>
    public DivergenceCapture(CaptureSettings settings, string nic, string primaryIn, string secondaryIn, ILogger logger)
    {
        _settings = settings;
        _nic = nic;
        _prefix = UnsafeInName().Replace(nic, "_");
        _interfaces = [("primary_in", $"colo-compare '{nic}' primary_in {primaryIn}"), ("secondary_in", $"colo-compare '{nic}' secondary_in {secondaryIn}")];
        _logger = logger;
        EnsureWritable(settings);
        _fileNumber = ExistingFiles().Select(f => f.Number).DefaultIfEmpty(0).Max();
    }

    /// <summary>Starts writing what <see cref="Enqueue"/> copies (until then it waits, within the pending limit).</summary>
    public void Start() => _writer = Task.Run(WriteAsync);

    /// <summary>Creates the capture directory if needed and checks that files can be made there.</summary>
    /// <exception cref="InvalidOperationException">They cannot (the message starts with --capture and says why).</exception>
    public static void EnsureWritable(CaptureSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        try
        {
            // Captures hold guest traffic: a directory made here is the daemon user's only, files are 0600.
            if (OperatingSystem.IsWindows())
            {
                System.IO.Directory.CreateDirectory(settings.Directory);
            }
            else
            {
                System.IO.Directory.CreateDirectory(settings.Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }

            string probe = Path.Combine(settings.Directory, $".colo-compare-{Environment.ProcessId}.probe");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new InvalidOperationException($"--capture {settings.Directory}: cannot write there ({e.Message})", e);
        }
    }

    /// <summary>Divergences written to a file.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>Divergences not captured because earlier ones (32 MiB by default) still waited for the disk.</summary>
    public long SkippedBusy => Interlocked.Read(ref _skippedBusy);

    /// <summary>Divergences not captured because writing failed (disk full, directory gone, ...).</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>The file being written now, if any.</summary>
    public string? CurrentFile => Volatile.Read(ref _currentFile);

    public string Directory => _settings.Directory;

    /// <summary>
    /// Copies the divergence's packets (called on the engine's thread, inside <see cref="ICompareActions.Diverged"/>)
    /// for the writer. False when skipped because the writer is behind.
    /// </summary>
    public bool Enqueue(Divergence divergence, long number, string detail, DateTimeOffset now)
    {
        // Per side at most PacketsPerSide packets and half the pending limit in bytes (one packet at least).
        ReadOnlySpan<PacketSide> sides = [PacketSide.Primary, PacketSide.Secondary];
        Span<int> taken = stackalloc int[2];
        long bytes = 0;
        foreach (PacketSide side in sides)
        {
            long sideBytes = 0;
            int n = 0;
            while (n < Math.Min(divergence.Count(side), _settings.PacketsPerSide))
            {
                int length = divergence.Packet(side, n).Length;
                if (n > 0 && sideBytes + length > _settings.PendingLimitBytes / 2)
                {
                    break;
                }

                sideBytes += length;
                n++;
            }

            taken[(int)side] = n;
            bytes += sideBytes;
        }

        // One divergence is always taken when nothing waits.
        long before = Interlocked.Add(ref _pendingBytes, bytes) - bytes;
        if (before > 0 && before + bytes > _settings.PendingLimitBytes)
        {
            Interlocked.Add(ref _pendingBytes, -bytes);
            Interlocked.Increment(ref _skippedBusy);
            return false;
        }

        long nowMicros = (now.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;
        var packets = new List<Packet>();
        int[] totals = new int[2];
        foreach (PacketSide side in sides)
        {
            int count = divergence.Count(side);
            totals[(int)side] = count;
            for (int i = 0; i < taken[(int)side]; i++)
            {
                long at = nowMicros - ((divergence.NowMs - divergence.ArrivalMs(side, i)) * 1000);
                packets.Add(new Packet(side, i, divergence.IsDiverging(side, i), divergence.Order(side, i), at, divergence.Packet(side, i).ToArray()));
            }
        }

        // The order the daemon saw them in, both sides interleaved: what Wireshark's timeline should show.
        packets.Sort((a, b) => a.Order.CompareTo(b.Order));
        var record = new Record(number, divergence.Reason, divergence.Flow.ToString(), detail, totals[0], totals[1], packets, bytes);
        if (!_queue.Writer.TryWrite(record))
        {
            Interlocked.Add(ref _pendingBytes, -bytes);
            return false;
        }

        return true;
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _writer.ConfigureAwait(false);
    }

    /// <summary>The comment on every packet of a divergence; the first one also says what differs.</summary>
    internal static string Comment(long number, CheckpointReason reason, string flow, PacketSide side, int index, int total, bool diverging) =>
        string.Create(CultureInfo.InvariantCulture,
            $"colo-compare divergence {number}: {reason} on {flow}; {(side == PacketSide.Primary ? "primary" : "secondary")} packet {index + 1} of {total} queued{(diverging ? ", the diverging one" : string.Empty)}");

    [GeneratedRegex("[^A-Za-z0-9_.-]")]
    private static partial Regex UnsafeInName();

    private async Task WriteAsync()
    {
        var buffer = new ArrayBufferWriter<byte>(64 * 1024);
        await foreach (Record record in _queue.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            // A rare huge divergence does not keep its buffer for good.
            buffer = buffer.Capacity > 4 * 1024 * 1024 ? new ArrayBufferWriter<byte>(64 * 1024) : buffer;
            buffer.ResetWrittenCount();
            try
            {
                Render(record, new PcapNgWriter(buffer));
                Write(buffer.WrittenSpan);
                Interlocked.Increment(ref _written);
                CaptureLog.Written(_logger, _nic, record.Number, record.Reason, _currentFile!);
            }
            catch (Exception e)
            {
                // Whatever went wrong (disk full, directory gone, ...), the writer carries on with the next one: a
                // capture is never worth stopping the daemon or its shutdown for.
                long failed = Interlocked.Increment(ref _failed);
                if ((failed & (failed - 1)) == 0)
                {
                    CaptureLog.Failed(_logger, _nic, _settings.Directory, e.Message, failed);
                }

                CloseFile();
            }
            finally
            {
                Interlocked.Add(ref _pendingBytes, -record.Bytes);
            }
        }

        CloseFile();
    }

    private static void Render(Record record, PcapNgWriter pcap)
    {
        bool first = true;
        foreach (Packet packet in record.Packets)
        {
            int total = packet.Side == PacketSide.Primary ? record.PrimaryQueued : record.SecondaryQueued;
            string comment = Comment(record.Number, record.Reason, record.Flow, packet.Side, packet.Index, total, packet.Diverging);
            if (first)
            {
                comment += ". " + record.Detail;
                first = false;
            }

            pcap.WritePacket((int)packet.Side, packet.UnixMicroseconds, packet.Frame, comment);
        }
    }

    /// <summary>Appends one divergence, starting a new file first when this one would grow past the size limit.</summary>
    private void Write(ReadOnlySpan<byte> divergence)
    {
        if (_file is not null && _file.Length + divergence.Length > _settings.FileBytes && _file.Length > _headerLength)
        {
            CloseFile();
        }

        if (_file is null)
        {
            OpenNextFile();
        }

        _file!.Write(divergence);
        _file.Flush(); // whole divergences only, so tshark can read the file while it is being written
    }

    private void OpenNextFile()
    {
        _fileNumber++;
        string path = Path.Combine(_settings.Directory, string.Create(CultureInfo.InvariantCulture, $"{_prefix}-{_fileNumber:D6}.pcapng"));
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.Read | FileShare.Delete };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        var file = new FileStream(path, options);
        var header = new ArrayBufferWriter<byte>(1024);
        var pcap = new PcapNgWriter(header);
        string version = typeof(DivergenceCapture).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";
        pcap.WriteSectionHeader($"ColoChardev colo-compare {version}", $"divergence captures of colo-compare '{_nic}'");
        foreach ((string name, string description) in _interfaces)
        {
            pcap.WriteInterface(name, description);
        }

        try
        {
            file.Write(header.WrittenSpan);
        }
        catch
        {
            file.Dispose();
            throw;
        }

        _headerLength = header.WrittenCount;
        _file = file;
        Volatile.Write(ref _currentFile, path);
        DeleteOldFiles();
    }

    private void CloseFile()
    {
        _file?.Dispose();
        _file = null;
    }

    private void DeleteOldFiles()
    {
        List<(int Number, string Path)> files = [.. ExistingFiles().OrderBy(f => f.Number)];
        for (int i = 0; i < files.Count - _settings.Files; i++)
        {
            try
            {
                File.Delete(files[i].Path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Removed or locked by someone else: the next rotation tries again; the new file is still written.
                CaptureLog.NotDeleted(_logger, _nic, files[i].Path, e.Message);
            }
        }
    }

    private IEnumerable<(int Number, string Path)> ExistingFiles()
    {
        foreach (string path in System.IO.Directory.EnumerateFiles(_settings.Directory, _prefix + "-*.pcapng"))
        {
            string number = Path.GetFileNameWithoutExtension(path)[(_prefix.Length + 1)..];
            if (number.Length == 6 && int.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out int n))
            {
                yield return (n, path);
            }
        }
    }

    private sealed record Packet(PacketSide Side, int Index, bool Diverging, long Order, long UnixMicroseconds, byte[] Frame);

    private sealed record Record(long Number, CheckpointReason Reason, string Flow, string Detail, int PrimaryQueued, int SecondaryQueued, List<Packet> Packets, long Bytes);
}

internal static partial class CaptureLog
{
    [LoggerMessage(EventId = 230, Level = LogLevel.Debug, Message = "colo-compare '{Nic}': divergence {Number} ({Reason}) captured in {File}")]
    public static partial void Written(ILogger logger, string nic, long number, CheckpointReason reason, string file);

    [LoggerMessage(EventId = 231, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': a divergence capture could not be written to {Directory}: {Error} ({Count} so far)")]
    public static partial void Failed(ILogger logger, string nic, string directory, string error, long count);

    [LoggerMessage(EventId = 232, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': an old capture {File} could not be deleted: {Error}")]
    public static partial void NotDeleted(ILogger logger, string nic, string file, string error);
}
