using System.Diagnostics.Metrics;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Engine;
using ColoChardev.Daemon.Nic;

namespace ColoChardev.Daemon.Hosting;

/// <summary>
/// The daemon's metrics (<see cref="System.Diagnostics.Metrics"/>, meter <see cref="MeterName"/>), labelled per compared
/// NIC and never per flow. Every instrument is observable: it reads the counters the engine, the endpoints and the
/// outdev writer keep anyway, when a scrape asks, so the packet path pays nothing for them.
/// </summary>
internal sealed class DaemonMetrics : IDisposable
{
    /// <summary>The meter's name; Prometheus names are <c>colo_compare_</c> + the instrument's name.</summary>
    public const string MeterName = "colo_compare";

    private static readonly ReleaseReason[] ReleaseReasons = Enum.GetValues<ReleaseReason>();
    private static readonly DropReason[] DropReasons = Enum.GetValues<DropReason>();
    private static readonly CheckpointReason[] CheckpointReasons = Enum.GetValues<CheckpointReason>();
    private static readonly CompareProtocol[] Protocols = Enum.GetValues<CompareProtocol>();
    private readonly Meter _meter = new(MeterName);
    private readonly IReadOnlyList<ComparedNic> _nics;

    public DaemonMetrics(IReadOnlyList<ComparedNic> nics, BucketHistogram checkpointSeconds)
    {
        _nics = nics;
        _meter.CreateObservableCounter("frames_in_total", () => Each(n => Sides(n.Counters.PrimaryAccepted, n.Counters.SecondaryAccepted)), "{frame}", "Frames read from primary_in and secondary_in.");
        _meter.CreateObservableCounter("frames_out_total", () => Each(n => [(n.Outdev.Written, [])]), "{frame}", "Primary frames written to outdev.");
        _meter.CreateObservableCounter("frames_released_total", () => Each(n => ReleaseReasons.Select(r => (n.Counters.ReleasedBy(r), Tag("reason", r)))), "{frame}", "Primary frames released to outdev, by reason (Matched was compared; every other reason was released uncompared).");
        _meter.CreateObservableCounter("frames_dropped_total", () => Each(Dropped), "{frame}", "Frames dropped, by side and reason (secondary frames are dropped once matched: reason Matched).");
        _meter.CreateObservableCounter("mismatches_total", () => Each(n => Protocols.Select(p => (n.Counters.MismatchesBy(p), Tag("protocol", p)))), "{mismatch}", "Primary and secondary output that differed, by protocol.");
        _meter.CreateObservableCounter("checkpoint_requests_total", () => Each(n => CheckpointReasons.Select(r => (n.Counters.CheckpointRequestsBy(r), Tag("reason", r)))), "{request}", "Checkpoints asked of QEMU, by reason.");
        _meter.CreateObservableCounter("checkpoints_total", () => Each(n => [(n.Counters.CheckpointsCompleted, [])]), "{checkpoint}", "Checkpoints seen completing (queues flushed).");
        _meter.CreateObservableGauge("queued_frames", () => Each(n => Sides(n.Counters.PrimaryQueued, n.Counters.SecondaryQueued)), "{frame}", "Frames waiting for comparison now.");
        _meter.CreateObservableGauge("queued_bytes", () => Each(n => [(n.Counters.QueuedBytes, [])]), "By", "Bytes of the frames waiting for comparison now.");
        _meter.CreateObservableGauge("flows", () => Each(n => [(n.Counters.Flows, [])]), "{flow}", "Flows tracked now.");
        _meter.CreateObservableGauge("outdev_backlog_bytes", () => Each(n => [(n.Outdev.BacklogBytes, [])]), "By", "Released frames not yet written to outdev.");
        _meter.CreateObservableCounter("outdev_pauses_total", () => Each(n => [(n.Outdev.Pauses, [])]), "{pause}", "Times reading primary_in and secondary_in was paused because outdev lagged by a full backlog (back-pressure).");
        _meter.CreateObservableCounter("outdev_paused_seconds_total", () => nics.Select(n => new Measurement<double>(n.Outdev.PausedMs / 1000.0, Tag("nic", n.Id))), "s", "Time the inputs spent paused by outdev back-pressure.");
        _meter.CreateObservableCounter("outdev_stalls_total", () => Each(n => [(n.Outdev.Stalls, [])]), "{stall}", "Times outdev took no bytes for --outdev-stall-ms while the inputs were paused (drops allowed until it takes bytes again).");
        _meter.CreateObservableCounter("queue_pauses_total", () => Each(n => Sides(n.QueuePressure.Pauses(PacketSide.Primary), n.QueuePressure.Pauses(PacketSide.Secondary))), "{pause}", "Times reading an input was paused because the queues neared --queue-budget-mb while it was ahead (back-pressure).");
        _meter.CreateObservableCounter("queue_paused_seconds_total", () => nics.SelectMany(n => new[] { PacketSide.Primary, PacketSide.Secondary }.Select(side => new Measurement<double>(n.QueuePressure.PausedMs(side) / 1000.0, [new("nic", n.Id), new("side", side == PacketSide.Primary ? "primary" : "secondary")]))), "s", "Time an input spent paused by the queue budget's back-pressure.");
        _meter.CreateObservableCounter("queue_stalls_total", () => Each(n => Sides(n.QueuePressure.Stalls(PacketSide.Primary), n.QueuePressure.Stalls(PacketSide.Secondary))), "{stall}", "Pauses for the queue budget that ended because the paused input's queue did not shrink for --queue-stall-ms (the budget's drops apply until the queues are down to half).");
        _meter.CreateObservableGauge("endpoint_connected", () => Each(n => Endpoints(n).Select(e => ((long)(e.Endpoint.IsConnected ? 1 : 0), Tag("endpoint", e.Name)))), "1", "1 while the chardev has a peer.");
        Histogram("queued_seconds", "How long released primary frames waited for comparison (ms resolution).", [.. nics.Select(n => (n.Counters.QueuedSeconds, Tag("nic", n.Id)))]);
        Histogram("checkpoint_duration_seconds", "Checkpoints seen over QMP: the primary's STOP to the flush of the queues.", [(checkpointSeconds, [])]);
        _meter.CreateObservableCounter("divergences_total", () => Each(n => [(n.Divergences, [])]), "{divergence}", "Flows found diverging: every mismatch, and every timeout or full queue that asked for a checkpoint.");
        _meter.CreateObservableCounter("captures_total", () => Each(n => n.Capture is null ? [] : [(n.Capture.Written, [])]), "{capture}", "Divergences written to capture files (--capture).");
        _meter.CreateObservableCounter("captures_skipped_total", () => Each(n => n.Capture is null ? [] : [(n.Capture.SkippedBusy, Tag("reason", "Busy")), (n.Capture.Failed, Tag("reason", "WriteFailed"))]), "{capture}", "Divergences not captured: the writer was 32 MiB behind (Busy) or the file could not be written (WriteFailed).");
        _meter.CreateObservableCounter("endpoint_connections_total", () => Each(n => Endpoints(n).Select(e => (e.Endpoint.Statistics.Connections, Tag("endpoint", e.Name)))), "{connection}", "Connections made on the chardev (more than one: reconnects).");
    }

