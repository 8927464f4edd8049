using System.Net.Sockets;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>The SO_PEERCRED interop, kept in one place (Tmds.LibC is raw, pointer-style binding).</summary>
internal static class PeerCredentials
{
    /// <summary>Reads the uid of the process at the other end of a connected Unix socket.</summary>
    public static unsafe bool TryGetPeerUid(Socket socket, out uint uid, out int errno)
    {
        ucred credentials = default;
        socklen_t length = (uint)sizeof(ucred);
        int fd = (int)socket.SafeHandle.DangerousGetHandle();
        int rc = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length);
        if (rc != 0)
        {
            uid = 0;
            errno = LibC.errno;
            return false;
        }

        uid = credentials.uid;
        errno = 0;
        return true;
    }

    /// <summary>
    /// Bytes written to <paramref name="socket"/> that its peer has not read yet (TIOCOUTQ: for a Unix socket what waits
    /// in the peer's receive queue, for TCP what is unsent or unacknowledged), or -1 when it cannot be read.
    /// </summary>
    public static unsafe int UnreadByPeer(Socket socket)
    {
        int value = 0;
        int fd = (int)socket.SafeHandle.DangerousGetHandle();
        return ioctl(fd, TIOCOUTQ, &value) == 0 ? value : -1;
    }

    /// <summary>True when <paramref name="path"/> exists and is a socket (so it may be unlinked before bind, as QEMU does).</summary>
    public static unsafe bool IsSocketFile(string path)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        stat st = default;
        fixed (byte* p = bytes)
        {
            if (lstat(p, &st) != 0)
            {
                return false;
            }
        }

        return (st.st_mode & S_IFMT) == S_IFSOCK;
    }
}
