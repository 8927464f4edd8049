using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace ColoChardev.Qmp;

/// <summary>
/// Where a QMP monitor is: <c>unix:/path</c>, a plain absolute path, or <c>tcp:HOST:PORT</c>. QEMU's own
/// <c>-qmp</c> strings are accepted as they are (<c>unix:/path,server=on,wait=off</c>); <c>server=off</c> means QEMU
/// connects to us, which is what <see cref="QmpListener"/> is for.
/// </summary>
public sealed record QmpEndpoint
{
    private QmpEndpoint(string text, EndPoint endPoint, bool qemuIsServer)
    {
        Text = text;
        EndPoint = endPoint;
        QemuIsServer = qemuIsServer;
    }

    /// <summary>The address as given.</summary>
    public string Text { get; }

    /// <summary>The socket address.</summary>
    public EndPoint EndPoint { get; }

    /// <summary>False when the address said <c>server=off</c>: QEMU dials us.</summary>
    public bool QemuIsServer { get; }

    /// <summary>Parses an address; the exception message quotes what is wrong.</summary>
    /// <exception cref="FormatException">Not a QMP socket address.</exception>
    public static QmpEndpoint Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] parts = text.Split(',');
        string address = parts[0];
        bool qemuIsServer = true;
        foreach (string option in parts.Skip(1))
        {
            switch (option)
            {
                case "server" or "server=on" or "server=yes" or "server=true":
                    qemuIsServer = true;
                    break;
                case "server=off" or "server=no" or "server=false" or "noserver":
                    qemuIsServer = false;
                    break;
                case "wait" or "nowait" or "wait=on" or "wait=off" or "nodelay" or "nodelay=on" or "nodelay=off":
                    break;
                default:
                    throw new FormatException($"unknown option '{option}' in QMP address '{text}'");
            }
        }

        if (address.StartsWith("unix:", StringComparison.Ordinal) || address.StartsWith('/'))
        {
            string path = address.StartsWith('/') ? address : address["unix:".Length..];
            if (path.Length == 0)
            {
                throw new FormatException($"QMP address '{text}' has an empty path");
            }

            return new QmpEndpoint(text, new UnixDomainSocketEndPoint(path), qemuIsServer);
        }

        if (address.StartsWith("tcp:", StringComparison.Ordinal))
        {
            string hostPort = address["tcp:".Length..];
            int colon = hostPort.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(hostPort[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > 65535)
            {
                throw new FormatException($"QMP address '{text}' is not tcp:HOST:PORT");
            }

            string host = hostPort[..colon].Trim('[', ']');
            EndPoint endPoint = IPAddress.TryParse(host, out IPAddress? ip) ? new IPEndPoint(ip, port) : new DnsEndPoint(host, port);
            return new QmpEndpoint(text, endPoint, qemuIsServer);
        }

        throw new FormatException($"QMP address '{text}' is neither unix:PATH nor tcp:HOST:PORT");
    }

    /// <summary>Connects to the monitor, giving up after <paramref name="timeout"/>.</summary>
    public async Task<Socket> ConnectAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var socket = new Socket(EndPoint is UnixDomainSocketEndPoint ? AddressFamily.Unix : (EndPoint as IPEndPoint)?.AddressFamily ?? AddressFamily.InterNetwork, SocketType.Stream, EndPoint is UnixDomainSocketEndPoint ? ProtocolType.Unspecified : ProtocolType.Tcp);
        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        attempt.CancelAfter(timeout);
        try
        {
            await socket.ConnectAsync(EndPoint, attempt.Token).ConfigureAwait(false);
            return socket;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            throw new QmpTimeoutException($"connect to {Text}", timeout);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
