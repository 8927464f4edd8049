using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;
using Tmds.Linux;

namespace ColoChardev.Testbed;

/// <summary>
/// The client side inside a network namespace a test created (<c>ip netns add</c>): sockets are made on a thread that
/// joined the namespace, and keep belonging to it whichever thread uses them afterwards.
/// </summary>
public sealed class NetworkNamespace(string name)
{
    private const int CloneNewNet = 0x40000000;

    public string Name { get; } = name;

    /// <summary>A TCP socket that lives in the namespace, connected to <paramref name="endPoint"/>.</summary>
    public async Task<Socket> ConnectTcpAsync(IPEndPoint endPoint, CancellationToken cancellationToken)
    {
        Socket socket = CreateSocket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.NoDelay = true;
            await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>An HttpClient whose connections are opened inside the namespace.</summary>
    public HttpClient CreateHttpClient(TimeSpan timeout)
    {
        var handler = new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.Zero,
            ConnectCallback = async (context, cancellationToken) =>
            {
                IPAddress address = IPAddress.Parse(context.DnsEndPoint.Host);
                Socket socket = await ConnectTcpAsync(new IPEndPoint(address, context.DnsEndPoint.Port), cancellationToken).ConfigureAwait(false);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        return new HttpClient(handler) { Timeout = timeout };
    }

    /// <summary>Runs a command inside the namespace (<c>ip netns exec</c>), bounded in time; returns exit code and output.</summary>
    public async Task<(int ExitCode, string Output)> RunAsync(TimeSpan timeout, string file, params string[] arguments)
    {
        ProcessResult result = await ExternalProcess.RunAsync("ip", ["netns", "exec", Name, file, .. arguments], timeout).ConfigureAwait(false);
        return (result.ExitCode, result.Output);
    }

    /// <summary><paramref name="busybox"/> ping from inside the namespace; returns the replies received.</summary>
    public async Task<int> PingAsync(string busybox, IPAddress address, int count, Action<string> log)
    {
        string n = count.ToString(CultureInfo.InvariantCulture);
        (int _, string output) = await RunAsync(TimeSpan.FromSeconds(count + 15), busybox, "ping", "-c", n, address.ToString()).ConfigureAwait(false);
        log(output);
        Match m = Regex.Match(output, @"(\d+) packets received");
        return m.Success ? int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
    }

    private Socket CreateSocket(AddressFamily family, SocketType type, ProtocolType protocol)
    {
        Socket? socket = null;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using SafeFileHandle ns = File.OpenHandle(Path.Combine("/var/run/netns", Name), FileMode.Open, FileAccess.Read);
                if (LibC.setns((int)ns.DangerousGetHandle(), CloneNewNet) != 0)
                {
                    throw new IOException($"setns({Name}) failed: errno {LibC.errno}");
                }

                // This short-lived thread now lives in the namespace; the socket stays there for good.
                socket = new Socket(family, type, protocol);
            }
            catch (Exception e) when (e is IOException or SocketException or UnauthorizedAccessException)
            {
                error = e;
            }
        });
        thread.Start();
        thread.Join();
        return socket ?? throw new IOException($"cannot open a socket in network namespace {Name}", error);
    }
}
