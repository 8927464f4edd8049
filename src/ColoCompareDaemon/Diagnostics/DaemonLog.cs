using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Diagnostics;

/// <summary>Source-generated log messages of the daemon.</summary>
internal static partial class DaemonLog
{
    [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "colo-compare '{Nic}': primary_in {PrimaryIn}, secondary_in {SecondaryIn}, outdev {OutDev}{Notify}; compare_timeout={Timeout} ms, expired_scan_cycle={Scan} ms, max_queue_size={MaxQueue}, vnet_hdr_support={Vnet}")]
    public static partial void NicStarted(ILogger logger, string nic, string primaryIn, string secondaryIn, string outDev, string notify, long timeout, long scan, int maxQueue, bool vnet);

    [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "colo-compare '{Nic}': {Summary}")]
    public static partial void Summary(ILogger logger, string nic, string summary);

    [LoggerMessage(EventId = 202, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': outdev backlog is full ({Bytes} bytes held) while outdev is stalled; released frames are being dropped ({Dropped} so far)")]
    public static partial void OutdevBacklogFull(ILogger logger, string nic, long bytes, long dropped);

    [LoggerMessage(EventId = 203, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': writing to outdev failed; {Lost} released frames of that batch may not have reached QEMU; reconnecting")]
    public static partial void OutdevWriteFailed(ILogger logger, string nic, long lost);

    [LoggerMessage(EventId = 204, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': outdev reconnected. QEMU up to 10.2 does not read again from a filter-redirector indev whose peer left once: unless the redirector is restored (object-del then object-add placed before the primary_in redirector), released traffic goes nowhere")]
    public static partial void OutdevReconnected(ILogger logger, string nic);

    [LoggerMessage(EventId = 224, Level = LogLevel.Debug, Message = "colo-compare '{Nic}': outdev is {Bytes} bytes behind; reading primary_in and secondary_in paused until it catches up")]
    public static partial void OutdevPaused(ILogger logger, string nic, long bytes);

    [LoggerMessage(EventId = 225, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': outdev took no bytes for {Milliseconds} ms while the inputs were paused: {Cause}. Reading resumes; released frames beyond the {Limit}-byte backlog are dropped (counted) until outdev takes bytes again")]
    public static partial void OutdevStalled(ILogger logger, string nic, long milliseconds, long limit, string cause);

    [LoggerMessage(EventId = 226, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': outdev takes bytes again after a stall of {Milliseconds} ms; {Dropped} released frames were dropped meanwhile; back-pressure is on again")]
    public static partial void OutdevRecovered(ILogger logger, string nic, long milliseconds, long dropped);

    [LoggerMessage(EventId = 233, Level = LogLevel.Debug, Message = "colo-compare '{Nic}': the queues hold {Bytes} of the {Budget}-byte budget; reading {Side} (ahead) paused until they are down to half")]
    public static partial void QueuePaused(ILogger logger, string nic, string side, long bytes, long budget);

    [LoggerMessage(EventId = 234, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': {Side}'s queue did not shrink for {QuietMs} ms of a {PausedMs}-ms pause for the queue budget: a checkpoint is requested (QueueBudget) and reading resumes; frames beyond the budget are dropped (counted) until the queues are down to half")]
    public static partial void QueueStalled(ILogger logger, string nic, string side, long quietMs, long pausedMs);

    [LoggerMessage(EventId = 227, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': dropped {Frames} released frames that waited more than {HoldMs} ms for an outdev peer (--outdev-hold-ms)")]
    public static partial void OutdevExpired(ILogger logger, string nic, long frames, long holdMs);

    [LoggerMessage(EventId = 205, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': checkpoint wanted ({Reason}) but no way to ask for one: give --qmp (or notify_dev); {Count} such requests so far")]
    public static partial void CheckpointUnsent(ILogger logger, string nic, CheckpointReason reason, long count);

    [LoggerMessage(EventId = 206, Level = LogLevel.Information, Message = "checkpoint requested over QMP ({Reason} on '{Nic}', flow {Flow}): migrate-set-parameters x-checkpoint-delay={Delay}")]
    public static partial void CheckpointRequested(ILogger logger, CheckpointReason reason, string nic, string flow, uint delay);

    [LoggerMessage(EventId = 207, Level = LogLevel.Warning, Message = "checkpoint request over QMP failed: {Error}")]
    public static partial void CheckpointRequestFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 208, Level = LogLevel.Information, Message = "checkpoint completed ({Kind}) after {Milliseconds} ms: queued primary packets released, old secondary packets dropped")]
    public static partial void CheckpointCompleted(ILogger logger, string kind, long milliseconds);

    [LoggerMessage(EventId = 209, Level = LogLevel.Warning, Message = "COLO_EXIT on the primary (mode {Mode}, reason {Reason}): failover; everything queued was released and primary traffic now passes straight through")]
    public static partial void Failover(ILogger logger, string mode, string reason);

    [LoggerMessage(EventId = 210, Level = LogLevel.Information, Message = "QMP {Which} monitor {Address} connected (QEMU {Version})")]
    public static partial void QmpConnected(ILogger logger, string which, string address, string version);

    [LoggerMessage(EventId = 211, Level = LogLevel.Warning, Message = "QMP {Which} monitor {Address}: {Error}; retrying")]
    public static partial void QmpLost(ILogger logger, string which, string address, string error);

    [LoggerMessage(EventId = 212, Level = LogLevel.Information, Message = "notify_dev of '{Nic}': {Message}")]
    public static partial void Xen(ILogger logger, string nic, string message);

    [LoggerMessage(EventId = 213, Level = LogLevel.Warning, Message = "notify_dev of '{Nic}': unsupported instruction '{Instruction}' ({Length} bytes), ignored")]
    public static partial void XenUnsupported(ILogger logger, string nic, string instruction, int length);

    [LoggerMessage(EventId = 215, Level = LogLevel.Information, Message = "colo-compare '{Nic}': outdev connected; filter-redirector '{Redirector}' re-created over QMP with {Properties}")]
    public static partial void RedirectorRestored(ILogger logger, string nic, string redirector, string properties);

    [LoggerMessage(EventId = 216, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': could not re-create filter-redirector '{Redirector}': {Error}. QEMU up to 10.2 will not read released traffic until it is re-created")]
    public static partial void RedirectorNotRestored(ILogger logger, string nic, string redirector, string error);

    [LoggerMessage(EventId = 232, Level = LogLevel.Information, Message = "colo-compare '{Nic}': filter-redirector '{Redirector}' re-created once more: {Why}")]
    public static partial void RedirectorRestoredAgain(ILogger logger, string nic, string redirector, string why);

    [LoggerMessage(EventId = 230, Level = LogLevel.Information, Message = "colo-compare '{Nic}': outdev connected; filter-redirector '{Redirector}' left as it is: QEMU {Version} keeps reading an indev whose peer came back (11.0 and later), so --restore-redirector has nothing to do")]
    public static partial void RedirectorSurvives(ILogger logger, string nic, string redirector, string version);

    [LoggerMessage(EventId = 231, Level = LogLevel.Warning, Message = "QEMU {Version} sends no MIGRATION_PASS at a checkpoint: without --secondary-qmp a checkpoint is recognised only while query-status still says colo, and a fast one is missed (its packets then wait for the next)")]
    public static partial void CheckpointsNeedSecondaryMonitor(ILogger logger, string version);

    [LoggerMessage(EventId = 217, Level = LogLevel.Error, Message = "{Loop} failed unexpectedly; restarting it")]
    public static partial void LoopFailed(ILogger logger, string loop, Exception exception);

    [LoggerMessage(EventId = 219, Level = LogLevel.Information, Message = "control socket at {Path} (QMP-shaped JSON lines; colo-compare status|stats {Path})")]
    public static partial void ControlListening(ILogger logger, string path);

    [LoggerMessage(EventId = 220, Level = LogLevel.Debug, Message = "control socket: a client left ({Reason})")]
    public static partial void ControlClientClosed(ILogger logger, string reason);

    [LoggerMessage(EventId = 229, Level = LogLevel.Warning, Message = "colo-compare '{Nic}': {Chardev}'s peer dropped over the control socket (it had one: {Dropped})")]
    public static partial void PeerDropped(ILogger logger, string nic, string chardev, bool dropped);

    [LoggerMessage(EventId = 228, Level = LogLevel.Warning, Message = "control socket: a client was cut off: {Reason}")]
    public static partial void ControlClientCutOff(ILogger logger, string reason);

    [LoggerMessage(EventId = 221, Level = LogLevel.Information, Message = "colo-compare '{Nic}': {Property} set to {Value} over the control socket")]
    public static partial void PropertySet(ILogger logger, string nic, string property, long value);

    [LoggerMessage(EventId = 222, Level = LogLevel.Information, Message = "colo-compare '{Nic}': bypass rule {Change}: {Rule}")]
    public static partial void BypassChanged(ILogger logger, string nic, string change, string rule);

    [LoggerMessage(EventId = 218, Level = LogLevel.Information, Message = "metrics: Prometheus scrape endpoint at {Url}")]
    public static partial void MetricsListening(ILogger logger, string url);

    [LoggerMessage(EventId = 214, Level = LogLevel.Information, Message = "stopping: {Released} queued primary frames released, {Written} frames written to outdev on the way out")]
    public static partial void Stopped(ILogger logger, long released, long written);

    [LoggerMessage(EventId = 223, Level = LogLevel.Debug, Message = "colo-compare '{Nic}': divergence {Number} ({Reason}) on {Flow}: {Detail}")]
    public static partial void Diverged(ILogger logger, string nic, long number, CheckpointReason reason, string flow, string detail);
}
