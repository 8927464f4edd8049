namespace ColoChardev.Daemon.Engine;

/// <summary>Which guest a frame came from.</summary>
public enum PacketSide : byte
{
    Primary,
    Secondary,
}

/// <summary>How packets of a flow are compared.</summary>
public enum CompareProtocol : byte
{
    /// <summary>By sequence number, payload only.</summary>
    Tcp,

    /// <summary>UDP and UDP-Lite: L4 bytes, checksum excepted.</summary>
    Udp,

    /// <summary>ICMP and ICMPv6: L4 bytes, checksum excepted.</summary>
    Icmp,

    /// <summary>Any other IP protocol, and IP fragments: the bytes after the IP header.</summary>
    Other,
}

/// <summary>Why a primary frame was released to outdev.</summary>
public enum ReleaseReason : byte
{
    /// <summary>Its bytes matched the secondary's.</summary>
    Matched,

    /// <summary>A TCP segment without payload (ACK, SYN, FIN, RST), released once the secondary is talking on the flow.</summary>
    ZeroPayload,

    /// <summary>A TCP retransmission of bytes already compared.</summary>
    Retransmission,

    /// <summary>Not IP (ARP, LLC, ...): released uncompared, as QEMU does.</summary>
    NonIp,

    /// <summary>Malformed (truncated or inconsistent headers): released uncompared, as QEMU does with what it cannot parse.</summary>
    Malformed,

    /// <summary>IPv6 with IPv6 comparison turned off (QEMU's behaviour).</summary>
    Ipv6Uncompared,

    /// <summary>VLAN-tagged with VLAN comparison turned off (QEMU's behaviour).</summary>
    VlanUncompared,

    /// <summary>
    /// Link housekeeping: ICMPv6 neighbour discovery or MLD, or IGMP. Released uncompared, as ARP is: a secondary
    /// re-announces itself after every checkpoint it loads (virtio-net guest announce), which compared would look like
    /// divergence and force a checkpoint every compare_timeout forever.
    /// </summary>
    LinkControl,

    /// <summary>Released by a checkpoint: the secondary now holds the primary's state.</summary>
    Checkpoint,

    /// <summary>Its flow matches a bypass rule: released uncompared, never a reason to checkpoint.</summary>
    Bypass,

    /// <summary>Released at or after failover: nothing is compared any more.</summary>
    Failover,

    /// <summary>Released because the daemon is stopping (QEMU flushes its colo-compare when the object is deleted).</summary>
    Shutdown,
}

/// <summary>Why a frame was dropped (never sent to outdev).</summary>
public enum DropReason : byte
{
    /// <summary>A secondary frame whose bytes all matched the primary's (the normal end of a secondary frame).</summary>
    Matched,

    /// <summary>A secondary TCP segment whose bytes were all compared already (a retransmission).</summary>
    AlreadyCompared,

    /// <summary>A secondary TCP segment without payload: nothing to compare, its ACK is noted.</summary>
    ZeroPayload,

    /// <summary>A secondary frame that is not IP.</summary>
    NonIp,

    /// <summary>A malformed secondary frame.</summary>
    Malformed,

    /// <summary>Secondary IPv6 with IPv6 comparison turned off.</summary>
    Ipv6Uncompared,

    /// <summary>Secondary VLAN traffic with VLAN comparison turned off.</summary>
    VlanUncompared,

    /// <summary>Secondary link housekeeping (ICMPv6 neighbour discovery or MLD, IGMP): never compared, like ARP.</summary>
    LinkControl,

    /// <summary>A queued secondary frame discarded by a checkpoint.</summary>
    Checkpoint,

    /// <summary>A secondary frame whose flow matches a bypass rule: never compared.</summary>
    Bypass,

    /// <summary>A secondary frame at or after failover.</summary>
    Failover,

    /// <summary>A frame with no bytes at all (QEMU 7.2 aborts on these); never forwarded.</summary>
    ZeroLength,

    /// <summary>Queuing it would exceed the queue budget; a checkpoint was requested.</summary>
    QueueBudget,

    /// <summary>Secondary TCP bytes from before the first compared byte of the flow (the primary's copies were never seen).</summary>
    BeforeFirstCompared,

    /// <summary>A queued secondary frame discarded because the daemon is stopping.</summary>
    Shutdown,
}

/// <summary>Why a checkpoint was requested.</summary>
public enum CheckpointReason : byte
{
    /// <summary>Primary and secondary output differ.</summary>
    Mismatch,

    /// <summary>A primary packet waited longer than compare_timeout for its counterpart.</summary>
    PrimaryTimeout,

    /// <summary>A secondary packet waited longer than compare_timeout for its counterpart.</summary>
    SecondaryTimeout,

    /// <summary>A flow's queue reached max_queue_size.</summary>
    QueueFull,

    /// <summary>The queue budget was exhausted and a packet was dropped.</summary>
    QueueBudget,

    /// <summary>
    /// TCP: a primary segment carries bytes from before the point where the flow's comparison began (a flow first seen
    /// mid-stream, or a segment that arrived out of order after the bytes behind it were compared). The secondary's
    /// copy of them was skipped, so they cannot be compared; a checkpoint makes them safe to send.
    /// </summary>
    Uncomparable,
}
