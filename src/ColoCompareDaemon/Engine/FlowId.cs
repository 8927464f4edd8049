using ColoChardev.ChardevProtocol.Packets;

namespace ColoChardev.Daemon.Engine;

/// <summary>
/// A flow as the engine tracks it: the packet's flow key and how it is compared. The comparison class is part of
/// the identity so that IP fragments (keyed without ports) never share queues with a port-0 datagram flow.
/// </summary>
internal readonly struct FlowId(FlowKey key, CompareProtocol protocol) : IEquatable<FlowId>
{
    public FlowKey Key { get; } = key;

    public CompareProtocol Protocol { get; } = protocol;

    public bool Equals(FlowId other) => Protocol == other.Protocol && Key.Equals(other.Key);

    public override bool Equals(object? obj) => obj is FlowId other && Equals(other);

    public override int GetHashCode() => Key.GetHashCode() ^ (int)Protocol;
}
