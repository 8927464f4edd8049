namespace ColoChardev.Daemon.Engine;

/// <summary>
/// Options of one compared NIC. The first four carry QEMU's colo-compare names and defaults; the rest are ours.
/// </summary>
public sealed record CompareOptions
{
    /// <summary>QEMU's <c>compare_timeout</c>: a queued packet older than this (ms) requests a checkpoint.</summary>
    public long CompareTimeoutMs { get; init; } = 3000;

    /// <summary>QEMU's <c>expired_scan_cycle</c>: how often (ms) queued packets are checked for age.</summary>
    public long ExpiredScanCycleMs { get; init; } = 1000;

    /// <summary>
    /// QEMU's <c>max_queue_size</c>: when a flow's primary or secondary queue reaches this many packets, a
    /// checkpoint is requested (QEMU drops instead, primary packets included).
    /// </summary>
    public int MaxQueueSize { get; init; } = 1024;

    /// <summary>QEMU's <c>vnet_hdr_support</c>: frames start with a virtio-net header of the frame's vnet_hdr_len.</summary>
    public bool VnetHdrSupport { get; init; }

    /// <summary>Compare IPv6 like IPv4 (QEMU 7.2 passes it through uncompared: set false to do the same).</summary>
    public bool CompareIpv6 { get; init; } = true;

    /// <summary>Compare 802.1Q/802.1ad-tagged traffic (QEMU 7.2 passes it through uncompared: set false to do the same).</summary>
    public bool CompareVlan { get; init; } = true;

    /// <summary>
    /// The most payload bytes queued over all flows. A packet that would go past it is dropped (and counted) and a
    /// checkpoint is requested, which empties the queues.
    /// </summary>
    public long QueueBudgetBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>
    /// Back-pressure before the budget's drops: from three quarters of <see cref="QueueBudgetBytes"/> the input that
    /// is ahead stops being read until the queues are down to half, unless a checkpoint is outstanding (QEMU cannot
    /// make one while its redirector waits on us). A pause in which that input's queued bytes do not shrink for this
    /// long (ms) requests a checkpoint and ends. 0: never pause (the budget's drops only, as before 2026-12).
    /// </summary>
    public long QueueStallMs { get; init; } = 200;

    /// <summary>Flows that pass uncompared and never cause a checkpoint (<c>--bypass</c>, control socket <c>bypass-add</c>).</summary>
    public IReadOnlyList<BypassRule> Bypass { get; init; } = [];

    /// <summary>A flow with nothing queued and no traffic for this long (ms) is forgotten.</summary>
    public long FlowIdleTimeoutMs { get; init; } = 120_000;

    /// <summary>A TCP flow closed by FIN or RST on both sides, or by a RST, with nothing queued is forgotten after this long (ms).</summary>
    public long ClosedFlowLingerMs { get; init; } = 10_000;

    /// <summary>Checks that each value is usable; returns null or a sentence naming the bad option.</summary>
    public string? Validate()
    {
        if (CompareTimeoutMs <= 0 || CompareTimeoutMs > uint.MaxValue)
        {
            return $"compare_timeout={CompareTimeoutMs} must be between 1 and {uint.MaxValue} ms";
        }

        if (ExpiredScanCycleMs <= 0 || ExpiredScanCycleMs > uint.MaxValue)
        {
            return $"expired_scan_cycle={ExpiredScanCycleMs} must be between 1 and {uint.MaxValue} ms";
        }

        if (MaxQueueSize <= 0)
        {
            return $"max_queue_size={MaxQueueSize} must be greater than 0";
        }

        if (QueueBudgetBytes <= 0)
        {
            return $"queue budget {QueueBudgetBytes} must be greater than 0";
        }

        if (QueueStallMs < 0 || QueueStallMs > 3_600_000)
        {
            return $"queue stall time {QueueStallMs} ms must be between 0 and 3600000 ms";
        }

        if (FlowIdleTimeoutMs <= 0 || ClosedFlowLingerMs <= 0)
        {
            return "flow expiry times must be greater than 0";
        }

        return null;
    }
}
