namespace ColoChardev.Testbed;

/// <summary>Where the repository's scripts are, found from the test's output folder.</summary>
public static class RepositoryPaths
{
    /// <summary>The folder holding ColoChardev.sln.</summary>
    public static string Root { get; } = FindRoot();

    public static string Script(params string[] parts) => Path.Combine([Root, "scripts", .. parts]);

    private static string FindRoot()
    {
        string? directory = AppContext.BaseDirectory;
        while (directory is not null && !File.Exists(Path.Combine(directory, "ColoChardev.sln")))
        {
            directory = Path.GetDirectoryName(directory);
        }

        return directory ?? throw new InvalidOperationException("ColoChardev.sln not found above " + AppContext.BaseDirectory);
    }
}
