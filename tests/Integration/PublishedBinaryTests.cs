using System.Diagnostics;

namespace ColoChardev.Integration;

/// <summary><c>dotnet publish</c> gives a <c>colo-compare</c> binary that runs by itself.</summary>
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

    private static string RepositoryRoot()
    {
        string? directory = AppContext.BaseDirectory;
        while (directory is not null && !File.Exists(Path.Combine(directory, "ColoChardev.sln")))
        {
            directory = Path.GetDirectoryName(directory);
        }

        return directory ?? throw new InvalidOperationException("ColoChardev.sln not found above " + AppContext.BaseDirectory);
    }

    private static async Task<(int Code, string Output)> RunAsync(string file, params string[] arguments)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(info)!;
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output + await error);
    }

    [Fact]
    public async Task The_published_binary_prints_usage_and_refuses_a_bad_argument_with_exit_code_2()
    {
        string project = Path.Combine(RepositoryRoot(), "src", "ColoCompareDaemon");
        (int published, string log) = await RunAsync("dotnet", "publish", project, "-c", "Release", "-o", _output, "-nologo", "-v", "quiet");
        Assert.True(published == 0, log);
        string binary = Path.Combine(_output, "colo-compare");
        Assert.True(File.Exists(binary), $"no {binary}");

        (int help, string usage) = await RunAsync(binary, "--help");
        Assert.Equal(0, help);
        Assert.Contains("-object colo-compare", usage, StringComparison.Ordinal);

        (int bad, string error) = await RunAsync(binary, "--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2", "--outdev", "udp:127.0.0.1:3");
        Assert.Equal(2, bad);
        Assert.Contains("'udp:127.0.0.1:3'", error, StringComparison.Ordinal);
    }
}
