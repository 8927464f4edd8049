using System.Diagnostics;
using System.Globalization;

namespace ColoChardev.Testbed;

/// <summary>
/// The colo-compare daemon as a real process (<c>dotnet colo-compare.dll ARGS</c>, from the test's output folder):
/// its output lines are collected, it is stopped with SIGTERM (by the PID we started) and killed on dispose.
/// </summary>
public sealed class DaemonProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly List<string> _errorLines = [];
    private volatile string? _terminateOnLine;

    private DaemonProcess(Process process)
    {
        _process = process;
    }

    public int ProcessId => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Every line printed so far (stdout and stderr).</summary>
    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    public string Output => string.Join('\n', Lines);

    /// <summary>The lines printed on stderr so far (where a bad start says why; logs go to stdout).</summary>
    public IReadOnlyList<string> ErrorLines
    {
        get
        {
            lock (_lines)
            {
                return [.. _errorLines];
            }
        }
    }

    /// <summary>The daemon's assembly next to the test's.</summary>
    public static string AssemblyPath => Path.Combine(AppContext.BaseDirectory, "colo-compare.dll");

    /// <summary>
    /// A published daemon to run instead (<c>COLO_COMPARE_EXECUTABLE</c>, e.g. a ReadyToRun build's
    /// <c>colo-compare</c>), or null for <c>dotnet colo-compare.dll</c> next to the test.
    /// </summary>
    public static string? Executable => Environment.GetEnvironmentVariable("COLO_COMPARE_EXECUTABLE") is { Length: > 0 } path ? path : null;

    public static DaemonProcess Start(IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null, string? shellPrefix = null)
    {
        ProcessStartInfo info;
        if (shellPrefix is null)
        {
            info = Executable is string executable ? new ProcessStartInfo(executable) : new ProcessStartInfo("dotnet") { ArgumentList = { AssemblyPath } };
            foreach (string argument in arguments)
            {
                info.ArgumentList.Add(argument);
            }
        }
        else
        {
            // For what must be set from inside the process's own shell (e.g. SYSTEMD_EXEC_PID=$$ before exec).
            string run = Executable is string executable ? Quote(executable) : "dotnet " + Quote(AssemblyPath);
            string command = shellPrefix + " exec " + run + " " + string.Join(' ', arguments.Select(Quote));
            info = new ProcessStartInfo("/bin/sh") { ArgumentList = { "-c", command } };
        }

        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        foreach ((string name, string value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("the daemon did not start");
        var daemon = new DaemonProcess(process);
        void Collect(object? sender, DataReceivedEventArgs e)
        {
            if (e.Data is not null && daemon._terminateOnLine is string text && e.Data.Contains(text, StringComparison.Ordinal))
            {
                // From the reading thread, the moment the line is seen: no polling delay.
                daemon._terminateOnLine = null;
                _ = Tmds.Linux.LibC.kill(process.Id, Tmds.Linux.LibC.SIGTERM);
            }

            if (e.Data is not null)
            {
                lock (daemon._lines)
                {
                    daemon._lines.Add(e.Data);
                }
            }
        }

        process.OutputDataReceived += Collect;
        process.ErrorDataReceived += (sender, e) =>
        {
            Collect(sender, e);
            if (e.Data is not null)
            {
                lock (daemon._lines)
                {
                    daemon._errorLines.Add(e.Data);
                }
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return daemon;
    }

    /// <summary>Waits until a line contains <paramref name="text"/>.</summary>
    public async Task<string> WaitForLineAsync(string text, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            string? line = Lines.FirstOrDefault(l => l.Contains(text, StringComparison.Ordinal));
            if (line is not null)
            {
                return line;
            }

            if (_process.HasExited)
            {
                break;
            }

            await Task.Delay(20).ConfigureAwait(false);
        }

        throw new TimeoutException($"no line with '{text}' within {timeout}; the daemon said:\n{Output}");
    }

    /// <summary>Sends SIGTERM the moment a line containing <paramref name="text"/> is printed (for races at start-up).</summary>
    public void TerminateOnLine(string text) => _terminateOnLine = text;

    /// <summary>Sends SIGTERM and waits for the exit code.</summary>
    public async Task<int> StopAsync(TimeSpan timeout)
    {
        using (var kill = Process.Start("kill", ["-TERM", ProcessId.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync().ConfigureAwait(false);
        }

        using var wait = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(wait.Token).ConfigureAwait(false);
        return _process.ExitCode;
    }

    /// <summary>Waits for the process to exit by itself.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var wait = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(wait.Token).ConfigureAwait(false);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                await _process.WaitForExitAsync().ConfigureAwait(false);
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }

    private static string Quote(string text) => "'" + text.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
