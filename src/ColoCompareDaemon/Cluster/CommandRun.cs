using System.Diagnostics;

namespace ColoChardev.Daemon.Cluster;

/// <summary>What a command the agent ran printed and how it ended.</summary>
internal sealed record CommandResult(int ExitCode, string Output, string Error)
{
    /// <summary>The last line it printed on either stream, for a one-sentence reason.</summary>
    public string LastLine => (Output + Error).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? $"exit code {ExitCode}";
}

/// <summary>
/// Runs a program to its end with both streams read (QEMU -daemonize, setsid, ip, crm_attribute, qemu --version).
/// A program that cannot be run throws <see cref="System.ComponentModel.Win32Exception"/>.
/// </summary>
internal static class CommandRun
{
    public static async Task<CommandResult> RunAsync(string program, IEnumerable<string> arguments, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start");
        Task<string> error = process.StandardError.ReadToEndAsync(cancellationToken);
        string output = await process.StandardOutput.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
        await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        return new CommandResult(process.ExitCode, output, await error.ConfigureAwait(false));
    }
}
