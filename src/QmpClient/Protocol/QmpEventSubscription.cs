using System.Threading.Channels;

namespace ColoChardev.Qmp;

/// <summary>
/// One consumer's view of a client's events: its own bounded queue, filled by the client as events arrive, in
/// arrival order. Register it before issuing a command and it sees every event that command causes. When the
/// queue is full the <see cref="Overflow"/> policy applies and <see cref="DroppedEvents"/> counts the losses.
/// If the connection is lost, enumeration ends by throwing <see cref="QmpConnectionLostException"/>.
/// </summary>
public sealed class QmpEventSubscription : IAsyncEnumerable<QmpEvent>, IDisposable
{
    private readonly QmpClient _client;
    private readonly Channel<QmpEvent> _channel;
    private readonly HashSet<string>? _names;
    private long _dropped;

    internal QmpEventSubscription(QmpClient client, IEnumerable<string>? names, int capacity, QmpEventOverflow overflow)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _client = client;
        _names = names is null ? null : new HashSet<string>(names, StringComparer.Ordinal);
        if (_names is { Count: 0 })
        {
            _names = null;
        }

        Capacity = capacity;
        Overflow = overflow;
        var options = new BoundedChannelOptions(capacity)
        {
            FullMode = overflow == QmpEventOverflow.DropOldest ? BoundedChannelFullMode.DropOldest : BoundedChannelFullMode.DropWrite,
            SingleReader = false,
            SingleWriter = true,
        };
        _channel = Channel.CreateBounded<QmpEvent>(options, _ => Interlocked.Increment(ref _dropped));
    }

    /// <summary>The event names this subscription receives; empty for all.</summary>
    public IReadOnlyCollection<string> Names => (IReadOnlyCollection<string>?)_names ?? [];

    /// <summary>Queue length.</summary>
    public int Capacity { get; }

    /// <summary>What happens to an event that finds the queue full.</summary>
    public QmpEventOverflow Overflow { get; }

    /// <summary>Events lost to the overflow policy.</summary>
    public long DroppedEvents => Interlocked.Read(ref _dropped);

    /// <summary>Waits for the next event.</summary>
    public ValueTask<QmpEvent> ReadAsync(CancellationToken cancellationToken = default) => ReadCoreAsync(cancellationToken);

    /// <summary>Waits for the next event with this name, skipping others.</summary>
    public async ValueTask<QmpEvent> ReadAsync(string name, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            QmpEvent e = await ReadAsync(cancellationToken).ConfigureAwait(false);
            if (e.Name == name)
            {
                return e;
            }
        }
    }

    /// <summary>An event already queued, if any.</summary>
    public bool TryRead(out QmpEvent? qmpEvent)
    {
        bool read = _channel.Reader.TryRead(out QmpEvent? e);
        qmpEvent = e;
        return read;
    }

    public async IAsyncEnumerator<QmpEvent> GetAsyncEnumerator(CancellationToken cancellationToken = default)
    {
        while (await WaitAsync(cancellationToken).ConfigureAwait(false))
        {
            while (_channel.Reader.TryRead(out QmpEvent? e))
            {
                yield return e;
            }
        }
    }

    /// <summary>Stops receiving events.</summary>
    public void Dispose()
    {
        _client.Unsubscribe(this);
        _channel.Writer.TryComplete();
    }

    internal bool Wants(string name) => _names is null || _names.Contains(name);

    internal void Post(QmpEvent e)
    {
        if (!_channel.Writer.TryWrite(e))
        {
            // DropWrite: the channel refuses the event without calling the drop callback.
            if (Overflow == QmpEventOverflow.DropNewest)
            {
                Interlocked.Increment(ref _dropped);
            }
        }
    }

    /// <summary>Ends the subscription: normally (null), or with the connection's loss.</summary>
    internal void Complete(QmpConnectionLostException? error) => _channel.Writer.TryComplete(error);

    private async ValueTask<QmpEvent> ReadCoreAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _channel.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException e) when (e.InnerException is QmpConnectionLostException lost)
        {
            throw lost;
        }
        catch (ChannelClosedException e)
        {
            throw new QmpConnectionLostException("the subscription or its client was closed", e);
        }
    }

    private async ValueTask<bool> WaitAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _channel.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException e) when (e.InnerException is QmpConnectionLostException lost)
        {
            throw lost;
        }
    }
}
