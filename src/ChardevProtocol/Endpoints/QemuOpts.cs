using System.Text;

namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>
/// QEMU's option-string syntax (QemuOpts), for <c>-chardev</c>, <c>-object</c> and the like: items separated by
/// commas, <c>,,</c> a literal comma, <c>key=value</c> items, and QEMU's spellings of a boolean. Callers decide
/// which keys exist and word their own errors.
/// </summary>
public static class QemuOpts
{
    /// <summary>The boolean spellings, for error messages.</summary>
    public const string BooleanSpellings = "on/off, yes/no or true/false";

    /// <summary>A value written into an option string: each comma doubled, which <see cref="Split"/> reads back as one.</summary>
    public static string Escape(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Replace(",", ",,", StringComparison.Ordinal);
    }

    /// <summary>
    /// Splits <paramref name="text"/> on commas, with <c>,,</c> read as a literal comma. Empty items are kept (a
    /// trailing comma gives one at the end), so the caller can refuse them in its own words.
    /// </summary>
    public static List<string> Split(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var items = new List<string>();
        var current = new StringBuilder();
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c != ',')
            {
                current.Append(c);
            }
            else if (i + 1 < text.Length && text[i + 1] == ',')
            {
                current.Append(',');
                i++;
            }
            else
            {
                items.Add(current.ToString());
                current.Clear();
            }
        }

        items.Add(current.ToString());
        return items;
    }

    /// <summary>Splits a <c>key=value</c> item at its first <c>=</c>; false when there is none or the key is empty.</summary>
    public static bool TrySplitPair(string item, out string key, out string value)
    {
        ArgumentNullException.ThrowIfNull(item);
        int eq = item.IndexOf('=', StringComparison.Ordinal);
        (key, value) = eq > 0 ? (item[..eq], item[(eq + 1)..]) : (string.Empty, string.Empty);
        return eq > 0;
    }

    /// <summary>QEMU's boolean spellings: on/off, yes/no, true/false, y/n.</summary>
    public static bool TryParseBoolean(string value, out bool result)
    {
        switch (value)
        {
            case "on" or "yes" or "true" or "y":
                result = true;
                return true;
            case "off" or "no" or "false" or "n":
                result = false;
                return true;
            default:
                result = false;
                return false;
        }
    }
}
