using System.Globalization;

namespace ColoChardev.Testbed;

/// <summary>CPU time and memory of a process, read from <c>/proc/PID</c>.</summary>
public static class ProcessMetrics
{
    /// <summary>Clock ticks per second of <c>/proc/PID/stat</c> (USER_HZ, 100 on every Linux ABI we run on).</summary>
    private const double TicksPerSecond = 100.0;

    /// <summary>User plus system CPU seconds the process has used so far (all its threads).</summary>
    public static double CpuSeconds(int processId)
    {
        string stat = File.ReadAllText($"/proc/{processId}/stat");
        // The command name (field 2) may contain spaces and parentheses: count fields after its closing parenthesis.
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        long user = long.Parse(fields[11], CultureInfo.InvariantCulture);
        long system = long.Parse(fields[12], CultureInfo.InvariantCulture);
        return (user + system) / TicksPerSecond;
    }

    /// <summary>Peak resident set size so far (VmHWM), in bytes.</summary>
    public static long PeakResidentBytes(int processId) => StatusKilobytes(processId, "VmHWM:") * 1024;

    /// <summary>Current resident set size (VmRSS), in bytes.</summary>
    public static long ResidentBytes(int processId) => StatusKilobytes(processId, "VmRSS:") * 1024;

    /// <summary>Current anonymous resident memory (RssAnon: heaps and buffers, not the mapped code files), in bytes.</summary>
    public static long AnonymousResidentBytes(int processId) => StatusKilobytes(processId, "RssAnon:") * 1024;

    /// <summary>Current file-backed resident memory (RssFile: the runtime's and the assemblies' mapped files), in bytes.</summary>
    public static long FileResidentBytes(int processId) => StatusKilobytes(processId, "RssFile:") * 1024;

    private static long StatusKilobytes(int processId, string field)
    {
        foreach (string line in File.ReadLines($"/proc/{processId}/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"/proc/{processId}/status has no {field}");
    }
}
