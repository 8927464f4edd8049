using System.Globalization;
using System.Text.RegularExpressions;

namespace ColoChardev.Testbed;

/// <summary>The daemon's one-line summary (<c>colo-compare 'NIC': in P/S frames ...</c>), parsed.</summary>
public sealed partial record DaemonSummary(
    long PrimaryIn,
    long SecondaryIn,
    long Released,
    long ReleasedUncompared,
    long PrimaryDropped,
    long MismatchesTcp,
    long MismatchesUdp,
    long MismatchesIcmp,
    long MismatchesOther,
    long CheckpointRequests,
    long MismatchRequests,
    long Checkpoints,
    long OutdevWritten)
{
    /// <summary>Primary frames released because their secondary twin matched.</summary>
    public long Compared => Released - ReleasedUncompared;

    public long Mismatches => MismatchesTcp + MismatchesUdp + MismatchesIcmp + MismatchesOther;

    /// <summary>The last summary line in <paramref name="text"/>, or null when there is none.</summary>
    public static DaemonSummary? Last(string text)
    {
        DaemonSummary? last = null;
        foreach (Match m in SummaryLine().Matches(text))
        {
            long N(string group) => long.Parse(m.Groups[group].Value, CultureInfo.InvariantCulture);
            last = new DaemonSummary(
                N("pin"), N("sin"), N("rel"), N("unc"), N("pdrop"), N("mtcp"), N("mudp"), N("micmp"), N("mother"),
                N("req"), N("reqm"), N("cp"), N("written"));
        }

        return last;
    }

    /// <summary>Waits until <paramref name="log"/> holds a summary line more than it held at the call, and returns it.</summary>
    public static async Task<DaemonSummary> NextAsync(Func<string> log, TimeSpan timeout, Func<string> diagnostics)
    {
        int before = Count(log());
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        while (stopwatch.Elapsed < timeout)
        {
            string text = log();
            if (Count(text) > before)
            {
                return Last(text) ?? throw new InvalidOperationException("summary line did not parse:\n" + text);
            }

            await Task.Delay(100).ConfigureAwait(false);
        }

        throw new TimeoutException($"no daemon summary within {timeout}:\n{diagnostics()}");
    }

    private static int Count(string text)
    {
        int count = 0;
        int index = 0;
        while ((index = text.IndexOf("frames (primary/secondary)", index, StringComparison.Ordinal)) >= 0)
        {
            count++;
            index++;
        }

        return count;
    }

    [GeneratedRegex(@"in (?<pin>\d+)/(?<sin>\d+) frames \(primary/secondary\), released (?<rel>\d+) \((?<unc>\d+) uncompared\), dropped (?<pdrop>\d+)/\d+, .*?mismatches tcp (?<mtcp>\d+) udp (?<mudp>\d+) icmp (?<micmp>\d+) other (?<mother>\d+), checkpoint requests (?<req>\d+) \(mismatch (?<reqm>\d+),.*?checkpoints (?<cp>\d+); outdev written (?<written>\d+)")]
    private static partial Regex SummaryLine();
}
