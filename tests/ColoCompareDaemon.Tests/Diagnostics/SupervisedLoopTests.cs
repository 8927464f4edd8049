using ColoChardev.Daemon.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;

namespace ColoChardev.ColoCompareDaemon.Tests.Diagnostics;

public class SupervisedLoopTests
{
    [Fact]
    public async Task A_loop_that_fails_is_restarted_until_it_ends_normally()
    {
        int runs = 0;
        await SupervisedLoop.RunAsync(
            "test loop",
            () => ++runs < 3 ? throw new InvalidOperationException("engine bug") : Task.CompletedTask,
            NullLogger.Instance,
            TimeSpan.FromMilliseconds(1),
            CancellationToken.None);
        Assert.Equal(3, runs);
    }

    [Fact]
    public async Task Cancellation_ends_a_loop_for_good()
    {
        using var stopping = new CancellationTokenSource();
        int runs = 0;
        Task loop = SupervisedLoop.RunAsync(
            "test loop",
            async () =>
            {
                runs++;
                await Task.Delay(Timeout.Infinite, stopping.Token);
            },
            NullLogger.Instance,
            TimeSpan.FromMilliseconds(1),
            stopping.Token);
        await stopping.CancelAsync();
        await loop;
        Assert.Equal(1, runs);
    }
}
