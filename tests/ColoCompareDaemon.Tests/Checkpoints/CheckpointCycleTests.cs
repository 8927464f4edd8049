using ColoChardev.Daemon.Checkpoints;

namespace ColoChardev.ColoCompareDaemon.Tests.Checkpoints;

/// <summary>
/// The checkpoint cycle on its own: every order in which QEMU 7.2, 10.0 and 11.1 report a checkpoint (and an
/// operator's stop and cont), lost and duplicated events, and whether a flush was asked for. Times are plain numbers.
/// </summary>
public class CheckpointCycleTests
{
    [Fact]
    public void Qemu_7_2_and_10_0_secondary_stop_primary_stop_migration_pass_flush_at_the_secondarys_resume_only()
    {
        var cycle = new CheckpointCycle();
        cycle.RequestSent();
        cycle.SecondaryStopped();
        Assert.False(cycle.PrimaryStopped(now: 5)); // both stopped: known at once
        cycle.MigrationPass();
        CheckpointFlush? flush = cycle.SecondaryResumed();
        Assert.Equal(new CheckpointFlush(true, "at the secondary's RESUME", 5), flush);
        Assert.Null(cycle.PrimaryResumed(secondaryWatched: true));
    }

    [Fact]
    public void The_primary_stopping_first_then_migration_pass_is_a_checkpoint_and_nothing_flushes_before_a_resume()
    {
        var cycle = new CheckpointCycle();
        Assert.True(cycle.PrimaryStopped(now: 1));
        Assert.True(cycle.AwaitingStatus);
        cycle.MigrationPass();
        Assert.False(cycle.AwaitingStatus);
        cycle.SecondaryStopped();
        Assert.Equal(new CheckpointFlush(false, "at the secondary's RESUME", 1), cycle.SecondaryResumed());
        Assert.Null(cycle.PrimaryResumed(secondaryWatched: true));
    }

    [Fact]
    public void Qemu_11_without_migration_pass_over_before_query_status_answers_flushes_at_the_secondarys_resume()
    {
        var cycle = new CheckpointCycle();
        cycle.RequestSent();
        cycle.SecondaryStopped();
        Assert.False(cycle.PrimaryStopped(now: 2));
        cycle.StatusAnswered("running"); // the checkpoint was over before the answer
        Assert.Equal(new CheckpointFlush(true, "at the secondary's RESUME", 2), cycle.SecondaryResumed());
        Assert.Null(cycle.PrimaryResumed(secondaryWatched: true));
    }

    [Fact]
    public void The_secondarys_stop_read_after_the_primarys_still_makes_it_a_checkpoint()
    {
        // Two monitors, two sockets: the daemon may read the primary's STOP first.
        var cycle = new CheckpointCycle();
        Assert.True(cycle.PrimaryStopped(now: 3));
        cycle.StatusAnswered("running");
        cycle.SecondaryStopped();
        Assert.NotNull(cycle.SecondaryResumed());
    }

    [Fact]
    public void Without_a_secondary_monitor_query_status_colo_confirms_and_the_primarys_resume_flushes()
    {
        var cycle = new CheckpointCycle();
        Assert.True(cycle.PrimaryStopped(now: 7));
        cycle.StatusAnswered("colo");
        Assert.Equal(new CheckpointFlush(false, "at the primary's RESUME", 7), cycle.PrimaryResumed(secondaryWatched: false));
    }

    [Fact]
    public void A_secondary_resume_that_was_not_seen_flushes_at_the_primarys_resume_and_says_so()
    {
        var cycle = new CheckpointCycle();
        cycle.PrimaryStopped(now: 0);
        cycle.MigrationPass();
        Assert.Equal("at the primary's RESUME; the secondary's was not seen", cycle.PrimaryResumed(secondaryWatched: true)?.Where);
    }

    [Theory]
    [InlineData("paused")]
    [InlineData("running")]
    public void An_operators_stop_and_cont_of_the_primary_alone_flushes_nothing(string status)
    {
        var cycle = new CheckpointCycle();
        Assert.True(cycle.PrimaryStopped(now: 0));
        cycle.StatusAnswered(status);
        Assert.Null(cycle.PrimaryResumed(secondaryWatched: true));
        Assert.Null(cycle.SecondaryResumed());
    }

    [Fact]
    public void Duplicated_events_flush_once()
    {
        var cycle = new CheckpointCycle();
        cycle.SecondaryStopped();
        cycle.SecondaryStopped();
        cycle.PrimaryStopped(now: 1);
        Assert.False(cycle.PrimaryStopped(now: 2)); // a duplicate STOP changes nothing, not even the start time
        cycle.MigrationPass();
        cycle.MigrationPass();
        Assert.Equal(1, cycle.SecondaryResumed()?.StoppedAt);
        Assert.Null(cycle.SecondaryResumed());
        Assert.Null(cycle.PrimaryResumed(secondaryWatched: true));
        Assert.Null(cycle.PrimaryResumed(secondaryWatched: true));
    }

    [Fact]
    public void Events_without_a_stop_before_them_flush_nothing()
    {
        var cycle = new CheckpointCycle();
        cycle.MigrationPass();
        cycle.StatusAnswered("colo");
        Assert.Null(cycle.SecondaryResumed());
        Assert.Null(cycle.PrimaryResumed(secondaryWatched: true));
    }

    [Fact]
    public void A_lost_secondary_monitor_forgets_its_stop()
    {
        var cycle = new CheckpointCycle();
        cycle.SecondaryStopped();
        cycle.SecondaryLost();
        Assert.True(cycle.PrimaryStopped(now: 0)); // no longer known at once
        cycle.StatusAnswered("paused");
        Assert.Null(cycle.PrimaryResumed(secondaryWatched: false));
    }

    [Fact]
    public void The_next_checkpoint_after_a_flush_is_seen_again()
    {
        var cycle = new CheckpointCycle();
        for (long t = 0; t < 3; t++)
        {
            cycle.SecondaryStopped();
            cycle.PrimaryStopped(now: t);
            Assert.Equal(t, cycle.SecondaryResumed()?.StoppedAt);
            Assert.Null(cycle.PrimaryResumed(secondaryWatched: true));
        }
    }

    [Fact]
    public void A_flush_was_requested_when_a_request_went_out_before_it_and_the_next_one_is_periodic()
    {
        var cycle = new CheckpointCycle();
        cycle.RequestSent();
        cycle.RequestSent(); // a second NIC's request: still one checkpoint asked for
        cycle.PrimaryStopped(now: 1);
        cycle.MigrationPass();
        Assert.True(cycle.PrimaryResumed(secondaryWatched: false)?.Requested);

        cycle.PrimaryStopped(now: 3);
        cycle.MigrationPass();
        Assert.False(cycle.PrimaryResumed(secondaryWatched: false)?.Requested);
    }

    [Fact]
    public void Colo_exit_is_failover()
    {
        var cycle = new CheckpointCycle();
        Assert.False(cycle.FailedOver);
        cycle.ColoExited();
        Assert.True(cycle.FailedOver);
    }
}
