using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Engine;

namespace ColoChardev.Daemon.Configuration;

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

    /// <summary>How far outdev may lag (<c>--outdev-backlog-mb</c>, <c>--outdev-stall-ms</c>, <c>--outdev-hold-ms</c>).</summary>
    public OutdevLimits Outdev { get; init; } = OutdevLimits.Default;

    /// <summary>The control socket's path (<c>--control</c>); null for none.</summary>
    public string? ControlPath { get; init; }

    /// <summary>Divergence captures (<c>--capture DIR</c>); null for none.</summary>
    public Captures.CaptureSettings? Capture { get; init; }

    /// <summary>Where the Prometheus scrape endpoint listens (<c>--metrics</c>); null for nowhere.</summary>
    public MetricsEndpoint? Metrics { get; init; }

    /// <summary>Minimum log level.</summary>
    public Microsoft.Extensions.Logging.LogLevel LogLevel { get; init; } = Microsoft.Extensions.Logging.LogLevel.Information;
}

/// <summary>The Prometheus scrape endpoint's address: <c>http://Host:Port/metrics</c>.</summary>
public sealed record MetricsEndpoint(string Host, int Port)
{
    /// <summary>
    /// <c>PORT</c> (on loopback) or <c>HOST:PORT</c>; HOST is an IPv4 address, a bracketed IPv6 address, <c>localhost</c>,
    /// or <c>0.0.0.0</c> / <c>*</c> for every interface.
    /// </summary>
    public static MetricsEndpoint Parse(string option, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int colon = text.LastIndexOf(':');
        string host = colon < 0 ? "127.0.0.1" : text[..colon];
        string port = colon < 0 ? text : text[(colon + 1)..];
        bool hostOk = host is "localhost" or "*" or "0.0.0.0"
            || (host.StartsWith('[') && host.EndsWith(']') && System.Net.IPAddress.TryParse(host[1..^1], out _))
            || (System.Net.IPAddress.TryParse(host, out System.Net.IPAddress? address) && address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork);
        if (!hostOk || !int.TryParse(port, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int number) || number is < 1 or > 65535)
        {
            throw new FormatException($"'{option}={text}' must be PORT or HOST:PORT (HOST an IPv4 address, [IPv6], localhost, or 0.0.0.0 for every interface; PORT 1-65535)");
        }

        return new MetricsEndpoint(host is "0.0.0.0" or "*" ? "+" : host, number);
    }

    /// <summary>The URL scrapers use (with 0.0.0.0 shown for every interface).</summary>
    public string Url => $"http://{(Host == "+" ? "0.0.0.0" : Host)}:{Port}/metrics";
}
