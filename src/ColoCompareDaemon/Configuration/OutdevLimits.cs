namespace ColoChardev.Daemon.Configuration;

/// <summary>How much outdev may lag, and for how long, before released frames are dropped.</summary>
/// <param name="BacklogBytes">
/// Released frames held for outdev. Reaching it pauses the reading of primary_in and secondary_in (back-pressure:
/// QEMU's redirectors block and both guests slow down) until half of it is written.
/// </param>
/// <param name="StallMs">
/// How long the inputs may stay paused while outdev takes no bytes at all (a peer that stopped reading, or none):
/// then reading resumes and what does not fit in the backlog is dropped, counted, until outdev takes bytes again.
/// </param>
/// <param name="HoldMs">How long a released frame may wait while no outdev peer is connected; older ones are dropped.</param>
public sealed record OutdevLimits(long BacklogBytes, long StallMs, long HoldMs)
{
    public static OutdevLimits Default { get; } = new(4L * 1024 * 1024, 1000, 2000);
}
