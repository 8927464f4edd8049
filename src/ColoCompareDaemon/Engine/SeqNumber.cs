namespace ColoChardev.Daemon.Engine;

/// <summary>
/// Wrap-safe TCP sequence and ACK arithmetic (RFC 1982 style). QEMU 7.2 mixes unsigned comparisons into its ACK
/// tracking (spec §2.5.1, §2.5.3); every comparison here goes through these.
/// </summary>
internal static class SeqNumber
{
    public static bool LessThan(uint a, uint b) => (int)(a - b) < 0;

    public static bool LessOrEqual(uint a, uint b) => (int)(a - b) <= 0;

    public static uint Max(uint a, uint b) => LessThan(a, b) ? b : a;
}
