using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.Daemon.Engine;
using static ColoChardev.Daemon.Configuration.OptionValues;

namespace ColoChardev.Daemon.Configuration;

/// <summary>
/// One NIC from the command line: QEMU's <c>-object colo-compare,id=...,primary_in=...</c> (its chardevs named by
/// id, its properties in QEMU's syntax, <c>,,</c> included), or the plain options for a single NIC
/// (<c>--primary-in SPEC --secondary-in SPEC --outdev SPEC ...</c>). Defaults are <see cref="CompareOptions"/>'s.
/// </summary>
internal static class ColoCompareObject
{
    /// <summary>The plain form's options that take a value (besides the flag <c>--vnet-hdr-support</c>).</summary>
    public static readonly IReadOnlySet<string> PlainOptions = new HashSet<string>(StringComparer.Ordinal)
    {
        "--primary-in", "--secondary-in", "--outdev", "--notify-dev", "--compare-timeout", "--expired-scan-cycle", "--max-queue-size", "--vnet-hdr-support",
    };

    private static readonly HashSet<string> Properties = new(StringComparer.Ordinal)
    {
        "id", "primary_in", "secondary_in", "outdev", "notify_dev", "iothread", "compare_timeout", "expired_scan_cycle", "max_queue_size", "vnet_hdr_support",
    };

    /// <summary>A <c>-object</c> argument: a NIC, or null for an iothread (QEMU needs one for colo-compare; we have our own threads).</summary>
    /// <param name="common">The options every NIC shares (IPv6, VLAN, queue budget); the object's properties go on top.</param>
    public static NicConfiguration? Parse(string text, IReadOnlyDictionary<string, ChardevSocketSpec> chardevs, CompareOptions common)
    {
        List<string> parts = QemuOpts.Split(text);
        string type = parts[0].StartsWith("qom-type=", StringComparison.Ordinal) ? parts[0]["qom-type=".Length..] : parts[0];
        if (type == "iothread")
        {
            return null;
        }

        if (type != "colo-compare")
        {
            throw new FormatException($"-object '{text}': only colo-compare (and iothread, which is ignored) can be given here");
        }

        var properties = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string part in parts.Skip(1))
        {
            if (!QemuOpts.TrySplitPair(part, out string name, out string value))
            {
                throw new FormatException($"-object '{text}': '{part}' is not name=value");
            }

            if (!Properties.Contains(name))
            {
                throw new FormatException($"-object '{text}': unknown colo-compare property '{part}'");
            }

            if (!properties.TryAdd(name, value))
            {
                throw new FormatException($"-object '{text}': property '{name}' is given twice");
            }
        }

        ChardevSocketSpec Chardev(string property)
        {
            string name = Required(properties, property, text);
            return chardevs.TryGetValue(name, out ChardevSocketSpec? spec)
                ? spec
                : throw new FormatException($"-object '{text}': {property}={name} names no -chardev");
        }

        string id = Required(properties, "id", text);
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

        CompareOptions compare = WithQemuProperties(common, name => properties.GetValueOrDefault(name), name => name);
        return new NicConfiguration(id, primary, secondary, outdev, notify, compare);
    }

    /// <summary>The plain form (one NIC, <c>comp0</c>); a chardev spec without <c>id=</c> is named after its role.</summary>
    public static NicConfiguration ParsePlain(IReadOnlyDictionary<string, string> plain, CompareOptions common)
    {
        ChardevSocketSpec Spec(string option, string defaultId)
        {
            if (!plain.TryGetValue(option, out string? text))
            {
                throw new FormatException($"option '{option}' is required with the plain form");
            }

            if (!ChardevSocketSpec.TryParse(text, out ChardevSocketSpec? spec, out string? problem)
                || (spec.Id is null && !ChardevSocketSpec.TryParse(text + ",id=" + defaultId, out spec, out problem)))
            {
                throw new FormatException($"{option}: {problem}");
            }

            return spec;
        }

        ChardevSocketSpec primary = Spec("--primary-in", "primary_in");
        ChardevSocketSpec secondary = Spec("--secondary-in", "secondary_in");
        ChardevSocketSpec outdev = Spec("--outdev", "outdev");
        ChardevSocketSpec? notify = plain.ContainsKey("--notify-dev") ? Spec("--notify-dev", "notify_dev") : null;
        static string Option(string property) => "--" + property.Replace('_', '-');
        CompareOptions compare = WithQemuProperties(common, property => property == "vnet_hdr_support"
            ? (plain.ContainsKey("--vnet-hdr-support") ? "on" : null)
            : plain.GetValueOrDefault(Option(property)), Option);
        return new NicConfiguration("comp0", primary, secondary, outdev, notify, compare);
    }

    /// <summary><c>--restore-redirector REDIRECTOR,before=REDIRECTOR[,nic=ID]</c>.</summary>
    public static (RedirectorRestore What, string? Nic) ParseRestore(string text)
    {
        List<string> parts = QemuOpts.Split(text);
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

    /// <summary>QEMU's four properties over <paramref name="common"/>, each where given (its name in errors from <paramref name="spelled"/>).</summary>
    private static CompareOptions WithQemuProperties(CompareOptions common, Func<string, string?> given, Func<string, string> spelled)
    {
        CompareOptions o = common;
        if (given("compare_timeout") is string timeout)
        {
            o = o with { CompareTimeoutMs = Number(spelled("compare_timeout"), timeout, 1, uint.MaxValue) };
        }

        if (given("expired_scan_cycle") is string cycle)
        {
            o = o with { ExpiredScanCycleMs = Number(spelled("expired_scan_cycle"), cycle, 1, uint.MaxValue) };
        }

        if (given("max_queue_size") is string size)
        {
            o = o with { MaxQueueSize = (int)Number(spelled("max_queue_size"), size, 1, int.MaxValue) };
        }

        if (given("vnet_hdr_support") is string vnet)
        {
            o = o with { VnetHdrSupport = Boolean(spelled("vnet_hdr_support"), vnet) };
        }

        return o;
    }

    private static string Required(Dictionary<string, string> properties, string name, string text) =>
        properties.TryGetValue(name, out string? value) && value.Length > 0
            ? value
            : throw new FormatException($"-object '{text}': property '{name}' is required");
}
