namespace ColoChardev.Qmp;

/// <summary>What a subscription does when its queue is full.</summary>
public enum QmpEventOverflow
{
    /// <summary>Discard the oldest queued event to make room (the default: a slow consumer sees the latest state).</summary>
    DropOldest,

    /// <summary>Discard the event that does not fit.</summary>
    DropNewest,
}

/// <summary>Settings of a <see cref="QmpClient"/>.</summary>
public sealed record QmpClientOptions
{
    /// <summary>Longest time for connecting, reading the greeting and negotiating capabilities.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest wait for a command's reply; <see cref="Timeout.InfiniteTimeSpan"/> for none.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Enable out-of-band execution when the server offers it.</summary>
    public bool EnableOob { get; init; } = true;

    /// <summary>
    /// The largest message accepted. There is no line-length limit below it (go-qemu's 64 KiB scanner broke on big
    /// replies); this only stops a broken server from filling memory.
    /// </summary>
    public int MaxMessageBytes { get; init; } = 256 * 1024 * 1024;

    /// <summary>Default queue length of each event subscription.</summary>
    public int EventQueueCapacity { get; init; } = 1024;

    /// <summary>Default overflow policy of each event subscription.</summary>
    public QmpEventOverflow EventOverflow { get; init; } = QmpEventOverflow.DropOldest;
}
