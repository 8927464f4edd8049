using System.Xml.Linq;

namespace ColoChardev.Daemon.Cluster;

/// <summary>
/// The agent's meta-data (OCF Resource Agent API 1.1, the shape of resource-agents' <c>metadata.rng</c>): its
/// parameters from <see cref="ColoResourceParameters.Definitions"/> and its actions with their default timeouts.
/// </summary>
internal static class ColoResourceMetadata
{
    /// <summary>The agent's own version, in the meta-data's <c>version</c> attribute.</summary>
    public const string AgentVersion = "1.0";

    /// <summary>
    /// Actions, with the timeouts and intervals Pacemaker takes as defaults. start boots QEMU (incoming, or a guest on
    /// promotion of a fresh node) and waits for its monitor; demote stops a primary; the two monitor intervals differ,
    /// as Pacemaker requires for the two roles of one resource.
    /// </summary>
    public static readonly IReadOnlyList<(string Name, string Timeout, string? Interval, string? Role)> Actions =
    [
        ("start", "60s", null, null),
        ("stop", "30s", null, null),
        ("monitor", "20s", "3s", "Unpromoted"),
        ("monitor", "20s", "2s", "Promoted"),
        ("promote", "60s", null, null),
        ("demote", "30s", null, null),
        ("notify", "30s", null, null),
        ("meta-data", "5s", null, null),
        ("validate-all", "20s", null, null),
    ];

    public static string Text()
    {
        var agent = new XElement("resource-agent",
            new XAttribute("name", "colo"),
            new XAttribute("version", AgentVersion),
            new XElement("version", "1.1"),
            Description("longdesc", """
                One COLO VM over two nodes, as a promotable clone (promotable=true, clone-max=2, clone-node-max=1,
                notify=true). Promoted: the primary QEMU and the colo-compare daemon in place of QEMU's -object
                colo-compare. Unpromoted: the secondary QEMU (-incoming, filter-redirectors, filter-rewriter). The
                primary's monitor starts COLO towards a waiting secondary (re-protection after a failover) and
                restarts a lost daemon; a secondary that loses its primary is promoted by failover. Needs quorum or
                fencing against split brain (docs/operations.md).
                """),
            Description("shortdesc", "A COLO VM with the colo-compare daemon"),
            new XElement("parameters", ColoResourceParameters.Definitions.Select(Parameter)),
            new XElement("actions", Actions.Select(Action)));
        // The declaration and document type as resource-agents' own agents print them; XElement indents the rest.
        return "<?xml version=\"1.0\"?>\n<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n" + agent.ToString().ReplaceLineEndings("\n") + "\n";
    }

    private static XElement Parameter(ColoResourceParameter p)
    {
        var element = new XElement("parameter", new XAttribute("name", p.Name));
        if (p.Unique)
        {
            element.Add(new XAttribute("unique", "1"));
        }

        element.Add(
            new XAttribute("required", p.Required ? "1" : "0"),
            Description("longdesc", p.LongDescription),
            Description("shortdesc", p.ShortDescription),
            new XElement("content",
                new XAttribute("type", p.Type.ToString().ToLowerInvariant()),
                new XAttribute("default", p.Default)));
        return element;
    }

    private static XElement Action((string Name, string Timeout, string? Interval, string? Role) a)
    {
        var element = new XElement("action", new XAttribute("name", a.Name));
        if (a.Name == "monitor")
        {
            element.Add(new XAttribute("depth", "0"));
        }

        element.Add(new XAttribute("timeout", a.Timeout));
        if (a.Interval is not null)
        {
            element.Add(new XAttribute("interval", a.Interval));
        }

        if (a.Role is not null)
        {
            element.Add(new XAttribute("role", a.Role));
        }

        return element;
    }

    private static XElement Description(string name, string text) =>
        new(name, new XAttribute("lang", "en"), string.Join(' ', text.Split(['\n', '\r'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)));
}
