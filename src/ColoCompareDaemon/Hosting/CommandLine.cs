using System.Globalization;
using CompareOptions = ColoChardev.Daemon.Engine.CompareOptions;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Engine;
using Microsoft.Extensions.Logging;

namespace ColoChardev.Daemon.Hosting;

/// <summary>
/// Parses the daemon's command line, in QEMU's own syntax (<c>-chardev socket,...</c>, <c>-object colo-compare,...</c>,
/// several NICs allowed) or with plain options for one NIC (<c>--primary-in SPEC --secondary-in SPEC --outdev SPEC</c>).
/// Errors are one sentence naming the offending argument.
/// </summary>
public static class CommandLine
{
    private static readonly HashSet<string> PlainNicOptions = new(StringComparer.Ordinal)
    {
        "--primary-in", "--secondary-in", "--outdev", "--notify-dev", "--compare-timeout", "--expired-scan-cycle", "--max-queue-size", "--vnet-hdr-support",
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
        var chardevs = new Dictionary<string, ChardevSocketSpec>(StringComparer.Ordinal);
        var objects = new List<string>();
        var plain = new Dictionary<string, string>(StringComparer.Ordinal);
        string? primaryQmp = null;
        string? secondaryQmp = null;
        TimeSpan summary = TimeSpan.FromSeconds(60);
        OutdevLimits outdev = OutdevLimits.Default;
        MetricsEndpoint? metrics = null;
        string? control = null;
        string? captureDirectory = null;
        var captureLimits = new Dictionary<string, long>(StringComparer.Ordinal);
        var bypass = new List<BypassRule>();
        LogLevel logLevel = LogLevel.Information;
        bool compareIpv6 = true;
        bool compareVlan = true;
        long queueBudget = new CompareOptions().QueueBudgetBytes;
        string? restore = null;
        for (int i = 0; i < args.Count; i++)
        {
            string option = args[i];
            string Value()
            {
                if (i + 1 >= args.Count)
                {
                    throw new FormatException($"option '{option}' needs a value");
                }

                return args[++i];
            }

            switch (option)
            {
                case "-chardev" or "--chardev":
                    string text = Value();
                    if (!ChardevSocketSpec.TryParse(text, out ChardevSocketSpec? spec, out string? problem))
                    {
                        throw new FormatException(problem);
                    }

                    if (spec.Id is null)
                    {
                        throw new FormatException($"-chardev '{text}' needs an id=");
                    }

                    if (!chardevs.TryAdd(spec.Id, spec))
                    {
                        throw new FormatException($"-chardev id '{spec.Id}' is defined twice");
                    }

                    break;
                case "-object" or "--object":
                    objects.Add(Value());
                    break;
                case "--qmp":
                    primaryQmp = Value();
                    CheckQmp(option, primaryQmp);
                    break;
                case "--secondary-qmp":
                    secondaryQmp = Value();
                    CheckQmp(option, secondaryQmp);
                    break;
                case "--summary-interval":
                    summary = Seconds(option, Value(), 0, 86_400);
                    break;
                case "--bypass":
                    bypass.Add(BypassRule.Parse(Value()));
                    break;
                case "--control":
                    control = Value();
                    if (control.Length == 0 || control.Length > 107)
                    {
                        throw new FormatException($"'--control={control}' must be a socket path of 1 to 107 bytes");
                    }

                    break;
                case "--metrics":
                    metrics = MetricsEndpoint.Parse(option, Value());
                    break;
                case "--capture":
                    captureDirectory = Value();
                    if (captureDirectory.Length == 0)
                    {
                        throw new FormatException("'--capture' needs a directory");
                    }

                    break;
                case "--capture-file-mb":
                    captureLimits[option] = Number(option, Value(), 1, 64 * 1024);
                    break;
                case "--capture-files":
                    captureLimits[option] = Number(option, Value(), 1, 100_000);
                    break;
                case "--capture-packets":
                    captureLimits[option] = Number(option, Value(), 1, 65_536);
                    break;
                case "--outdev-backlog-mb":
                    outdev = outdev with { BacklogBytes = Number(option, Value(), 1, 1 << 20) * 1024L * 1024 };
                    break;
                case "--outdev-stall-ms":
                    outdev = outdev with { StallMs = Number(option, Value(), 1, 3_600_000) };
                    break;
                case "--outdev-hold-ms":
                    outdev = outdev with { HoldMs = Number(option, Value(), 0, 3_600_000) };
                    break;
                case "--queue-budget-mb":
                    queueBudget = Number(option, Value(), 1, 1 << 20) * 1024L * 1024;
                    break;
                case "--compare-ipv6":
                    compareIpv6 = Boolean(option, Value());
                    break;
                case "--restore-redirector":
                    restore = Value();
                    break;
                case "--compare-vlan":
                    compareVlan = Boolean(option, Value());
                    break;
                case "--log-level":
                    string level = Value();
                    if (!Enum.TryParse(level, ignoreCase: true, out logLevel) || !Enum.IsDefined(logLevel))
                    {
                        throw new FormatException($"option '--log-level' value '{level}' is not one of trace, debug, information, warning, error, critical");
                    }

                    break;
                case "--vnet-hdr-support":
                    plain[option] = "on";
                    break;
                default:
                    if (PlainNicOptions.Contains(option))
                    {
                        if (!plain.TryAdd(option, Value()))
                        {
                            throw new FormatException($"option '{option}' is given twice");
                        }

                        break;
                    }

                    throw new FormatException($"unknown option '{option}'");
            }
        }

        var nics = new List<NicConfiguration>();
        var used = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string text in objects)
        {
            NicConfiguration? nic = ParseObject(text, chardevs, compareIpv6, compareVlan, queueBudget);
            if (nic is null)
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

        if (plain.Count > 0)
        {
            if (nics.Count > 0)
            {
                throw new FormatException($"option '{plain.Keys.First()}' cannot be mixed with -object colo-compare: use one form or the other");
            }

            nics.Add(ParsePlain(plain, compareIpv6, compareVlan, queueBudget));
        }

        if (nics.Count == 0)
        {
            throw new FormatException("nothing to compare: give -object colo-compare,... with its -chardev options, or --primary-in, --secondary-in and --outdev");
        }

        if (restore is not null)
        {
            if (primaryQmp is null)
            {
                throw new FormatException("--restore-redirector needs --qmp: the redirector is re-created over the primary's QMP monitor");
            }

            (RedirectorRestore what, string? nicId) = ParseRestore(restore);
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

        if (bypass.Count > 0)
        {
            // Every NIC; the control socket's bypass-add/bypass-del change one NIC's list at run time.
            nics = [.. nics.Select(n => n with { Compare = n.Compare with { Bypass = bypass } })];
        }

        Captures.CaptureSettings? capture = null;
        if (captureDirectory is not null)
        {
            var defaults = new Captures.CaptureSettings(captureDirectory);
            capture = defaults with
            {
                FileBytes = captureLimits.TryGetValue("--capture-file-mb", out long mb) ? mb * 1024 * 1024 : defaults.FileBytes,
                Files = captureLimits.TryGetValue("--capture-files", out long files) ? (int)files : defaults.Files,
                PacketsPerSide = captureLimits.TryGetValue("--capture-packets", out long packets) ? (int)packets : defaults.PacketsPerSide,
            };
        }
        else if (captureLimits.Count > 0)
        {
            throw new FormatException($"'{captureLimits.Keys.First()}' needs --capture DIR");
        }

        return new DaemonConfiguration
        {
            Capture = capture,
            Nics = nics,
            PrimaryQmp = primaryQmp,
            SecondaryQmp = secondaryQmp,
            SummaryInterval = summary,
            Outdev = outdev,
            Metrics = metrics,
            ControlPath = control,
            LogLevel = logLevel,
        };
    }

    private static NicConfiguration? ParseObject(string text, Dictionary<string, ChardevSocketSpec> chardevs, bool compareIpv6, bool compareVlan, long queueBudget)
    {
        string[] parts = text.Split(',');
        string type = parts[0].StartsWith("qom-type=", StringComparison.Ordinal) ? parts[0]["qom-type=".Length..] : parts[0];
        if (type == "iothread")
        {
            return null; // QEMU needs one for colo-compare; we have our own threads.
        }

        if (type != "colo-compare")
        {
            throw new FormatException($"-object '{text}': only colo-compare (and iothread, which is ignored) can be given here");
        }

        var properties = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string part in parts.Skip(1))
        {
            int eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new FormatException($"-object '{text}': '{part}' is not name=value");
            }

            string name = part[..eq];
            if (name is not ("id" or "primary_in" or "secondary_in" or "outdev" or "notify_dev" or "iothread" or "compare_timeout" or "expired_scan_cycle" or "max_queue_size" or "vnet_hdr_support"))
            {
                throw new FormatException($"-object '{text}': unknown colo-compare property '{part}'");
            }

            if (!properties.TryAdd(name, part[(eq + 1)..]))
            {
                throw new FormatException($"-object '{text}': property '{name}' is given twice");
            }
        }

