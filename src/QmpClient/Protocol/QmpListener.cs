using System.Net.Sockets;

namespace ColoChardev.Qmp;

/// <summary>
/// For monitors where QEMU is the client (<c>-qmp unix:/path,server=off</c>): listen first, start QEMU, accept.
/// </summary>
public sealed class QmpListener : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly string? _path;

    private QmpListener(Socket socket, string? path)
    {
        _socket = socket;
        _path = path;
    }

    /// <summary>The bound address.</summary>
    public System.Net.EndPoint LocalEndPoint => _socket.LocalEndPoint!;

    /// <summary>Binds and listens on <c>unix:/path</c> or <c>tcp:HOST:PORT</c> (port 0 picks a free one).</summary>
    public static QmpListener Listen(string address)
    {
        System.Net.EndPoint bind = QmpEndpoint.Parse(address).EndPoint;
        if (bind is System.Net.DnsEndPoint)
        {
            throw new FormatException($"listen address '{address}' needs an IP address, not a host name");
        }

        bool unix = bind is UnixDomainSocketEndPoint;
        var socket = new Socket(unix ? AddressFamily.Unix : bind.AddressFamily, SocketType.Stream, unix ? ProtocolType.Unspecified : ProtocolType.Tcp);
        try
        {
            socket.Bind(bind);
            socket.Listen(1);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new QmpListener(socket, unix ? bind.ToString() : null);
    }

    /// <summary>Accepts QEMU's connection and runs the QMP handshake.</summary>
    public async Task<QmpClient> AcceptAsync(QmpClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new QmpClientOptions();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);
        Socket accepted;
        try
        {
            accepted = await _socket.AcceptAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new QmpTimeoutException("accept", options.ConnectTimeout);
        }

        return await QmpClient.StartAsync(new NetworkStream(accepted, ownsSocket: true), options, cancellationToken).ConfigureAwait(false);
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        if (_path is not null && File.Exists(_path))
        {
            File.Delete(_path);
        }

        return ValueTask.CompletedTask;
    }
}
