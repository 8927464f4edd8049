using System.Net;
using System.Net.Sockets;

namespace ColoChardev.SocketBenchmark;

/// <summary>
/// The relay baseline (<c>socket-bench relay P S O</c>): listens where a comparator would, copies every byte of
/// primary_in to outdev unchanged and discards secondary_in. No framing, no comparison, one blocking thread per
/// input with 256 KiB reads: the least a comparator process must do, so the practical ceiling.
/// </summary>
internal static class Relay
{
    private const int BufferSize = 256 * 1024;

    public static int Run(int primaryPort, int secondaryPort, int outdevPort)
    {
        using Socket primaryListener = Listen(primaryPort);
        using Socket secondaryListener = Listen(secondaryPort);
        using Socket outdevListener = Listen(outdevPort);
        Console.WriteLine("relay listening");
        using Socket outdev = outdevListener.Accept();
        using Socket primary = primaryListener.Accept();
        using Socket secondary = secondaryListener.Accept();
        foreach (Socket socket in new[] { outdev, primary, secondary })
        {
            socket.NoDelay = true;
        }

        var discard = new Thread(() => Drain(secondary)) { IsBackground = true, Name = "secondary_in" };
        discard.Start();
        byte[] buffer = new byte[BufferSize];
        while (true)
        {
            int read = primary.Receive(buffer);
            if (read == 0)
            {
                return 0;
            }

            int sent = 0;
            while (sent < read)
            {
                sent += outdev.Send(buffer.AsSpan(sent, read - sent));
            }
        }
    }

    private static void Drain(Socket socket)
    {
        byte[] buffer = new byte[BufferSize];
        while (socket.Receive(buffer) > 0)
        {
        }
    }

    private static Socket Listen(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
        socket.Listen(4);
        return socket;
    }
}
