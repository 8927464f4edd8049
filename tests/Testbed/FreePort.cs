using System.Net;
using System.Net.Sockets;

namespace ColoChardev.Testbed;

/// <summary>Loopback ports and socket paths for tests.</summary>
public static class FreePort
{
    // Below Linux's ephemeral range (32768-60999): a port the kernel hands out itself may become the source port of
    // some other test's outgoing connection before the process it was chosen for binds it (QEMU then exits with
    // "Address already in use"). Ports here are never given out implicitly; a per-process cursor from a random start
    // keeps concurrent callers, and the other test processes, apart.
    private const int FirstPort = 20_000;
    private const int PortCount = 12_000;
    private static int _cursor = Random.Shared.Next(PortCount);

    /// <summary>A TCP port on 127.0.0.1 that was free a moment ago (outside the kernel's ephemeral range).</summary>
    public static int Next()
    {
        for (int attempt = 0; attempt < PortCount; attempt++)
        {
            int port = FirstPort + (int)((uint)Interlocked.Increment(ref _cursor) % PortCount);
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                probe.Bind(new IPEndPoint(IPAddress.Loopback, port));
                return port;
            }
            catch (SocketException)
            {
                // In use: the next one.
            }
        }

        throw new InvalidOperationException($"no free TCP port on 127.0.0.1 in {FirstPort}-{FirstPort + PortCount - 1}");
    }

    /// <summary>A fresh private directory for Unix sockets (short enough for sun_path).</summary>
    public static string TempSocketDirectory()
    {
        string directory = Path.Combine("/tmp", "colo-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        return directory;
    }
}
