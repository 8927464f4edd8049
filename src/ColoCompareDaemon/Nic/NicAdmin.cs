using ColoChardev.Daemon.Engine;

namespace ColoChardev.Daemon.Nic;

/// <summary>
/// What the control socket may change on a running NIC, under its engine lock: QEMU's colo-compare properties
/// (<c>qom-set</c>: compare_timeout, expired_scan_cycle, max_queue_size) and bypass rules.
/// </summary>
internal sealed class NicAdmin(NicPipeline pipeline)
{
    /// <summary>The options in force now.</summary>
    public CompareOptions Options => pipeline.Change(static engine => engine.Options);

    /// <summary>Whether the NIC compares no more: a failover (or the daemon stopping) put it in pass-through.</summary>
    public bool PassingThrough => pipeline.Change(static engine => engine.IsPassingThrough);

    /// <summary>Sets compare_timeout, expired_scan_cycle or max_queue_size. Returns null, or why not.</summary>
    public string? SetProperty(string property, long value)
    {
        if (property == "max_queue_size" && value is < int.MinValue or > int.MaxValue)
        {
            return $"max_queue_size={value} must be between 1 and {int.MaxValue}";
        }

        string? problem = pipeline.Change(engine =>
        {
            CompareOptions current = engine.Options;
            CompareOptions? changed = property switch
            {
                "compare_timeout" => current with { CompareTimeoutMs = value },
                "expired_scan_cycle" => current with { ExpiredScanCycleMs = value },
                "max_queue_size" => current with { MaxQueueSize = (int)value },
                _ => null,
            };
            return changed is null
                ? $"property '{property}' cannot be set: only compare_timeout, expired_scan_cycle and max_queue_size"
                : engine.UpdateOptions(changed);
        });
        if (problem is null && property == "expired_scan_cycle")
        {
            pipeline.ExpiredScanCycleChanged(value);
        }

        return problem;
    }

    /// <summary>
    /// Adds a bypass rule: matching flows' queued primary packets are released at once (in order, handed over with
    /// the change), later ones pass uncompared. False when an equal rule is already there.
    /// </summary>
    public bool AddBypass(BypassRule rule) => pipeline.Change(engine =>
    {
        CompareOptions current = engine.Options;
        if (current.Bypass.Any(r => r.Text == rule.Text))
        {
            return false;
        }

        engine.UpdateOptions(current with { Bypass = [.. current.Bypass, rule] });
        return true;
    });

    /// <summary>Removes the bypass rule written <paramref name="rule"/> (canonical form); false when there is none.</summary>
    public bool RemoveBypass(BypassRule rule) => pipeline.Change(engine =>
    {
        CompareOptions current = engine.Options;
        if (!current.Bypass.Any(r => r.Text == rule.Text))
        {
            return false;
        }

        engine.UpdateOptions(current with { Bypass = [.. current.Bypass.Where(r => r.Text != rule.Text)] });
        return true;
    });
}
