using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Engine;

namespace ColoChardev.Testbed;

/// <summary>Drives a <see cref="CompareEngine"/> with byte arrays and a fake clock, and records every action.</summary>
public sealed class EngineHarness : ICompareActions
{
    public EngineHarness(CompareOptions? options = null)
    {
        Engine = new CompareEngine(options ?? new CompareOptions(), this);
    }

    public CompareEngine Engine { get; }

    public CompareCounters Counters => Engine.Counters;

    public long Now { get; private set; } = 1_000_000;

    /// <summary>Released primary frames, in release order.</summary>
    public List<byte[]> Released { get; } = [];

    public List<ReleaseReason> ReleaseReasons { get; } = [];

    public List<(PacketSide Side, DropReason Reason, byte[] Frame)> Dropped { get; } = [];

    public List<(CheckpointReason Reason, FlowKey Flow, long At)> Requests { get; } = [];

    /// <summary>Every divergence reported, with copies of the packets the view showed.</summary>
    public List<DivergenceCopy> Divergences { get; } = [];

    public void P(byte[] frame, uint vnet = 0) => Engine.OnPrimary(ChardevFrame.Rent(frame, vnet), Now);

    public void S(byte[] frame, uint vnet = 0) => Engine.OnSecondary(ChardevFrame.Rent(frame, vnet), Now);

    /// <summary>Moves the clock and ticks the engine every <paramref name="step"/> ms on the way.</summary>
    public void Advance(long milliseconds, long step = 10)
    {
        long end = Now + milliseconds;
        while (Now < end)
        {
            Now = Math.Min(end, Now + step);
            Engine.OnTick(Now);
        }
    }

    public void CheckpointCompleted() => Engine.OnCheckpointCompleted(Now);

    public void Failover() => Engine.OnFailover(Now);

    void ICompareActions.Release(ChardevFrame frame, ReleaseReason reason)
    {
        Released.Add(frame.Payload.ToArray());
        ReleaseReasons.Add(reason);
        frame.Dispose();
    }

    void ICompareActions.Drop(ChardevFrame frame, PacketSide side, DropReason reason)
    {
        Dropped.Add((side, reason, frame.Payload.ToArray()));
        frame.Dispose();
    }

    void ICompareActions.RequestCheckpoint(CheckpointReason reason, FlowKey flow) => Requests.Add((reason, flow, Now));

    void ICompareActions.Diverged(Divergence divergence) =>
        Divergences.Add(new DivergenceCopy(divergence.Reason, divergence.Flow, divergence.Protocol, divergence.NowMs, divergence.Describe(), Copy(divergence, PacketSide.Primary), Copy(divergence, PacketSide.Secondary)));

    private static List<(byte[] Frame, long ArrivalMs, bool Diverging)> Copy(Divergence divergence, PacketSide side)
    {
        var packets = new List<(byte[], long, bool)>();
        for (int i = 0; i < divergence.Count(side); i++)
        {
            packets.Add((divergence.Packet(side, i).ToArray(), divergence.ArrivalMs(side, i), divergence.IsDiverging(side, i)));
        }

        return packets;
    }
}

/// <summary>What an <see cref="ICompareActions.Diverged"/> call showed, copied.</summary>
public sealed record DivergenceCopy(
    CheckpointReason Reason,
    FlowKey Flow,
    CompareProtocol Protocol,
    long NowMs,
    string Detail,
    List<(byte[] Frame, long ArrivalMs, bool Diverging)> Primary,
    List<(byte[] Frame, long ArrivalMs, bool Diverging)> Secondary);
