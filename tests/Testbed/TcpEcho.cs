using System.Net.Sockets;
using System.Text;

namespace ColoChardev.Testbed;

/// <summary>One round trip with the guest's TCP echo service.</summary>
public static class TcpEcho
{
    /// <summary>Sends <paramref name="line"/> and reads back as many bytes; returns what came back (shorter if the peer closed).</summary>
    public static async Task<string> RoundTripAsync(Socket socket, string line, CancellationToken cancellationToken)
    {
        byte[] sent = Encoding.ASCII.GetBytes(line);
        await socket.SendAsync(sent, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        byte[] received = new byte[sent.Length];
        int total = 0;
        while (total < received.Length)
        {
            int n = await socket.ReceiveAsync(received.AsMemory(total), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return Encoding.ASCII.GetString(received, 0, total);
    }
}
