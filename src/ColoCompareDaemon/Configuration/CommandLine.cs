using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;
using static ColoChardev.Daemon.Configuration.OptionValues;

namespace ColoChardev.Daemon.Configuration;

/// <summary>
/// Parses the daemon's command line, in QEMU's own syntax (<c>-chardev socket,...</c>, <c>-object colo-compare,...</c>,
/// several NICs allowed) or with plain options for one NIC (<c>--primary-in SPEC --secondary-in SPEC --outdev SPEC</c>).
/// Errors are one sentence naming the offending argument.
/// </summary>
public static class CommandLine
{
    /// <summary>Every option that takes a value, and what it does to the arguments read so far.</summary>
    private static readonly Dictionary<string, Action<Arguments, string, string>> ValueOptions = new(StringComparer.Ordinal)
    {
        ["-chardev"] = static (a, _, v) => a.AddChardev(v),
        ["--chardev"] = static (a, _, v) => a.AddChardev(v),
        ["-object"] = static (a, _, v) => a.Objects.Add(v),
        ["--object"] = static (a, _, v) => a.Objects.Add(v),
        ["--qmp"] = static (a, o, v) => a.PrimaryQmp = Qmp(o, v),
        ["--secondary-qmp"] = static (a, o, v) => a.SecondaryQmp = Qmp(o, v),
        ["--summary-interval"] = static (a, o, v) => a.Summary = Seconds(o, v, 0, 86_400),
        ["--bypass"] = static (a, _, v) => a.Bypass.Add(BypassRule.Parse(v)),
        ["--control"] = static (a, _, v) => a.Control = v.Length is > 0 and <= 107 ? v : throw new FormatException($"'--control={v}' must be a socket path of 1 to 107 bytes"),
        ["--metrics"] = static (a, o, v) => a.Metrics = MetricsEndpoint.Parse(o, v),
        ["--capture"] = static (a, _, v) => a.CaptureDirectory = v.Length > 0 ? v : throw new FormatException("'--capture' needs a directory"),
        ["--capture-file-mb"] = static (a, o, v) => a.CaptureLimits[o] = Number(o, v, 1, 64 * 1024),
        ["--capture-files"] = static (a, o, v) => a.CaptureLimits[o] = Number(o, v, 1, 100_000),
        ["--capture-packets"] = static (a, o, v) => a.CaptureLimits[o] = Number(o, v, 1, 65_536),
        ["--outdev-backlog-mb"] = static (a, o, v) => a.Outdev = a.Outdev with { BacklogBytes = Number(o, v, 1, 1 << 20) * 1024L * 1024 },
        ["--outdev-stall-ms"] = static (a, o, v) => a.Outdev = a.Outdev with { StallMs = Number(o, v, 1, 3_600_000) },
        ["--outdev-hold-ms"] = static (a, o, v) => a.Outdev = a.Outdev with { HoldMs = Number(o, v, 0, 3_600_000) },
        ["--queue-budget-mb"] = static (a, o, v) => a.Common = a.Common with { QueueBudgetBytes = Number(o, v, 1, 1 << 20) * 1024L * 1024 },
        ["--queue-stall-ms"] = static (a, o, v) => a.Common = a.Common with { QueueStallMs = Number(o, v, 0, 3_600_000) },
        ["--compare-ipv6"] = static (a, o, v) => a.Common = a.Common with { CompareIpv6 = Boolean(o, v) },
        ["--compare-vlan"] = static (a, o, v) => a.Common = a.Common with { CompareVlan = Boolean(o, v) },
        ["--restore-redirector"] = static (a, _, v) => a.Restore = v,
        ["--log-level"] = static (a, _, v) => a.LogLevel = Enum.TryParse(v, ignoreCase: true, out LogLevel level) && Enum.IsDefined(level)
            ? level
            : throw new FormatException($"option '--log-level' value '{v}' is not one of trace, debug, information, warning, error, critical"),
    };

    /// <summary>True when these arguments start the daemon (rather than a subcommand).</summary>
    public static bool IsDaemonCommandLine(IReadOnlyList<string> args) =>
        args.Count > 0 && (args[0].StartsWith('-') && args[0] is not ("--help" or "-h" or "--version"));

    public static bool TryParse(IReadOnlyList<string> args, out DaemonConfiguration? configuration, out string? error)
    {
        ArgumentNullException.ThrowIfNull(args);
        configuration = null;
        try
        {
            configuration = Parse(args);
            error = null;
            return true;
        }
        catch (FormatException e)
        {
            error = e.Message;
            return false;
        }
    }

    private static DaemonConfiguration Parse(IReadOnlyList<string> args)
    {
        var arguments = new Arguments();
        for (int i = 0; i < args.Count; i++)
        {
            string option = args[i];
            if (option == "--vnet-hdr-support")
            {
                arguments.Plain[option] = "on";
                continue;
            }

            bool plain = ColoCompareObject.PlainOptions.Contains(option);
            if (!ValueOptions.TryGetValue(option, out Action<Arguments, string, string>? apply) && !plain)
            {
                throw new FormatException($"unknown option '{option}'");
            }

            if (i + 1 >= args.Count)
            {
                throw new FormatException($"option '{option}' needs a value");
            }

            string value = args[++i];
            if (apply is not null)
            {
                apply(arguments, option, value);
            }
            else if (!arguments.Plain.TryAdd(option, value))
            {
                throw new FormatException($"option '{option}' is given twice");
            }
        }

        return arguments.Build();
    }

    private static string Qmp(string option, string address)
    {
        try
        {
            _ = ColoChardev.Qmp.QmpEndpoint.Parse(address);
            return address;
        }
        catch (FormatException e)
        {
            throw new FormatException($"{option}: {e.Message}");
        }
    }

