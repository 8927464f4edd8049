using System.Text;

namespace ColoChardev.Daemon.Cluster;

/// <summary>
/// Splits a parameter such as <c>qemu_options</c> into words as <c>sh</c> would without expansions: blanks separate,
/// single quotes keep everything, double quotes keep everything but a backslash before <c>"</c> or <c>\</c>, a backslash
/// outside quotes keeps the next character. A resource parameter is one string; QEMU and the daemon take argument lists.
/// </summary>
internal static class ShellWords
{
    public static bool TrySplit(string text, out List<string> words, out string? error)
    {
        ArgumentNullException.ThrowIfNull(text);
        words = [];
        error = null;
        var word = new StringBuilder();
        bool inWord = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c is ' ' or '\t' or '\n' or '\r')
            {
                if (inWord)
                {
                    words.Add(word.ToString());
                    word.Clear();
                    inWord = false;
                }

                continue;
            }

            inWord = true;
            if (c == '\\')
            {
                if (++i == text.Length)
                {
                    error = "ends with a lone backslash";
                    return false;
                }

                word.Append(text[i]);
            }
            else if (c is '\'' or '"')
            {
                int close = c == '\'' ? text.IndexOf('\'', i + 1) : ClosingDoubleQuote(text, i + 1);
                if (close < 0)
                {
                    error = $"has an unmatched {c} at character {i + 1}";
                    return false;
                }

                AppendQuoted(word, text.AsSpan(i + 1, close - i - 1), c == '"');
                i = close;
            }
            else
            {
                word.Append(c);
            }
        }

        if (inWord)
        {
            words.Add(word.ToString());
        }

        return true;
    }

    private static int ClosingDoubleQuote(string text, int from)
    {
        for (int i = from; i < text.Length; i++)
        {
            if (text[i] == '\\' && i + 1 < text.Length && text[i + 1] is '"' or '\\')
            {
                i++;
            }
            else if (text[i] == '"')
            {
                return i;
            }
        }

        return -1;
    }

    private static void AppendQuoted(StringBuilder word, ReadOnlySpan<char> quoted, bool unescape)
    {
        for (int i = 0; i < quoted.Length; i++)
        {
            if (unescape && quoted[i] == '\\' && i + 1 < quoted.Length && quoted[i + 1] is '"' or '\\')
            {
                i++;
            }

            word.Append(quoted[i]);
        }
    }
}
