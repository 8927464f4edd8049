namespace ColoChardev.Daemon.Cluster;

/// <summary>
/// The exit codes of an OCF resource agent (OCF Resource Agent API 1.1, as Pacemaker reads them). Which one a failure
/// gets decides what the cluster does: <see cref="Configured"/> stops the resource everywhere, <see cref="Installed"/>
/// and <see cref="Args"/> only on this node, <see cref="Generic"/> triggers recovery.
/// </summary>
internal static class OcfExitCode
{
    public const int Success = 0;
    public const int Generic = 1;
    public const int Args = 2;
    public const int Unimplemented = 3;
    public const int Perm = 4;
    public const int Installed = 5;
    public const int Configured = 6;
    public const int NotRunning = 7;
    public const int RunningPromoted = 8;
    public const int FailedPromoted = 9;
}
