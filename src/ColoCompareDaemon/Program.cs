using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Configuration;

namespace ColoChardev.Daemon;

/// <summary>
/// The <c>colo-compare</c> executable: the comparing daemon (QEMU's <c>-chardev</c>/<c>-object colo-compare</c>
/// syntax or plain options), and the subcommands <c>check-chardev</c>, <c>qmp</c>, <c>status</c>, <c>stats</c>,
/// <c>events</c>, <c>ocf</c> (the Pacemaker resource agent's actions).
/// </summary>
public static class Program
{
    /// <summary>Exit code for a bad command line, as the usage text promises.</summary>
    public const int ExitUsage = 2;

    /// <summary>Exit code for a daemon that cannot start (a taken port, an unusable path) or a command that failed.</summary>
    public const int ExitStart = 1;

    /// <summary>.NET's switch that runs socket completions on the epoll thread instead of handing them to the thread pool.</summary>
    public const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    public static async Task<int> Main(string[] args)
    {
        // Before any socket exists (.NET reads it once, when the first socket operation starts its epoll engine).
        // Our continuations never block: the readers run the engine under a short lock and hand released frames to the
        // outdev writer, which continues in place. Completing inline saves two thread hand-offs per batch: 16-19 %
        // less CPU per frame and a ~30 % lower median latency (docs/performance.md). An operator's own setting wins.
        if (Environment.GetEnvironmentVariable(InlineCompletionsVariable) is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletionsVariable, "1");
        }

        using var interrupted = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            interrupted.Cancel();
        };
        return await RunAsync(args, Console.Out, Console.Error, interrupted.Token).ConfigureAwait(false);
    }

    /// <summary>Runs the command line against the given writers (so tests can run it in-process).</summary>
    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Count > 1 && args[0] is "status" or "stats" or "events" or "qmp" or "check-chardev" && args.Skip(1).Any(a => a is "--help" or "-h"))
        {
            output.Write(Usage.For(args[0]));
            return 0;
        }

        if (args.Count > 0 && args[0] is "status" or "stats" && args.Count != 2)
        {
            error.WriteLine($"colo-compare: {args[0]} needs one argument, the daemon's --control socket path");
            return ExitUsage;
        }

        if (args.Count == 2 && args[0] is "status" or "stats")
        {
            // The control socket speaks QMP's shape: the QMP tool runs its query and prints the reply.
            string query = args[0] == "status" ? "query-status" : "query-stats";
            return await Tools.QmpTool.QueryAsync($"unix:{args[1]}", query, output, error, cancellationToken).ConfigureAwait(false);
        }

        if (args.Count > 0 && args[0] == "events")
        {
            if (args.Count < 2)
            {
                error.WriteLine("colo-compare: events needs the daemon's --control socket path (and, optionally, event names)");
                return ExitUsage;
            }

            // The control socket's events in QMP's shape: the QMP tool's watcher prints them as JSON lines.
            return await Tools.QmpTool.RunAsync([$"unix:{args[1]}", "--events", .. args.Skip(2)], output, error, cancellationToken).ConfigureAwait(false);
        }

        if (args.Count > 0 && args[0] == "ocf")
        {
            // The OCF resource agent's logic (packaging/pacemaker/colo): parameters in OCF_RESKEY_*, OCF exit codes.
            return await Cluster.ColoResourceAgent.RunAsync(args.Skip(1).ToArray(), output, error, cancellationToken).ConfigureAwait(false);
        }

        if (args.Count > 0 && args[0] == "qmp")
        {
            return await Tools.QmpTool.RunAsync(args.Skip(1).ToArray(), output, error, cancellationToken).ConfigureAwait(false);
        }

        if (CommandLine.IsDaemonCommandLine(args))
        {
            if (!CommandLine.TryParse(args, out DaemonConfiguration? configuration, out string? problem))
            {
                error.WriteLine($"colo-compare: {problem}");
                return ExitUsage;
            }

            try
            {
                return await Hosting.DaemonHost.RunAsync(configuration!).ConfigureAwait(false);
            }
            catch (Exception e) when (e is Hosting.DaemonStartException || (e is InvalidOperationException && e.Message.StartsWith("--", StringComparison.Ordinal)))
            {
                // A chardev or option whose address or path cannot be used: one clear line, no stack trace.
                error.WriteLine($"colo-compare: {e.Message}");
                return ExitStart;
            }
        }

        return Run(args, output, error);
    }

    /// <summary>The synchronous subcommands.</summary>
    public static int Run(IReadOnlyList<string> args, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        if (args.Count == 0 || args[0] is "--help" or "-h" or "help")
        {
            output.Write(Usage.Text);
            return 0;
        }

        if (args[0] == "--version")
        {
            output.WriteLine($"colo-compare {typeof(Program).Assembly.GetName().Version}");
            return 0;
        }

        if (args[0] == "check-chardev")
        {
            return CheckChardev(args, output, error);
        }

        error.WriteLine($"colo-compare: unknown argument '{args[0]}' (see colo-compare --help)");
        return ExitUsage;
    }

    private static int CheckChardev(IReadOnlyList<string> args, TextWriter output, TextWriter error)
    {
        if (args.Count < 2)
        {
            error.WriteLine("colo-compare: check-chardev needs at least one chardev spec");
            return ExitUsage;
        }

        for (int i = 1; i < args.Count; i++)
        {
            if (!ChardevSocketSpec.TryParse(args[i], out ChardevSocketSpec? spec, out string? problem))
            {
                error.WriteLine($"colo-compare: {problem}");
                return ExitUsage;
            }

            string role = spec.Server ? (spec.Wait ? "server, wait for first peer" : "server") : "client, reconnecting";
            string extra = spec.PeerUid is uint uid ? $", peer uid {uid} only" : string.Empty;
            string note = spec.HostDefaulted ? " (no host given: loopback only)" : string.Empty;
            output.WriteLine($"{spec.DisplayName}: {spec.Transport.ToString().ToLowerInvariant()} {spec.Address}, {role}{extra}{note}");
        }

        return 0;
    }
}
