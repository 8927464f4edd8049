namespace ColoChardev.Daemon.Engine;

/// <summary>UDP, ICMP and other protocols: whole datagrams compared from the L4 header on (spec §2.6, §2.7).</summary>
public sealed partial class CompareEngine
{
    /// <summary>How far past the oldest primary packet to look for the oldest secondary packet's twin.</summary>
    private const int ReorderWindow = 64;

    /// <summary>
    /// The oldest primary packet is matched against any queued secondary packet and released in arrival order.
    /// QEMU 7.2 takes the newest primary instead (spec §2.6), which reorders output and stalls a lagging stream.
    /// </summary>
    private void ProcessDatagrams(Flow flow)
    {
        while (!flow.Diverged && flow.Primary.Count > 0 && flow.Secondary.Count > 0)
        {
            ref QueuedPacket p = ref flow.Primary.Head;
            int match = -1;
            for (int i = 0; i < flow.Secondary.Count; i++)
            {
                if (SameDatagram(p, flow.Secondary[i]))
                {
                    match = i;
                    break;
                }
            }

            if (match >= 0)
            {
                DropSecondaryAt(flow, match, DropReason.Matched);
                ReleasePrimaryAt(flow, 0, ReleaseReason.Matched);
                continue;
            }

            if (SecondaryIsAhead(flow))
            {
                // The secondary's oldest packet is the twin of a later primary packet: its copy of this one may
                // still come (reordered). Wait; a timeout ends the wait.
                return;
            }

            Mismatch(flow);
            return;
        }
    }

    private static bool SecondaryIsAhead(Flow flow)
    {
        ref QueuedPacket oldest = ref flow.Secondary.Head;
        int end = Math.Min(flow.Primary.Count, ReorderWindow);
        for (int i = 1; i < end; i++)
        {
            if (SameDatagram(flow.Primary[i], oldest))
            {
                return true;
            }
        }

        return false;
    }

    private static bool SameDatagram(in QueuedPacket a, in QueuedPacket b)
    {
        if (a.DataLength != b.DataLength)
        {
            return false;
        }

        ReadOnlySpan<byte> x = a.Data;
        ReadOnlySpan<byte> y = b.Data;
        int at = a.ChecksumAt;
        if (at < 0 || at + 2 > x.Length)
        {
            return x.SequenceEqual(y);
        }

        return x[..at].SequenceEqual(y[..at]) && x[(at + 2)..].SequenceEqual(y[(at + 2)..]);
    }
}
