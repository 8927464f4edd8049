using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Checkpoints;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Daemon.Engine;

namespace ColoChardev.Daemon.Nic;

/// <summary>One NIC's events on the control socket (<see cref="DaemonEvents"/>), each with the NIC's id; nothing is rendered while nobody listens.</summary>
internal sealed class NicEvents(DaemonEvents events, string id)
{
    /// <summary>Whether a control client listens (worth building an event's data for).</summary>
    public bool HasSubscribers => events.HasSubscribers;

    /// <summary>A chardev's peer came or left.</summary>
    public void Chardev(string role, ChardevEndpoint endpoint, bool connected) => events.Publish(DaemonEvents.Chardev, w =>
    {
        w.WriteString("id", id);
        w.WriteString("endpoint", role);
        w.WriteString("address", endpoint.Spec.Address);
        w.WriteBoolean("connected", connected);
        w.WriteNumber("connections", endpoint.Statistics.Connections);
    });

    public void CheckpointRequest(CheckpointReason reason, string flow, bool sent) => events.Publish(DaemonEvents.CheckpointRequest, w =>
    {
        w.WriteString("id", id);
        w.WriteString("reason", reason.ToString());
        w.WriteString("flow", flow);
        w.WriteBoolean("sent", sent);
    });

    public void Checkpoint(CheckpointCompletion completion, long released, long discarded) => events.Publish(DaemonEvents.Checkpoint, w =>
    {
        w.WriteString("id", id);
        w.WriteString("flushed", completion.Flushed);
        if (completion.StoppedMs is double ms)
        {
            w.WriteNumber("stopped-ms", Math.Round(ms, 1));
        }

        w.WriteNumber("released", released);
        w.WriteNumber("discarded", discarded);
    });

    public void Failover(ColoExit exit, long released) => events.Publish(DaemonEvents.Failover, w =>
    {
        w.WriteString("id", id);
        w.WriteString("mode", exit.Mode);
        w.WriteString("reason", exit.Reason);
        w.WriteNumber("released", released);
    });

    /// <summary>A divergence, as <see cref="Divergences"/> describes it.</summary>
    public void Divergence(long number, CheckpointReason reason, CompareProtocol protocol, string flow, string detail, int primaryQueued, int secondaryQueued, bool captured) =>
        events.Publish(DaemonEvents.Divergence, w =>
        {
            w.WriteString("id", id);
            w.WriteNumber("number", number);
            w.WriteString("reason", reason.ToString());
            w.WriteString("protocol", protocol.ToString());
            w.WriteString("flow", flow);
            w.WriteString("detail", detail);
            w.WriteNumber("primary-queued", primaryQueued);
            w.WriteNumber("secondary-queued", secondaryQueued);
            w.WriteBoolean("captured", captured);
        });
}
