using System.Reflection.PortableExecutable;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary><c>dotnet publish</c> gives a <c>colo-compare</c> binary that runs by itself, compiled ahead of time (ReadyToRun).</summary>
public sealed class PublishedBinaryTests : IDisposable
{
    private readonly string _output = Path.Combine(Path.GetTempPath(), "colo-publish-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        if (Directory.Exists(_output))
        {
            Directory.Delete(_output, recursive: true);
        }
    }

    private static async Task<(int Code, string Output)> RunAsync(string file, params string[] arguments)
    {
        ProcessResult result = await ExternalProcess.RunAsync(file, arguments, TimeSpan.FromMinutes(5));
        return (result.ExitCode, result.Output);
    }

    [Fact]
    public async Task The_published_binary_prints_usage_and_refuses_a_bad_argument_with_exit_code_2()
    {
        string project = Path.Combine(RepositoryPaths.Root, "src", "ColoCompareDaemon");
        (int published, string log) = await RunAsync("dotnet", "publish", project, "-c", "Release", "-o", _output, "-nologo", "-v", "quiet");
        Assert.True(published == 0, log);
        string binary = Path.Combine(_output, "colo-compare");
        Assert.True(File.Exists(binary), $"no {binary}");
        foreach (string assembly in new[] { "colo-compare.dll", "ColoChardev.ChardevProtocol.dll", "ColoChardev.QmpClient.dll" })
        {
            // A ReadyToRun image carries native code, announced by the CLI header's managed native header.
            using var pe = new PEReader(File.OpenRead(Path.Combine(_output, assembly)));
            Assert.True(pe.PEHeaders.CorHeader?.ManagedNativeHeaderDirectory.Size > 0, $"{assembly} is not ReadyToRun");
        }

        (int help, string usage) = await RunAsync(binary, "--help");
        Assert.Equal(0, help);
        Assert.Contains("-object colo-compare", usage, StringComparison.Ordinal);

        (int bad, string error) = await RunAsync(binary, "--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2", "--outdev", "udp:127.0.0.1:3");
        Assert.Equal(2, bad);
        Assert.Contains("'udp:127.0.0.1:3'", error, StringComparison.Ordinal);
    }
}
