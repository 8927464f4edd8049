using System.Net;
using System.Net.Sockets;

namespace ColoChardev.Testbed;

/// <summary>Loopback ports and socket paths for tests.</summary>
public static class FreePort
{
    /// <summary>A TCP port on 127.0.0.1 that was free a moment ago.</summary>
    public static int Next()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)listener.LocalEndPoint!).Port;
    }

    /// <summary>A fresh private directory for Unix sockets (short enough for sun_path).</summary>
    public static string TempSocketDirectory()
    {
        string directory = Path.Combine("/tmp", "colo-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        return directory;
    }
}