        string id = Required(properties, "id", text);
        ChardevSocketSpec Chardev(string property)
        {
            string name = Required(properties, property, text);
            return chardevs.TryGetValue(name, out ChardevSocketSpec? spec)
                ? spec
                : throw new FormatException($"-object '{text}': {property}={name} names no -chardev");
        }

        ChardevSocketSpec primary = Chardev("primary_in");
        ChardevSocketSpec secondary = Chardev("secondary_in");
        ChardevSocketSpec outdev = Chardev("outdev");
        ChardevSocketSpec? notify = properties.ContainsKey("notify_dev") ? Chardev("notify_dev") : null;
        string[] ids = new[] { primary.Id!, secondary.Id!, outdev.Id!, notify?.Id }.OfType<string>().ToArray();
        if (ids.Distinct(StringComparer.Ordinal).Count() != ids.Length)
        {
            // QEMU's own wording (spec §2.1).
            throw new FormatException($"-object '{text}': 'indev' and 'outdev' could not be same for compare module");
        }

        var compare = new CompareOptions
        {
            CompareTimeoutMs = properties.TryGetValue("compare_timeout", out string? timeout) ? Number("compare_timeout", timeout, 1, uint.MaxValue) : 3000,
            ExpiredScanCycleMs = properties.TryGetValue("expired_scan_cycle", out string? cycle) ? Number("expired_scan_cycle", cycle, 1, uint.MaxValue) : 1000,
            MaxQueueSize = properties.TryGetValue("max_queue_size", out string? size) ? (int)Number("max_queue_size", size, 1, int.MaxValue) : 1024,
            VnetHdrSupport = properties.TryGetValue("vnet_hdr_support", out string? vnet) && Boolean("vnet_hdr_support", vnet),
            CompareIpv6 = compareIpv6,
            CompareVlan = compareVlan,
            QueueBudgetBytes = queueBudget,
        };
        return new NicConfiguration(id, primary, secondary, outdev, notify, compare);
    }

    private static NicConfiguration ParsePlain(Dictionary<string, string> plain, bool compareIpv6, bool compareVlan, long queueBudget)
    {
        ChardevSocketSpec Spec(string option, string defaultId, bool required)
        {
            if (!plain.TryGetValue(option, out string? text))
            {
                return required ? throw new FormatException($"option '{option}' is required with the plain form") : null!;
            }

            if (!ChardevSocketSpec.TryParse(text, out ChardevSocketSpec? spec, out string? problem))
            {
                throw new FormatException($"{option}: {problem}");
            }

            if (spec.Id is null && !ChardevSocketSpec.TryParse(text + ",id=" + defaultId, out spec, out problem))
            {
                throw new FormatException($"{option}: {problem}");
            }

            return spec;
        }

        ChardevSocketSpec primary = Spec("--primary-in", "primary_in", required: true);
        ChardevSocketSpec secondary = Spec("--secondary-in", "secondary_in", required: true);
        ChardevSocketSpec outdev = Spec("--outdev", "outdev", required: true);
        ChardevSocketSpec? notify = plain.ContainsKey("--notify-dev") ? Spec("--notify-dev", "notify_dev", required: true) : null;
        var compare = new CompareOptions
        {
            CompareTimeoutMs = plain.TryGetValue("--compare-timeout", out string? timeout) ? Number("--compare-timeout", timeout, 1, uint.MaxValue) : 3000,
            ExpiredScanCycleMs = plain.TryGetValue("--expired-scan-cycle", out string? cycle) ? Number("--expired-scan-cycle", cycle, 1, uint.MaxValue) : 1000,
            MaxQueueSize = plain.TryGetValue("--max-queue-size", out string? size) ? (int)Number("--max-queue-size", size, 1, int.MaxValue) : 1024,
            VnetHdrSupport = plain.ContainsKey("--vnet-hdr-support"),
            CompareIpv6 = compareIpv6,
            CompareVlan = compareVlan,
            QueueBudgetBytes = queueBudget,
        };
        return new NicConfiguration("comp0", primary, secondary, outdev, notify, compare);
    }

    private static (RedirectorRestore What, string? Nic) ParseRestore(string text)
    {
        string[] parts = text.Split(',');
        string? before = null;
        string? nic = null;
        foreach (string part in parts.Skip(1))
        {
            if (part.StartsWith("before=", StringComparison.Ordinal))
            {
                before = part["before=".Length..];
            }
            else if (part.StartsWith("nic=", StringComparison.Ordinal))
            {
                nic = part["nic=".Length..];
            }
            else
            {
                throw new FormatException($"--restore-redirector '{text}': unknown part '{part}' (expected REDIRECTOR,before=REDIRECTOR[,nic=ID])");
            }
        }

        if (parts[0].Length == 0 || string.IsNullOrEmpty(before))
        {
            throw new FormatException($"--restore-redirector '{text}' must be REDIRECTOR,before=REDIRECTOR (e.g. redire0,before=redire1)");
        }

        return (new RedirectorRestore(parts[0], before), nic);
    }

    private static string Required(Dictionary<string, string> properties, string name, string text) =>
        properties.TryGetValue(name, out string? value) && value.Length > 0
            ? value
            : throw new FormatException($"-object '{text}': property '{name}' is required");

    private static long Number(string name, string text, long min, long max) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long value) && value >= min && value <= max
            ? value
            : throw new FormatException($"'{name}={text}' must be a whole number from {min} to {max}");

    /// <summary>Seconds, with a fraction allowed (e.g. 0.25), down to a millisecond.</summary>
    private static TimeSpan Seconds(string name, string text, double min, double max) =>
        double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value) && value >= min && value <= max
            && (value == 0 || value >= 0.001)
            ? TimeSpan.FromMilliseconds(Math.Round(value * 1000))
            : throw new FormatException($"'{name}={text}' must be a number of seconds from {min} to {max} (fractions down to 0.001 allowed)");

    private static bool Boolean(string name, string text) => text switch
    {
        "on" or "yes" or "true" or "y" => true,
        "off" or "no" or "false" or "n" => false,
        _ => throw new FormatException($"'{name}={text}' is not a boolean (on/off, yes/no, true/false)"),
    };

    private static void CheckQmp(string option, string address)
    {
        try
        {
            _ = Qmp.QmpEndpoint.Parse(address);
        }
        catch (FormatException e)
        {
            throw new FormatException($"{option}: {e.Message}");
        }
    }
}
