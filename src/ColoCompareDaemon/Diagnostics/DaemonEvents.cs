using System.Buffers;
using System.Text.Json;
using System.Threading.Channels;

namespace ColoChardev.Daemon.Diagnostics;

/// <summary>
/// The daemon's events, in QMP's shape (<c>{"event": NAME, "data": {...}, "timestamp": {"seconds", "microseconds"}}</c>),
/// for every control-socket client that negotiated capabilities. Publishing never blocks and costs nothing while nobody
/// listens: each subscriber has a bounded queue, and one that does not read loses events, then receives
/// <c>COLO_COMPARE_EVENTS_LOST</c> with how many.
/// </summary>
internal sealed class DaemonEvents
{
    public const string Divergence = "COLO_COMPARE_DIVERGENCE";
    public const string CheckpointRequest = "COLO_COMPARE_CHECKPOINT_REQUEST";
    public const string Checkpoint = "COLO_COMPARE_CHECKPOINT";
    public const string Failover = "COLO_COMPARE_FAILOVER";
    public const string Chardev = "COLO_COMPARE_CHARDEV";
    public const string EventsLost = "COLO_COMPARE_EVENTS_LOST";

    /// <summary>Events held for one subscriber that is not reading.</summary>
    private const int SubscriberCapacity = 1024;
    private readonly List<Subscriber> _subscribers = [];
    private int _count;

    /// <summary>Cheap test before building an event's data.</summary>
    public bool HasSubscribers => Volatile.Read(ref _count) > 0;

    public Subscriber Subscribe()
    {
        var subscriber = new Subscriber(this);
        lock (_subscribers)
        {
            _subscribers.Add(subscriber);
            _count = _subscribers.Count;
        }

        return subscriber;
    }

    /// <summary>Sends an event to every subscriber; <paramref name="data"/> writes the data object's members.</summary>
    public void Publish(string name, Action<Utf8JsonWriter> data)
    {
        if (!HasSubscribers)
        {
            return;
        }

        byte[] json = Render(name, data, DateTimeOffset.UtcNow);
        lock (_subscribers)
        {
            foreach (Subscriber subscriber in _subscribers)
            {
                subscriber.Offer(json);
            }
        }
    }

    internal static byte[] Render(string name, Action<Utf8JsonWriter> data, DateTimeOffset at)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("event", name);
            w.WriteStartObject("data");
            data(w);
            w.WriteEndObject();
            long micros = (at.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;
            w.WriteStartObject("timestamp");
            w.WriteNumber("seconds", micros / 1_000_000);
            w.WriteNumber("microseconds", micros % 1_000_000);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private void Remove(Subscriber subscriber)
    {
        lock (_subscribers)
        {
            _subscribers.Remove(subscriber);
            _count = _subscribers.Count;
        }
    }

    /// <summary>One listener's queue of rendered events. Dispose to unsubscribe.</summary>
    internal sealed class Subscriber : IDisposable
    {
        private readonly DaemonEvents _events;
        private readonly Channel<byte[]> _queue;
        private long _lost;

        public Subscriber(DaemonEvents events)
        {
            _events = events;
            // DropWrite: a full queue keeps the oldest events and counts the newer ones it could not hold.
            _queue = Channel.CreateBounded<byte[]>(
                new BoundedChannelOptions(SubscriberCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.DropWrite },
                _ => Interlocked.Increment(ref _lost));
        }

        /// <summary>The next event (or the note of lost ones), rendered as JSON.</summary>
        public async ValueTask<byte[]> ReadAsync(CancellationToken cancellationToken)
        {
            long lost = Interlocked.Exchange(ref _lost, 0);
            if (lost > 0)
            {
                return Render(EventsLost, w => w.WriteNumber("count", lost), DateTimeOffset.UtcNow);
            }

            return await _queue.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }

        public void Dispose() => _events.Remove(this);

        internal void Offer(byte[] json) => _queue.Writer.TryWrite(json);
    }
}
