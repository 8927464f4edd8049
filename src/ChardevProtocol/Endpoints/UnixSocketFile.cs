namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>Helpers for Unix socket paths, for other listeners of the daemon (the control socket).</summary>
public static class UnixSocketFile
{
    /// <summary>True when <paramref name="path"/> exists and is a socket (so it may be unlinked before bind, as QEMU does).</summary>
    public static bool Exists(string path) => PeerCredentials.IsSocketFile(path);
}
