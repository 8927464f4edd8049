using System.Text.Json;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.Daemon.Captures;
using ColoChardev.Daemon.Checkpoints;
using ColoChardev.Daemon.Engine;
using ColoChardev.Daemon.Nic;

namespace ColoChardev.Daemon.Control;

/// <summary>
/// What <c>query-status</c>, <c>query-stats</c> and <c>query-bypass</c> show, written from the NICs' and the QMP
/// channel's counters at the moment of the query (each counter is read once; counters move on meanwhile, so two
/// figures of one reply may be a few frames apart while traffic flows).
/// </summary>
internal sealed class StatusView(IReadOnlyList<ComparedNic> nics, QmpCheckpointChannel checkpoints)
{
    /// <summary><c>query-bypass</c>: every NIC's bypass rules.</summary>
    public void WriteBypass(Utf8JsonWriter w)
    {
        w.WriteStartArray();
        foreach (ComparedNic nic in nics)
        {
            w.WriteStartObject();
            w.WriteString("id", nic.Id);
            WriteRules(w, "rules", nic.Admin.Options);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    public void WriteStatus(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteBoolean("failed-over", checkpoints.FailedOver);
        w.WriteStartArray("nics");
        foreach (ComparedNic nic in nics)
        {
            CompareOptions options = nic.Admin.Options;
            w.WriteStartObject();
            w.WriteString("id", nic.Id);
            w.WriteBoolean("passing-through", nic.Admin.PassingThrough);
            w.WriteNumber("compare_timeout", options.CompareTimeoutMs);
            w.WriteNumber("expired_scan_cycle", options.ExpiredScanCycleMs);
            w.WriteNumber("max_queue_size", options.MaxQueueSize);
            w.WriteBoolean("vnet_hdr_support", options.VnetHdrSupport);
            WriteRules(w, "bypass", options);
            w.WriteStartObject("endpoints");
            foreach ((string name, ChardevEndpoint endpoint) in nic.Endpoints.All)
            {
                w.WriteStartObject(name);
                w.WriteString("address", endpoint.Spec.Address);
                w.WriteBoolean("server", endpoint.Spec.Server);
                w.WriteBoolean("connected", endpoint.IsConnected);
                w.WriteNumber("connections", endpoint.Statistics.Connections);
                w.WriteEndObject();
            }

            w.WriteEndObject();
            CompareCounters c = nic.Counters;
            w.WriteStartObject("queued");
            w.WriteNumber("primary", c.PrimaryQueued);
            w.WriteNumber("secondary", c.SecondaryQueued);
            w.WriteNumber("bytes", c.QueuedBytes);
            w.WriteNumber("flows", c.Flows);
            w.WriteNumber("outdev-backlog-bytes", nic.Outdev.BacklogBytes);
            w.WriteNumber("outdev-backlog-frames", nic.Outdev.BacklogFrames);
            w.WriteEndObject();
            w.WriteString("outdev", nic.Outdev.IsStalled ? "stalled" : nic.Outdev.IsPaused ? "back-pressure" : nic.Endpoints.OutDev.IsConnected ? "writing" : "no peer");
            w.WriteNumber("divergences", nic.Divergences);
            if (nic.Capture is DivergenceCapture capture)
            {
                w.WriteStartObject("captures");
                w.WriteString("directory", capture.Directory);
                w.WriteString("file", capture.CurrentFile);
                w.WriteNumber("written", capture.Written);
                w.WriteNumber("skipped-busy", capture.SkippedBusy);
                w.WriteNumber("failed", capture.Failed);
                w.WriteEndObject();
            }

            w.WriteStartArray("checkpoint-requests");
            foreach ((DateTimeOffset at, CheckpointReason reason, string flow, bool sent) in nic.RecentCheckpointRequests)
            {
                w.WriteStartObject();
                w.WriteString("at", at);
                w.WriteString("reason", reason.ToString());
                w.WriteString("flow", flow);
                w.WriteBoolean("sent", sent);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("checkpoints");
        foreach ((DateTimeOffset at, bool requested, string flushed, double milliseconds) in checkpoints.RecentCheckpoints)
        {
            w.WriteStartObject();
            w.WriteString("at", at);
            w.WriteBoolean("requested", requested);
            w.WriteString("flushed", flushed);
            w.WriteNumber("stopped-ms", Math.Round(milliseconds, 1));
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    public void WriteStats(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteStartArray("nics");
        foreach (ComparedNic nic in nics)
        {
            CompareCounters c = nic.Counters;
            w.WriteStartObject();
            w.WriteString("id", nic.Id);
            w.WriteNumber("primary-in", c.PrimaryAccepted);
            w.WriteNumber("secondary-in", c.SecondaryAccepted);
            w.WriteNumber("released", c.PrimaryReleased);
            w.WriteNumber("outdev-written", nic.Outdev.Written);
            w.WriteNumber("outdev-dropped", nic.Outdev.DroppedBeforeWrite);
            w.WriteNumber("outdev-lost", nic.Outdev.Lost);
            Map(w, "outdev-dropped-by", Enum.GetValues<OutdevDropReason>().Select(r => (r.ToString(), nic.Outdev.DroppedBy(r))));
            w.WriteNumber("outdev-backlog-frames", nic.Outdev.BacklogFrames);
            w.WriteNumber("outdev-pauses", nic.Outdev.Pauses);
            w.WriteNumber("outdev-paused-ms", nic.Outdev.PausedMs);
            w.WriteNumber("outdev-stalls", nic.Outdev.Stalls);
            QueueBackPressure q = nic.QueuePressure;
            Map(w, "queue-pauses", [("primary_in", q.Pauses(PacketSide.Primary)), ("secondary_in", q.Pauses(PacketSide.Secondary))]);
            Map(w, "queue-paused-ms", [("primary_in", q.PausedMs(PacketSide.Primary)), ("secondary_in", q.PausedMs(PacketSide.Secondary))]);
            Map(w, "queue-stalls", [("primary_in", q.Stalls(PacketSide.Primary)), ("secondary_in", q.Stalls(PacketSide.Secondary))]);
            w.WriteNumber("primary-dropped", c.PrimaryDropped);
            w.WriteNumber("primary-queued", c.PrimaryQueued);
            w.WriteNumber("secondary-queued", c.SecondaryQueued);
            w.WriteNumber("queued-bytes", c.QueuedBytes);
            Map(w, "released-by", Enum.GetValues<ReleaseReason>().Select(r => (r.ToString(), c.ReleasedBy(r))));
            Map(w, "primary-dropped-by", Enum.GetValues<DropReason>().Select(r => (r.ToString(), c.PrimaryDroppedBy(r))));
            Map(w, "secondary-dropped-by", Enum.GetValues<DropReason>().Select(r => (r.ToString(), c.SecondaryDroppedBy(r))));
            Map(w, "mismatches", Enum.GetValues<CompareProtocol>().Select(p => (p.ToString(), c.MismatchesBy(p))));
            Map(w, "checkpoint-requests", Enum.GetValues<CheckpointReason>().Select(r => (r.ToString(), c.CheckpointRequestsBy(r))));
            w.WriteNumber("checkpoint-requests-unsent", nic.CheckpointsUnsent);
            w.WriteNumber("checkpoints", c.CheckpointsCompleted);
            w.WriteNumber("divergences", nic.Divergences);
            w.WriteNumber("captures-written", nic.Capture?.Written ?? 0);
            w.WriteNumber("captures-skipped", (nic.Capture?.SkippedBusy ?? 0) + (nic.Capture?.Failed ?? 0));
            w.WriteNumber("flows", c.Flows);
            w.WriteNumber("flows-expired", c.FlowsExpired);
            w.WriteNumber("connections-reused", c.ConnectionsReused);
            w.WriteNumber("flows-evicted", c.FlowsEvicted);
            w.WriteStartObject("chardevs");
            foreach ((string name, ChardevEndpoint endpoint) in nic.Endpoints.All)
            {
                // Framing-level faults never become packets: counted here, per chardev.
                ChardevStatistics e = endpoint.Statistics;
                w.WriteStartObject(name);
                w.WriteNumber("connections", e.Connections);
                w.WriteNumber("frames-read", e.FramesRead);
                w.WriteNumber("bytes-read", e.BytesRead);
                w.WriteNumber("zero-length", e.ZeroLengthFrames);
                w.WriteNumber("truncated", e.TruncatedFrames);
                w.WriteNumber("oversized", e.OversizedFrames);
                w.WriteNumber("frames-written", e.FramesWritten);
                w.WriteNumber("bytes-ignored", e.BytesIgnored);
                w.WriteNumber("refused-peers", e.RefusedPeers);
                w.WriteEndObject();
            }

            w.WriteEndObject();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void Map(Utf8JsonWriter w, string name, IEnumerable<(string Key, long Value)> values)
    {
        w.WriteStartObject(name);
        foreach ((string key, long value) in values)
        {
            w.WriteNumber(key, value);
        }

        w.WriteEndObject();
    }

    private static void WriteRules(Utf8JsonWriter w, string name, CompareOptions options)
    {
        w.WriteStartArray(name);
        foreach (BypassRule rule in options.Bypass)
        {
            w.WriteStringValue(rule.Text);
        }

        w.WriteEndArray();
    }
}
