using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace ColoChardev.Benchmarks;

/// <summary>Payload GB/s for benchmarks with a <c>FrameSize</c> parameter: frame bytes divided by the mean time per frame.</summary>
public sealed class ThroughputColumn : IColumn
{
    public string Id => nameof(ThroughputColumn);

    public string ColumnName => "GB/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "Frame bytes processed per second (GB = 10^9 bytes)";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        BenchmarkReport? report = summary[benchmarkCase];
        object? size = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "FrameSize")?.Value;
        if (report?.ResultStatistics is null || size is not int bytes)
        {
            return "-";
        }

        double nanoseconds = report.ResultStatistics.Mean;
        return (bytes / nanoseconds).ToString("0.00", CultureInfo.InvariantCulture);
    }

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}
