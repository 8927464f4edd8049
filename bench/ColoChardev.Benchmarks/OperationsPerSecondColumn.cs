using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace ColoChardev.Benchmarks;

/// <summary>Millions of operations per second (1,000 / mean ns): for the engine, compared primary packets per second.</summary>
public sealed class OperationsPerSecondColumn : IColumn
{
    public string Id => nameof(OperationsPerSecondColumn);

    public string ColumnName => "M op/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 1;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "Millions of operations per second (one operation = one frame, or one compared primary packet with its secondary twin)";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        BenchmarkReport? report = summary[benchmarkCase];
        return report?.ResultStatistics is null
            ? "-"
            : (1000.0 / report.ResultStatistics.Mean).ToString("0.00", CultureInfo.InvariantCulture);
    }

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}