    public void Dispose() => _meter.Dispose();

    /// <summary>
    /// A Prometheus histogram from observable instruments (System.Diagnostics.Metrics has no observable histogram):
    /// <c>NAME_bucket{le=...}</c> cumulative, <c>NAME_sum</c>, <c>NAME_count</c>, so <c>histogram_quantile</c> works.
    /// </summary>
    private void Histogram(string name, string description, (BucketHistogram Histogram, KeyValuePair<string, object?>[] Tags)[] series)
    {
        _meter.CreateObservableCounter(name + "_bucket", () => series.SelectMany(s => s.Histogram.BoundLabels.Select((le, i) =>
            new Measurement<long>(s.Histogram.CumulativeCount(i), [.. s.Tags, new KeyValuePair<string, object?>("le", le)]))), "{frame}", description);
        _meter.CreateObservableCounter(name + "_sum", () => series.Select(s => new Measurement<double>(s.Histogram.Sum, s.Tags)), "s", description);
        _meter.CreateObservableCounter(name + "_count", () => series.Select(s => new Measurement<long>(s.Histogram.Count, s.Tags)), "{event}", description);
    }

    private static KeyValuePair<string, object?>[] Tag(string name, object value) => [new(name, value.ToString())];

    private static IEnumerable<(long Value, KeyValuePair<string, object?>[] Tags)> Sides(long primary, long secondary) =>
        [(primary, Tag("side", "primary")), (secondary, Tag("side", "secondary"))];

    private static IEnumerable<(long Value, KeyValuePair<string, object?>[] Tags)> Dropped(ComparedNic nic) =>
        DropReasons.SelectMany(r => new[]
        {
            (nic.Counters.PrimaryDroppedBy(r), new KeyValuePair<string, object?>[] { new("side", "primary"), new("reason", r.ToString()) }),
            (nic.Counters.SecondaryDroppedBy(r), new KeyValuePair<string, object?>[] { new("side", "secondary"), new("reason", r.ToString()) }),
        }).Concat(
        [
            (nic.Outdev.DroppedBy(OutdevDropReason.BacklogFull), [new("side", "primary"), new("reason", "OutdevBacklogFull")]),
            (nic.Outdev.DroppedBy(OutdevDropReason.Expired), [new("side", "primary"), new("reason", "OutdevExpired")]),
            (nic.Outdev.DroppedBy(OutdevDropReason.WriteFailed), [new("side", "primary"), new("reason", "OutdevWriteFailed")]),
            (nic.Outdev.DroppedBy(OutdevDropReason.Shutdown), [new("side", "primary"), new("reason", "OutdevShutdown")]),
        ]);

    private static IEnumerable<(string Name, ChardevEndpoint Endpoint)> Endpoints(ComparedNic nic) => nic.Endpoints.All;

    private IEnumerable<Measurement<long>> Each(Func<ComparedNic, IEnumerable<(long Value, KeyValuePair<string, object?>[] Tags)>> read)
    {
        foreach (ComparedNic nic in _nics)
        {
            foreach ((long value, KeyValuePair<string, object?>[] tags) in read(nic))
            {
                yield return new Measurement<long>(value, [new KeyValuePair<string, object?>("nic", nic.Id), .. tags]);
            }
        }
    }
}
