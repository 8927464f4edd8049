using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;

namespace ColoChardev.SocketBenchmark;

/// <summary>One workload of the benchmark: the traffic and how many frames a run sends.</summary>
/// <param name="Name">Short name (JSON, command line).</param>
/// <param name="Title">What the report calls it.</param>
/// <param name="Shape">The frames.</param>
/// <param name="Frames">Frames per run at scale 1 (measured after the warm-up).</param>
internal sealed record Workload(string Name, string Title, TrafficShape Shape, long Frames)
{
    /// <summary>The six workloads.</summary>
    public static IReadOnlyList<Workload> All { get; } =
    [
        new("tcp1454", "TCP 1,454 B, 1 flow", new TrafficShape(IpProtocol.Tcp, 1454, 1), 1_000_000),
        new("tcp1454x64", "TCP 1,454 B, 64 flows", new TrafficShape(IpProtocol.Tcp, 1454, 64), 1_000_000),
        new("tcp64", "TCP 64 B, 1 flow", new TrafficShape(IpProtocol.Tcp, 64, 1), 2_000_000),
        new("udp64x64", "UDP 64 B, 64 flows", new TrafficShape(IpProtocol.Udp, 64, 64), 2_000_000),
        new("vnet1454", "TCP 1,454 B, vnet_hdr_support=on", new TrafficShape(IpProtocol.Tcp, 1454, 1, Vnet: true), 1_000_000),
        new("mixed", "TCP 1,454 B, 64 flows, 1 in 1,000 diverges", new TrafficShape(IpProtocol.Tcp, 1454, 64, DivergeEvery: 1000), 500_000),
    ];
}