    /// <summary>The arguments read so far; <see cref="Build"/> checks how they fit together.</summary>
    private sealed class Arguments
    {
        public Dictionary<string, ChardevSocketSpec> Chardevs { get; } = new(StringComparer.Ordinal);

        public List<string> Objects { get; } = [];

        public Dictionary<string, string> Plain { get; } = new(StringComparer.Ordinal);

        public List<BypassRule> Bypass { get; } = [];

        public Dictionary<string, long> CaptureLimits { get; } = new(StringComparer.Ordinal);

        /// <summary>What every NIC shares (IPv6, VLAN, the queue budget), with <see cref="CompareOptions"/>'s defaults.</summary>
        public CompareOptions Common { get; set; } = new();

        public OutdevLimits Outdev { get; set; } = OutdevLimits.Default;

        public string? PrimaryQmp { get; set; }

        public string? SecondaryQmp { get; set; }

        public TimeSpan? Summary { get; set; }

        public MetricsEndpoint? Metrics { get; set; }

        public string? Control { get; set; }

        public string? CaptureDirectory { get; set; }

        public string? Restore { get; set; }

        public LogLevel? LogLevel { get; set; }

        public void AddChardev(string text)
        {
            if (!ChardevSocketSpec.TryParse(text, out ChardevSocketSpec? spec, out string? problem))
            {
                throw new FormatException(problem);
            }

            if (spec.Id is null)
            {
                throw new FormatException($"-chardev '{text}' needs an id=");
            }

            if (!Chardevs.TryAdd(spec.Id, spec))
            {
                throw new FormatException($"-chardev id '{spec.Id}' is defined twice");
            }
        }

        public DaemonConfiguration Build()
        {
            List<NicConfiguration> nics = Nics();
            ApplyRestore(nics);
            if (Bypass.Count > 0)
            {
                // Every NIC; the control socket's bypass-add/bypass-del change one NIC's list at run time.
                nics = [.. nics.Select(n => n with { Compare = n.Compare with { Bypass = Bypass } })];
            }

            var configuration = new DaemonConfiguration
            {
                Capture = Capture(),
                Nics = nics,
                PrimaryQmp = PrimaryQmp,
                SecondaryQmp = SecondaryQmp,
                Outdev = Outdev,
                Metrics = Metrics,
                ControlPath = Control,
            };
            configuration = Summary is TimeSpan summary ? configuration with { SummaryInterval = summary } : configuration;
            return LogLevel is LogLevel level ? configuration with { LogLevel = level } : configuration;
        }

        private List<NicConfiguration> Nics()
        {
            var nics = new List<NicConfiguration>();
            var used = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string text in Objects)
            {
                if (ColoCompareObject.Parse(text, Chardevs, Common) is not NicConfiguration nic)
                {
                    continue;
                }

                foreach (ChardevSocketSpec spec in new[] { nic.PrimaryIn, nic.SecondaryIn, nic.OutDev, nic.NotifyDev }.OfType<ChardevSocketSpec>())
                {
                    if (used.TryGetValue(spec.Id!, out string? other))
                    {
                        throw new FormatException($"chardev '{spec.Id}' is used by both colo-compare '{other}' and '{nic.Id}'");
                    }

                    used[spec.Id!] = nic.Id;
                }

                if (nics.Any(n => n.Id == nic.Id))
                {
                    throw new FormatException($"colo-compare id '{nic.Id}' is defined twice");
                }

                nics.Add(nic);
            }

            if (Plain.Count > 0)
            {
                if (nics.Count > 0)
                {
                    throw new FormatException($"option '{Plain.Keys.First()}' cannot be mixed with -object colo-compare: use one form or the other");
                }

                nics.Add(ColoCompareObject.ParsePlain(Plain, Common));
            }

            return nics.Count > 0
                ? nics
                : throw new FormatException("nothing to compare: give -object colo-compare,... with its -chardev options, or --primary-in, --secondary-in and --outdev");
        }

        private void ApplyRestore(List<NicConfiguration> nics)
        {
            if (Restore is not string restore)
            {
                return;
            }

            if (PrimaryQmp is null)
            {
                throw new FormatException("--restore-redirector needs --qmp: the redirector is re-created over the primary's QMP monitor");
            }

            (RedirectorRestore what, string? nicId) = ColoCompareObject.ParseRestore(restore);
            int index = nicId is null ? 0 : nics.FindIndex(n => n.Id == nicId);
            if (index < 0)
            {
                throw new FormatException($"--restore-redirector '{restore}': no colo-compare '{nicId}'");
            }

            if (nicId is null && nics.Count > 1)
            {
                throw new FormatException($"--restore-redirector '{restore}': say which colo-compare with nic=ID");
            }

            nics[index] = nics[index] with { RestoreRedirector = what };
        }

        private Captures.CaptureSettings? Capture()
        {
            if (CaptureDirectory is null)
            {
                return CaptureLimits.Count > 0 ? throw new FormatException($"'{CaptureLimits.Keys.First()}' needs --capture DIR") : null;
            }

            var defaults = new Captures.CaptureSettings(CaptureDirectory);
            return defaults with
            {
                FileBytes = CaptureLimits.TryGetValue("--capture-file-mb", out long mb) ? mb * 1024 * 1024 : defaults.FileBytes,
                Files = CaptureLimits.TryGetValue("--capture-files", out long files) ? (int)files : defaults.Files,
                PacketsPerSide = CaptureLimits.TryGetValue("--capture-packets", out long packets) ? (int)packets : defaults.PacketsPerSide,
            };
        }
    }
}
