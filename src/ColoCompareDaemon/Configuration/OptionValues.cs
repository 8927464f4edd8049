using System.Globalization;
using ColoChardev.ChardevProtocol.Endpoints;

namespace ColoChardev.Daemon.Configuration;

/// <summary>Values of command-line options and object properties, checked, with one sentence naming the option when they are wrong.</summary>
internal static class OptionValues
{
    /// <summary>A whole number from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public static long Number(string name, string text, long min, long max) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long value) && value >= min && value <= max
            ? value
            : throw new FormatException($"'{name}={text}' must be a whole number from {min} to {max}");

    /// <summary>Seconds, with a fraction allowed (e.g. 0.25), down to a millisecond.</summary>
    public static TimeSpan Seconds(string name, string text, double min, double max) =>
        double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value) && value >= min && value <= max
            && (value == 0 || value >= 0.001)
            ? TimeSpan.FromMilliseconds(Math.Round(value * 1000))
            : throw new FormatException($"'{name}={text}' must be a number of seconds from {min} to {max} (fractions down to 0.001 allowed)");

    /// <summary>QEMU's boolean spellings (<see cref="QemuOpts.TryParseBoolean"/>).</summary>
    public static bool Boolean(string name, string text) =>
        QemuOpts.TryParseBoolean(text, out bool value) ? value : throw new FormatException($"'{name}={text}' is not a boolean (on/off, yes/no, true/false)");
}
