using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace ColoChardev.Benchmarks;

/// <summary>
/// Micro-benchmarks of the hot path: <c>dotnet run -c Release --project bench/ColoChardev.Benchmarks -- --filter '*'</c>.
/// They print figures (ns per frame, GB/s, bytes allocated per frame); nothing here asserts a time.
/// </summary>
public static class Program
{
    public static void Main(string[] args)
    {
        // In-process: the generated benchmark project would otherwise inherit our warnings-as-errors build settings.
        IConfig config = DefaultConfig.Instance
            .AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(15).WithToolchain(InProcessEmitToolchain.Instance))
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumn(new ThroughputColumn(), new OperationsPerSecondColumn())
            .WithOptions(ConfigOptions.DisableOptimizationsValidator);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
    }
}
