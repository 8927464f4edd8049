namespace ColoChardev.Daemon.Cluster;

/// <summary>An OCF parameter's content type, as the meta-data names it.</summary>
internal enum OcfContentType
{
    String,
    Integer,
    Boolean,
}

/// <summary>
/// One parameter of <c>ocf:colochardev:colo</c>: what the meta-data says about it and what the agent assumes when
/// the cluster does not set it (Pacemaker passes only what the configuration sets, as <c>OCF_RESKEY_name</c>).
/// </summary>
internal sealed record ColoResourceParameter(
    string Name,
    OcfContentType Type,
    string Default,
    bool Required,
    string ShortDescription,
    string LongDescription)
{
    /// <summary>Whether no two resources may have the same value (one VM per resource).</summary>
    public bool Unique { get; init; }

    public string EnvironmentName => "OCF_RESKEY_" + Name;
}
