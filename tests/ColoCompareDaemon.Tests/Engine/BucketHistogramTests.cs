using ColoChardev.Daemon.Engine;

namespace ColoChardev.ColoCompareDaemon.Tests.Engine;

public class BucketHistogramTests
{
    [Fact]
    public void Values_land_in_the_first_bucket_whose_bound_holds_them_and_counts_are_cumulative()
    {
        var histogram = new BucketHistogram(0.001, 0.01, 0.1);
        foreach (double value in new[] { 0, 0.001, 0.002, 0.05, 0.1, 0.5, 7 })
        {
            histogram.Record(value);
        }

        Assert.Equal(["0.001", "0.01", "0.1", "+Inf"], histogram.BoundLabels);
        Assert.Equal([2L, 3L, 5L, 7L], Enumerable.Range(0, 4).Select(histogram.CumulativeCount));
        Assert.Equal(7, histogram.Count);
        Assert.Equal(7.653, histogram.Sum, 9);
    }

    [Fact]
    public void Bounds_must_ascend()
    {
        Assert.Throws<ArgumentException>(() => new BucketHistogram(0.1, 0.1));
        Assert.Throws<ArgumentException>(() => new BucketHistogram());
    }
}
