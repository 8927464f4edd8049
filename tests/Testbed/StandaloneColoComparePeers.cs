using ColoChardev.ChardevProtocol.Endpoints;

namespace ColoChardev.Testbed;

/// <summary>
/// Our endpoints connected to a <see cref="StandaloneColoCompare"/>: outdev first (QEMU drops output to an unconnected
/// chardev), then primary_in, secondary_in and notify_dev, and only once QEMU has accepted them all.
/// </summary>
public sealed class StandaloneColoComparePeers : IAsyncDisposable
{
    private readonly List<IAsyncDisposable> _owned = [];

    private StandaloneColoComparePeers()
    {
    }

    public ChardevEndpoint OutdevEndpoint { get; private set; } = null!;

    public ChardevEndpoint PrimaryEndpoint { get; private set; } = null!;

    public ChardevEndpoint SecondaryEndpoint { get; private set; } = null!;

    public ChardevEndpoint? NotifyEndpoint { get; private set; }

    /// <summary>Released frames come in here.</summary>
    public ChardevConnection Outdev { get; private set; } = null!;

    /// <summary>Write primary frames here.</summary>
    public ChardevConnection Primary { get; private set; } = null!;

    /// <summary>Write secondary frames here.</summary>
    public ChardevConnection Secondary { get; private set; } = null!;

    /// <summary>notify_dev, when QEMU was started with one.</summary>
    public ChardevConnection? Notify { get; private set; }

    public static async Task<StandaloneColoComparePeers> ConnectAsync(StandaloneColoCompare qemu, ChardevEndpointOptions? options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(qemu);
        var peers = new StandaloneColoComparePeers();
        try
        {
            (peers.OutdevEndpoint, peers.Outdev) = await peers.OpenAsync(qemu.OutdevSpec, options, cancellationToken).ConfigureAwait(false);
            (peers.PrimaryEndpoint, peers.Primary) = await peers.OpenAsync(qemu.PrimarySpec, options, cancellationToken).ConfigureAwait(false);
            (peers.SecondaryEndpoint, peers.Secondary) = await peers.OpenAsync(qemu.SecondarySpec, options, cancellationToken).ConfigureAwait(false);
            if (qemu.Options.NotifyDev)
            {
                // notify_dev shares colo-compare's vnet_hdr_support for what it reads (spec §1.6).
                (peers.NotifyEndpoint, peers.Notify) = await peers.OpenAsync(qemu.NotifySpec, options, cancellationToken).ConfigureAwait(false);
            }

            await qemu.WaitForConnectedChardevsAsync(cancellationToken).ConfigureAwait(false);
            return peers;
        }
        catch
        {
            await peers.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync().ConfigureAwait(false);
        }

        _owned.Clear();
    }

    private async Task<(ChardevEndpoint Endpoint, ChardevConnection Connection)> OpenAsync(string spec, ChardevEndpointOptions? options, CancellationToken cancellationToken)
    {
        var endpoint = new ChardevEndpoint(ChardevSocketSpec.Parse(spec), options);
        _owned.Add(endpoint);
        ChardevConnection connection = await endpoint.ConnectAsync(cancellationToken).ConfigureAwait(false);
        _owned.Add(connection);
        return (endpoint, connection);
    }
}
