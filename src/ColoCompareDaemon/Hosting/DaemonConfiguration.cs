using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Engine;

namespace ColoChardev.Daemon.Hosting;

/// <summary>One compared NIC: QEMU's <c>-object colo-compare</c> and its chardevs.</summary>
public sealed record NicConfiguration(
    string Id,
    ChardevSocketSpec PrimaryIn,
    ChardevSocketSpec SecondaryIn,
    ChardevSocketSpec OutDev,
    ChardevSocketSpec? NotifyDev,
    CompareOptions Compare)
{
    /// <summary>
    /// The primary's filter-redirector that reads outdev (QEMU's <c>redire0</c>) and the one that writes primary_in
    /// (<c>redire1</c>), when the daemon should re-create the first after each outdev connection (QEMU 7.2 bug, spec §1.4).
    /// </summary>
    public RedirectorRestore? RestoreRedirector { get; init; }
}

/// <summary>Which redirector to re-create, placed before which.</summary>
public sealed record RedirectorRestore(string Redirector, string Before);

/// <summary>Everything the command line says.</summary>
public sealed record DaemonConfiguration
{
    public required IReadOnlyList<NicConfiguration> Nics { get; init; }

    /// <summary>The primary QEMU's QMP monitor (<c>--qmp</c>): where checkpoints are requested and observed.</summary>
    public string? PrimaryQmp { get; init; }

    /// <summary>The secondary QEMU's QMP monitor (<c>--secondary-qmp</c>): its RESUME is the safe flush point.</summary>
    public string? SecondaryQmp { get; init; }

    /// <summary>How often a one-line summary is logged; zero for never.</summary>
    public TimeSpan SummaryInterval { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Released frames held for a disconnected or slow outdev before further ones are dropped (and counted).</summary>
    public long OutdevBacklogBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>Minimum log level.</summary>
    public Microsoft.Extensions.Logging.LogLevel LogLevel { get; init; } = Microsoft.Extensions.Logging.LogLevel.Information;
}
