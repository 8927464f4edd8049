using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Configuration;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Nic;

/// <summary>A NIC's chardevs, each under QEMU's name for its role: primary_in, secondary_in, outdev and (Xen) notify_dev.</summary>
internal sealed class NicEndpoints : IAsyncDisposable
{
    public NicEndpoints(NicConfiguration configuration, ILoggerFactory loggers)
    {
        var options = new ChardevEndpointOptions { VnetHdrSupport = configuration.Compare.VnetHdrSupport };
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
