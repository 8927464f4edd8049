using System.Globalization;

namespace ColoChardev.Daemon.Engine;

/// <summary>
/// A fixed-bucket histogram of durations in seconds, as Prometheus wants them (cumulative counts per upper bound, a
/// sum and a count). One writer (the engine's thread, or the QMP checkpoint channel's loop); readable from any thread,
/// each value one aligned 64-bit word. Recording is a short loop and three additions: cheap enough per packet.
/// </summary>
public sealed class BucketHistogram
{
    private readonly double[] _bounds;
    private readonly long[] _counts;
    private double _sum;
    private long _count;

    public BucketHistogram(params double[] bounds)
    {
        ArgumentNullException.ThrowIfNull(bounds);
        if (bounds.Length == 0 || bounds.Zip(bounds.Skip(1)).Any(p => p.First >= p.Second))
        {
            throw new ArgumentException("bounds must be ascending and not empty", nameof(bounds));
        }

        _bounds = bounds;
        _counts = new long[bounds.Length + 1];
        BoundLabels = [.. bounds.Select(b => b.ToString("0.###", CultureInfo.InvariantCulture)), "+Inf"];
    }

    /// <summary>Each bucket's upper bound as Prometheus writes its <c>le</c> label, the last being <c>+Inf</c>.</summary>
    public IReadOnlyList<string> BoundLabels { get; }

    /// <summary>Sum of every recorded value (seconds).</summary>
    public double Sum => Volatile.Read(ref _sum);

    /// <summary>Values recorded.</summary>
    public long Count => Volatile.Read(ref _count);

    /// <summary>Values at or below bucket <paramref name="bucket"/>'s bound (the last bucket: all of them).</summary>
    public long CumulativeCount(int bucket)
    {
        long total = 0;
        for (int i = 0; i <= bucket; i++)
        {
            total += Volatile.Read(ref _counts[i]);
        }

        return total;
    }

    internal void Record(double seconds)
    {
        int i = 0;
        while (i < _bounds.Length && seconds > _bounds[i])
        {
            i++;
        }

        _counts[i]++;
        _sum += seconds;
        _count++;
    }
}
