using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.Daemon.Configuration;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Nic;

/// <summary>A NIC's chardevs, each under QEMU's name for its role: primary_in, secondary_in, outdev and (Xen) notify_dev.</summary>
internal sealed class NicEndpoints : IAsyncDisposable
{
    /// <param name="heldBytes">The most frame bytes this NIC holds at once (queue budget and outdev backlog): its frame pool keeps that many for reuse.</param>
    public NicEndpoints(NicConfiguration configuration, ILoggerFactory loggers, long heldBytes)
    {
        // A pool of the NIC's own, sized to what it may hold: a burst that fills the queues and is released by a
        // checkpoint, again and again, then reuses its buffers. The shared pool keeps 32 MiB per size class, less
        // than three quarters of a 64 MiB budget of full-size frames, so each refill past that allocated again.
        var pool = new FrameBufferPool((int)Math.Min(heldBytes / 64, 1 << 24), heldBytes);
        var options = new ChardevEndpointOptions { VnetHdrSupport = configuration.Compare.VnetHdrSupport, FramePool = pool };
        ILogger logger = loggers.CreateLogger("chardev");
        PrimaryIn = new ChardevEndpoint(configuration.PrimaryIn, options, logger);
        SecondaryIn = new ChardevEndpoint(configuration.SecondaryIn, options, logger);
        OutDev = new ChardevEndpoint(configuration.OutDev, options, logger);
        NotifyDev = configuration.NotifyDev is null ? null : new ChardevEndpoint(configuration.NotifyDev, options, logger);
        All = NotifyDev is null
            ? [("primary_in", PrimaryIn), ("secondary_in", SecondaryIn), ("outdev", OutDev)]
            : [("primary_in", PrimaryIn), ("secondary_in", SecondaryIn), ("outdev", OutDev), ("notify_dev", NotifyDev)];
    }

    public ChardevEndpoint PrimaryIn { get; }

    public ChardevEndpoint SecondaryIn { get; }

    public ChardevEndpoint OutDev { get; }

    /// <summary>Xen's notify_dev, when configured: checkpoints are then requested and signalled there.</summary>
    public ChardevEndpoint? NotifyDev { get; }

    /// <summary>Every chardev with its role's name, in QEMU's order.</summary>
    public IReadOnlyList<(string Name, ChardevEndpoint Endpoint)> All { get; }

    /// <summary>Binds the server endpoints, so that peers can connect (and a taken address is found before anything runs).</summary>
    /// <exception cref="ChardevEndpointException">An address cannot be bound; the message names the chardev and address.</exception>
    public void Listen()
    {
        foreach ((_, ChardevEndpoint endpoint) in All)
        {
            if (endpoint.Spec.Server)
            {
                endpoint.StartListening();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach ((_, ChardevEndpoint endpoint) in All)
        {
            await endpoint.DisposeAsync().ConfigureAwait(false);
        }
    }
}
