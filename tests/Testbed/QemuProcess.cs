using System.Diagnostics;
using System.Text;

namespace ColoChardev.Testbed;

/// <summary>A QEMU process started by a test: stderr captured, killed by its PID (and only it) on dispose.</summary>
public sealed class QemuProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();

    private QemuProcess(Process process)
    {
        _process = process;
    }

    /// <summary>QEMU's process id.</summary>
    public int ProcessId => _process.Id;

    /// <summary>Whether QEMU has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>What QEMU printed on stderr so far.</summary>
    public string StandardError
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>Starts qemu-system-x86_64 with these arguments.</summary>
    public static QemuProcess Start(IEnumerable<string> arguments)
    {
        var info = new ProcessStartInfo(QemuBinary.Path)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("QEMU did not start");
        var qemu = new QemuProcess(process);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (qemu._stderr)
                {
                    qemu._stderr.AppendLine(e.Data);
                }
            }
        };
        process.BeginErrorReadLine();
        process.OutputDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        return qemu;
    }

    /// <summary>QEMU with no machine and one QMP monitor per socket path: <c>-M none</c>, nothing else.</summary>
    public static QemuProcess StartWithMonitors(params string[] qmpAddresses)
    {
        var arguments = new List<string> { "-M", "none", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none" };
        foreach (string address in qmpAddresses)
        {
            arguments.Add("-qmp");
            arguments.Add(address);
        }

        return Start(arguments);
    }

    /// <summary>Sends a signal to QEMU (by the PID we started), e.g. STOP to freeze it.</summary>
    public async Task SignalAsync(string signal)
    {
        using var kill = Process.Start("kill", ["-" + signal, ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync().ConfigureAwait(false);
    }

    /// <summary>Kills QEMU at once (SIGKILL) and waits for it.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await _process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
    }

    /// <summary>Waits for QEMU to exit by itself.</summary>
    public Task WaitForExitAsync(CancellationToken cancellationToken) => _process.WaitForExitAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        try
        {
            await KillAsync().ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
        }
        finally
        {
            _process.Dispose();
        }
    }
}
