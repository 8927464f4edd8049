using System.Net.Sockets;
using ColoChardev.Qmp;

namespace ColoChardev.Testbed;

/// <summary>Connecting to a QEMU that is still starting: its socket file appears at bind(), before listen().</summary>
public static class QmpConnect
{
    /// <summary>Connects to the monitor at <paramref name="path"/>, retrying until QEMU listens or the token fires.</summary>
    public static async Task<QmpClient> WhenReadyAsync(string path, CancellationToken cancellationToken, QemuProcess? qemu = null)
    {
        while (true)
        {
            if (qemu is { HasExited: true })
            {
                throw new InvalidOperationException($"QEMU exited: {qemu.StandardError}");
            }

            if (File.Exists(path))
            {
                try
                {
                    return await QmpClient.ConnectAsync("unix:" + path, cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                catch (SocketException)
                {
                    // Bound but not listening yet.
                }
            }

            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
    }
}
