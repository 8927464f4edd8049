using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Diagnostics;

/// <summary>
/// Runs one of the daemon's long-lived loops and restarts it if it fails unexpectedly. A loop that died silently
/// would be worst for primary_in: nobody would read it any more, and QEMU's main loop stalls on a reader that
/// stopped (spec §1.3). Cancellation and a normal return end the loop for good.
/// </summary>
internal static class SupervisedLoop
{
    public static Task Start(string name, Func<Task> loop, ILogger logger, CancellationToken stopping) =>
        Task.Run(() => RunAsync(name, loop, logger, TimeSpan.FromSeconds(1), stopping), CancellationToken.None);

    public static async Task RunAsync(string name, Func<Task> loop, ILogger logger, TimeSpan pause, CancellationToken stopping)
    {
        while (true)
        {
            try
            {
                await loop().ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                DaemonLog.LoopFailed(logger, name, e);
            }

            try
            {
                await Task.Delay(pause, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }
}
