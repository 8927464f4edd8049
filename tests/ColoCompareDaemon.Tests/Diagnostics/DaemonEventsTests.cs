using System.Text.Json;
using ColoChardev.Daemon.Diagnostics;

namespace ColoChardev.ColoCompareDaemon.Tests.Diagnostics;

/// <summary>The control socket's event fan-out: QMP's shape, nothing built without listeners, a slow listener told what it lost.</summary>
public class DaemonEventsTests
{
    [Fact]
    public async Task Events_have_qmps_shape_and_reach_every_subscriber()
    {
        var events = new DaemonEvents();
        using DaemonEvents.Subscriber a = events.Subscribe();
        using DaemonEvents.Subscriber b = events.Subscribe();
        events.Publish(DaemonEvents.Checkpoint, w => w.WriteNumber("released", 3));
        foreach (DaemonEvents.Subscriber s in new[] { a, b })
        {
            using JsonDocument e = JsonDocument.Parse(await s.ReadAsync(CancellationToken.None));
            Assert.Equal("COLO_COMPARE_CHECKPOINT", e.RootElement.GetProperty("event").GetString());
            Assert.Equal(3, e.RootElement.GetProperty("data").GetProperty("released").GetInt32());
            long seconds = e.RootElement.GetProperty("timestamp").GetProperty("seconds").GetInt64();
            Assert.InRange(seconds, DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 60, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1);
            Assert.InRange(e.RootElement.GetProperty("timestamp").GetProperty("microseconds").GetInt64(), 0, 999_999);
        }
    }

    [Fact]
    public void Without_subscribers_nothing_is_built()
    {
        var events = new DaemonEvents();
        bool built = false;
        events.Publish(DaemonEvents.Divergence, _ => built = true);
        Assert.False(built);
        using (events.Subscribe())
        {
            Assert.True(events.HasSubscribers);
        }

        Assert.False(events.HasSubscribers); // disposed: unsubscribed
    }

    [Fact]
    public async Task A_subscriber_that_does_not_read_keeps_the_oldest_1024_and_is_told_how_many_it_lost()
    {
        var events = new DaemonEvents();
        using DaemonEvents.Subscriber slow = events.Subscribe();
        for (int i = 0; i < 1030; i++)
        {
            int n = i;
            events.Publish(DaemonEvents.Divergence, w => w.WriteNumber("number", n));
        }

        using (JsonDocument lost = JsonDocument.Parse(await slow.ReadAsync(CancellationToken.None)))
        {
            Assert.Equal("COLO_COMPARE_EVENTS_LOST", lost.RootElement.GetProperty("event").GetString());
            Assert.Equal(6, lost.RootElement.GetProperty("data").GetProperty("count").GetInt64());
        }

        for (int i = 0; i < 1024; i++)
        {
            using JsonDocument e = JsonDocument.Parse(await slow.ReadAsync(CancellationToken.None));
            Assert.Equal(i, e.RootElement.GetProperty("data").GetProperty("number").GetInt32());
        }
    }
}
