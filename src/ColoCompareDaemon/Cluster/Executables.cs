namespace ColoChardev.Daemon.Cluster;

/// <summary>Whether a program can be run: a path to an executable file, or a name found on PATH.</summary>
internal static class Executables
{
    public static bool Exists(string program)
    {
        ArgumentNullException.ThrowIfNull(program);
        if (program.Contains('/', StringComparison.Ordinal))
        {
            return IsExecutableFile(program);
        }

        string path = Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin";
        return path.Split(':', StringSplitOptions.RemoveEmptyEntries).Any(d => IsExecutableFile(Path.Combine(d, program)));
    }

    private static bool IsExecutableFile(string path) =>
        File.Exists(path) && !OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;
}
