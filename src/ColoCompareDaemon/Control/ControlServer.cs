using System.Net.Sockets;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Checkpoints;
using Microsoft.Extensions.Logging;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Daemon.Nic;

namespace ColoChardev.Daemon.Control;

/// <summary>
/// The control socket (<c>--control PATH</c>): a Unix socket, only for the daemon's own user (mode 0600), speaking
/// QMP's shape in JSON lines, so any QMP client (ours: <c>colo-compare status|stats|qmp</c>) works: a greeting,
/// <c>qmp_capabilities</c>, then <c>{"execute": ..., "arguments": ..., "id": ...}</c> answered by <c>return</c> or
/// <c>error</c>. Commands: <c>query-status</c> (endpoints, options, failover, last checkpoints),
/// <c>query-stats</c> (every counter), <c>qom-set</c> of compare_timeout, expired_scan_cycle and max_queue_size
/// (path: the colo-compare object's id), <c>query-commands</c>, bypass rules. A bad line gets an error and the
/// connection stays. After negotiation, events arrive as QMP's do (<see cref="DaemonEvents"/>): divergences,
/// checkpoint requests, checkpoints, failover, chardev connections. This class only listens and accepts; each
/// client is a <see cref="QmpServerConnection"/> serving <see cref="ControlCommands"/>.
/// </summary>
internal sealed class ControlServer : IAsyncDisposable
{
    private readonly string _path;
    private readonly ControlCommands _commands;
    private readonly DaemonEvents _events;
    private readonly ILogger _logger;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _clients = [];
    private Task _accepting = Task.CompletedTask;

    public ControlServer(string path, IReadOnlyList<ComparedNic> nics, QmpCheckpointChannel checkpoints, DaemonEvents events, ILogger logger)
    {
        _path = path;
        _commands = new ControlCommands(nics, new StatusView(nics, checkpoints), logger);
        _events = events;
        _logger = logger;
        if (UnixSocketFile.Exists(path))
        {
            File.Delete(path); // a socket left by an earlier daemon; any other file makes Bind below fail
        }

        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            _listener.Bind(new UnixDomainSocketEndPoint(path));
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }

            // Room for a burst of clients (a monitoring fleet polling at once); a full backlog refuses Unix connects with EAGAIN.
            _listener.Listen(128);
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            _listener.Dispose();
            throw new InvalidOperationException($"--control {path}: cannot listen there ({e.Message})", e);
        }
    }

    /// <summary>Refuses, before anything starts, a path where no socket can be made: a file in the way or no directory.</summary>
    /// <exception cref="InvalidOperationException">The path is unusable (the message starts with --control).</exception>
    public static void EnsureUsable(string path)
    {
        string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
        string? problem = File.Exists(path) && !UnixSocketFile.Exists(path) ? "a file that is not a socket is in the way"
            : System.IO.Directory.Exists(path) ? "it is a directory"
            : directory is not null && !System.IO.Directory.Exists(directory) ? $"no directory {directory}"
            : null;
        if (problem is not null)
        {
            throw new InvalidOperationException($"--control {path}: cannot listen there ({problem})");
        }
    }

    public void Start() => _accepting = AcceptAsync(_stopping.Token);

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        try
        {
            await _accepting.ConfigureAwait(false);
            Task[] clients;
            lock (_clients)
            {
                clients = [.. _clients];
            }

            await Task.WhenAll(clients).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException or SocketException or ObjectDisposedException)
        {
        }

        if (UnixSocketFile.Exists(_path))
        {
            File.Delete(_path);
        }

        _stopping.Dispose();
    }

    private async Task AcceptAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(stopping).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            Task serving = Task.Run(() => ServeAsync(client, stopping), CancellationToken.None);
            lock (_clients)
            {
                _clients.RemoveAll(t => t.IsCompleted);
                _clients.Add(serving);
            }
        }
    }

    private async Task ServeAsync(Socket socket, CancellationToken stopping)
    {
        using (socket)
        await using (var stream = new NetworkStream(socket, ownsSocket: false))
        {
            await new QmpServerConnection(stream, _commands, _events, _logger).RunAsync(stopping).ConfigureAwait(false);
        }
    }
}
