using ColoChardev.Daemon.Captures;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Nic;

/// <summary>
/// A NIC's divergences, as the engine reports them (under its lock, on the comparing thread): numbered, and, only
/// when someone asks for them, described, logged at debug level, captured (<c>--capture</c>: copied here, written in
/// the background) and announced. With no capture, no listener and no debug log, a divergence costs a count.
/// </summary>
internal sealed class DivergenceReporter(DivergenceCapture? capture, NicEvents events, string id, ILogger logger)
{
    private long _count;

    /// <summary>Divergences reported (mismatches, and timeouts or full queues that asked for a checkpoint).</summary>
    public long Count => Interlocked.Read(ref _count);

    public void Report(Divergence divergence)
    {
        long number = Interlocked.Increment(ref _count);
        bool announce = events.HasSubscribers;
        if (capture is null && !announce && !logger.IsEnabled(LogLevel.Debug))
        {
            return;
        }

        string detail = divergence.Describe();
        string flow = divergence.Flow.ToString();
        DaemonLog.Diverged(logger, id, number, divergence.Reason, flow, detail);
        bool captured = capture is not null && capture.Enqueue(divergence, number, detail, DateTimeOffset.UtcNow);
        if (announce)
        {
            events.Divergence(number, divergence.Reason, divergence.Protocol, flow, detail, divergence.Count(PacketSide.Primary), divergence.Count(PacketSide.Secondary), captured);
        }
    }
}
