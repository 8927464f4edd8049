using System.Threading.Channels;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Configuration;
using ColoChardev.Daemon.Diagnostics;

namespace ColoChardev.Daemon.Nic;

/// <summary>
/// Outdev's connections, one after another: waiting for a peer (frames older than <see cref="OutdevLimits.HoldMs"/>
/// expire meanwhile), holding the first write until the redirector behind a new connection is restored, watching
/// the peer so that its leaving is seen at once, and telling whether it reads at all.
/// </summary>
internal sealed partial class OutdevWriter
{
    /// <summary>Writes released frames to outdev, connection after connection, until <see cref="Complete"/> and the backlog is written.</summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        ChannelReader<Batch> queue = _queue.Reader;
        bool first = true;
        while (!queue.Completion.IsCompleted)
        {
            ChardevConnection connection;
            try
            {
                connection = await ConnectExpiringAsync(queue, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            Interlocked.Exchange(ref _writtenBeforeConnection, _endpoint.Statistics.BytesWritten);
            Volatile.Write(ref _current, connection);
            _ = connection.WatchForPeerLeavingAsync();
            await WaitForRedirectorAsync(connection, first).ConfigureAwait(false);
            first = false;
            await using (connection.ConfigureAwait(false))
            {
                bool done = await PumpAsync(connection, queue).ConfigureAwait(false);
                Volatile.Write(ref _current, null);
                if (done)
                {
                    return;
                }
            }
        }
    }

    /// <summary>
    /// Before the first write on a new connection: with <c>--restore-redirector</c>, the redirector behind outdev is
    /// re-created first, and deleting a redirector in the middle of a frame leaves its successor reading from
    /// mid-frame: QEMU calls that an oversized packet and stops reading for good (the soak run found it). So nothing is
    /// written until that re-creation is done (a second one, if any, only ever replaces a redirector that has read
    /// nothing of this connection); meanwhile frames wait in the backlog, back-pressure applies, and it is not a stall.
    /// </summary>
    private async Task WaitForRedirectorAsync(ChardevConnection connection, bool first)
    {
        using var abandon = CancellationTokenSource.CreateLinkedTokenSource(connection.Closed);
        Task restored = _connected(connection, first, abandon.Token);
        if (restored.IsCompleted)
        {
            return;
        }

        Volatile.Write(ref _restoring, true);
        try
        {
            await restored.WaitAsync(RestoreWait, connection.Closed).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            // Not restored in time (no QMP monitor?) or the peer left: write anyway, and never re-create it later.
            await abandon.CancelAsync().ConfigureAwait(false);
        }
        finally
        {
            // Quiet time spent waiting for the restore does not count towards a stall: outdev's clock starts now.
            Volatile.Write(ref _lastProgressMs, Environment.TickCount64);
            Volatile.Write(ref _restoring, false);
        }
    }

    /// <summary>
    /// Whether the current outdev peer has read nothing at all of what this connection wrote (bytes written, and all of
    /// them still unread): the sign of QEMU's deaf redirector. Null when there is no connection or it cannot be told.
    /// </summary>
    public bool? PeerReadNothing()
    {
        ChardevConnection? current = Volatile.Read(ref _current);
        if (current is null)
        {
            return null;
        }

        long written = _endpoint.Statistics.BytesWritten - Interlocked.Read(ref _writtenBeforeConnection);
        int unread = current.UnreadByPeer();
        return unread < 0 ? null : written > 0 && unread >= written;
    }

    /// <summary>Waits for the next outdev peer; meanwhile frames held longer than <see cref="OutdevLimits.HoldMs"/> are dropped.</summary>
    private async Task<ChardevConnection> ConnectExpiringAsync(ChannelReader<Batch> queue, CancellationToken stopping)
    {
        Task<ChardevConnection> connecting = _endpoint.ConnectAsync(stopping).AsTask();
        while (!connecting.IsCompleted)
        {
            Expire(queue);
            if (queue.Completion.IsCompleted)
            {
                // Shutting down with nothing left to write: no peer to wait for.
                throw new OperationCanceledException("the outdev queue is complete and empty");
            }

            await Task.WhenAny(connecting, queue.Completion, Task.Delay(100, stopping)).ConfigureAwait(false);
        }

        ChardevConnection connection = await connecting.ConfigureAwait(false);
        Expire(queue);
        return connection;
    }

    private void Expire(ChannelReader<Batch> queue)
    {
        long now = Environment.TickCount64;
        long expired = 0;
        while (queue.TryPeek(out Batch head) && now - head.ReleasedMs > _limits.HoldMs && queue.TryRead(out Batch old))
        {
            if (old.Frames is null)
            {
                continue; // a wake-up
            }

            expired += old.Frames.Count;
            Discard(old, OutdevDropReason.Expired);
        }

        if (expired > 0)
        {
            DaemonLog.OutdevExpired(_logger, _nic, expired, _limits.HoldMs);
            // Room again: the readers may go on.
            if (Volatile.Read(ref _backlogBytes) < _limits.BacklogBytes / 2)
            {
                ResumeReaders();
            }
        }
    }
}
