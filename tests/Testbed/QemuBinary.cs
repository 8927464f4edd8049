using System.Globalization;
using System.Text.RegularExpressions;

namespace ColoChardev.Testbed;

/// <summary>
/// The qemu-system-x86_64 the tests run: <c>$QEMU_SYSTEM_X86_64</c> if set, else the one <c>scripts/qemu/qemu.sh</c>
/// picks for <c>$QEMU_VERSION</c> (7.2, this machine's, by default; 10.0 and 11.1 from Debian roots it builds once).
/// Tests that need it fail loudly when it is missing (CI installs it).
/// </summary>
public static partial class QemuBinary
{
    private static readonly TimeSpan ResolveTimeout = TimeSpan.FromMinutes(10);
    private static readonly Lazy<string> Resolved = new(Resolve);
    private static readonly Lazy<Version> ResolvedVersion = new(ReadVersion);

    /// <summary>The QEMU binary (for 10.0 and 11.1 a wrapper that execs it, so a process's PID is QEMU's own).</summary>
    /// <exception cref="FileNotFoundException">QEMU is not installed, or the chosen version cannot be had.</exception>
    public static string Path => Resolved.Value;

    /// <summary>Its version (major.minor.micro), from <c>--version</c>.</summary>
    public static Version Version => ResolvedVersion.Value;

    /// <summary>"QEMU 10.0.13", for messages and test output.</summary>
    public static string Label => "QEMU " + Version;

    /// <summary>Whether the QEMU under test is at least this version.</summary>
    public static bool AtLeast(int major, int minor) => Version >= new Version(major, minor);

    private static string Resolve()
    {
        string? configured = Environment.GetEnvironmentVariable("QEMU_SYSTEM_X86_64");
        if (!string.IsNullOrEmpty(configured))
        {
            return File.Exists(configured)
                ? configured
                : throw new FileNotFoundException($"QEMU_SYSTEM_X86_64={configured} does not exist");
        }

        string script = RepositoryPaths.Script("qemu", "qemu.sh");
        ProcessResult result = ExternalProcess.RunAsync("bash", [script, "binary"], ResolveTimeout).GetAwaiter().GetResult();
        string path = result.StandardOutput.Trim();
        if (result.ExitCode != 0 || !File.Exists(path))
        {
            throw new FileNotFoundException(
                $"no QEMU for QEMU_VERSION={Environment.GetEnvironmentVariable("QEMU_VERSION") ?? "7.2"}: {result.StandardError.Trim()} "
                + "(7.2: 'apt-get install -y --no-install-recommends qemu-system-x86'; scripts/install-deps.sh and .ci/run do this)");
        }

        return path;
    }

    private static Version ReadVersion()
    {
        string output = ExternalProcess.RunCheckedAsync(Path, ["--version"], TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
        Match match = VersionPattern().Match(output);
        return match.Success
            ? new Version(int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture), int.Parse(match.Groups[3].Value, CultureInfo.InvariantCulture))
            : throw new InvalidOperationException($"{Path} --version printed no version: {output}");
    }

    [GeneratedRegex(@"version (\d+)\.(\d+)\.(\d+)")]
    private static partial Regex VersionPattern();
}
