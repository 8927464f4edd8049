using System.Text;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Daemon.Diagnostics;
using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Checkpoints;

/// <summary>
/// Xen COLO's <c>notify_dev</c> protocol (spec §1.6), with QEMU's framing quirks: what we read carries the
/// <c>vnet_hdr_len</c> word when vnet_hdr_support is on, what we write never does.
/// In: <c>COLO_USERSPACE_PROXY_INIT</c> (answered with <c>COLO_COMPARE_GET_XEN_INIT</c>) and <c>COLO_CHECKPOINT</c>
/// (flush). Out: <c>DO_CHECKPOINT</c>. Payloads match by exact length and bytes. One per NIC that has notify_dev.
/// </summary>
internal sealed class XenNotifyChannel(ICheckpointTarget nic, ChardevEndpoint endpoint, ILogger logger) : ICheckpointChannel, IDisposable
{
    private static readonly byte[] ProxyInit = "COLO_USERSPACE_PROXY_INIT"u8.ToArray();
    private static readonly byte[] Checkpoint = "COLO_CHECKPOINT"u8.ToArray();
    private static readonly byte[] GetXenInit = "COLO_COMPARE_GET_XEN_INIT"u8.ToArray();
    private static readonly byte[] DoCheckpoint = "DO_CHECKPOINT"u8.ToArray();
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private Peer? _peer;
    private int _pending;

    public ChardevEndpoint Endpoint { get; } = endpoint;

    public void Dispose() => _writeLock.Dispose();

    /// <summary>
    /// Sends DO_CHECKPOINT, or, while notify_dev has no peer, sends it as soon as one connects (the divergence that
    /// asked for it is held until a checkpoint anyway). QEMU's colo-compare writes it into a disconnected chardev,
    /// where it is lost.
    /// </summary>
    public bool Request(CheckpointReason reason, FlowKey flow)
    {
        Peer? peer = Volatile.Read(ref _peer);
        if (peer is null)
        {
            if (Interlocked.Exchange(ref _pending, 1) == 0)
            {
                DaemonLog.Xen(logger, nic.Id, "no peer connected: DO_CHECKPOINT will be sent when one connects");
            }

            // A peer that connected meanwhile may have looked for a pending request before we set it.
            if (Volatile.Read(ref _peer) is Peer arrived && Interlocked.Exchange(ref _pending, 0) == 1)
            {
                _ = SendAsync(arrived, DoCheckpoint);
            }

            return true;
        }

        _ = SendAsync(peer, DoCheckpoint);
        return true;
    }

    public async Task RunAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            ChardevConnection connection;
            try
            {
                connection = await Endpoint.ConnectAsync(stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            await using (connection.ConfigureAwait(false))
            {
                // The reader honours vnet_hdr_support (QEMU reads notify_dev with it); the writer never adds the word.
                var peer = new Peer(connection, new ChardevFrameWriter(connection.Output, vnetHdrSupport: false, Endpoint.Statistics));
                Volatile.Write(ref _peer, peer);
                if (Interlocked.Exchange(ref _pending, 0) == 1)
                {
                    _ = SendAsync(peer, DoCheckpoint);
                }

                try
                {
                    while (true)
                    {
                        using ChardevFrame? frame = await connection.Reader.ReadFrameAsync(stopping).ConfigureAwait(false);
                        if (frame is not ChardevFrame message)
                        {
                            break;
                        }

                        await HandleAsync(peer, message).ConfigureAwait(false);
                    }
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                catch (IOException e)
                {
                    DaemonLog.Xen(logger, nic.Id, "connection failed: " + e.Message);
                }
                finally
                {
                    Volatile.Write(ref _peer, null);
                }
            }
        }
    }

    private async Task HandleAsync(Peer peer, ChardevFrame message)
    {
        ReadOnlySpan<byte> payload = message.Payload;
        if (payload.SequenceEqual(ProxyInit))
        {
            DaemonLog.Xen(logger, nic.Id, "COLO_USERSPACE_PROXY_INIT received, answering COLO_COMPARE_GET_XEN_INIT");
            await SendAsync(peer, GetXenInit).ConfigureAwait(false);
        }
        else if (payload.SequenceEqual(Checkpoint))
        {
            nic.CheckpointCompleted(new CheckpointCompletion("COLO_CHECKPOINT on notify_dev"));
        }
        else
        {
            string text = Encoding.ASCII.GetString(payload[..Math.Min(payload.Length, 64)]);
            DaemonLog.XenUnsupported(logger, nic.Id, text, payload.Length);
        }
    }

    private void LogUnsent(Peer failed, byte[] payload)
    {
        bool request = ReferenceEquals(payload, DoCheckpoint);
        if (request)
        {
            // The divergence is still held: ask again on the next connection. That one may have connected (and looked
            // for a pending request) while this send still held the peer that left: then it is asked now.
            Volatile.Write(ref _pending, 1);
            if (Volatile.Read(ref _peer) is Peer next && !ReferenceEquals(next, failed) && Interlocked.Exchange(ref _pending, 0) == 1)
            {
                _ = SendAsync(next, DoCheckpoint);
            }
        }

        string message = "could not send " + Encoding.ASCII.GetString(payload) + ": the connection is gone" + (request ? "; it will be sent on the next one" : string.Empty);
        DaemonLog.Xen(logger, nic.Id, message);
    }

    private async Task SendAsync(Peer peer, byte[] payload)
    {
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (peer.Connection.PeerHasLeft())
            {
                LogUnsent(peer, payload);
                return;
            }

            peer.Writer.Write(payload, 0);
            if (!await peer.Writer.FlushAsync(peer.Connection.Closed).ConfigureAwait(false))
            {
                LogUnsent(peer, payload);
            }
        }
        catch (InvalidOperationException)
        {
            // The connection was closed under us (its pipe completed).
            LogUnsent(peer, payload);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private sealed record Peer(ChardevConnection Connection, ChardevFrameWriter Writer);
}
