using System.Globalization;
using System.Text.RegularExpressions;
using ColoChardev.Qmp;

namespace ColoChardev.Daemon.Cluster;

/// <summary>
/// The version of a QEMU binary before any QEMU runs (<c>--version</c>): the command lines differ by version
/// (docs/compatibility.md), and they are written before there is a QMP greeting to read it from.
/// </summary>
internal static partial class QemuBinary
{
    /// <summary>The version in <c>--version</c>'s first line ("QEMU emulator version 7.2.22 (Debian ...)").</summary>
    public static QmpVersion? ParseVersion(string text)
    {
        Match match = VersionPattern().Match(text ?? string.Empty);
        return match.Success
            ? new QmpVersion(Number(match.Groups[1]), Number(match.Groups[2]), match.Groups[3].Success ? Number(match.Groups[3]) : 0)
            : null;
    }

    /// <summary>Runs <paramref name="binary"/> <c>--version</c>; an error is one sentence for the cluster's log.</summary>
    public static async Task<(QmpVersion? Version, string? Error)> VersionAsync(string binary, CancellationToken cancellationToken)
    {
        try
        {
            CommandResult result = await CommandRun.RunAsync(binary, ["--version"], cancellationToken).ConfigureAwait(false);
            return ParseVersion(result.Output) is QmpVersion version
                ? (version, null)
                : (null, $"'{binary} --version' printed no QEMU version: {result.LastLine}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (null, $"qemu_binary '{binary}' cannot be run: {e.Message}");
        }
    }

    private static int Number(Group group) => int.Parse(group.Value, NumberStyles.None, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?")]
    private static partial Regex VersionPattern();
}
