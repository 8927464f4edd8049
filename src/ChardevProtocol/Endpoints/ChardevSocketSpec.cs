using System.Globalization;
using System.Text;

namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>
/// A parsed QEMU <c>-chardev socket</c> option string. Accepted forms:
/// <list type="bullet">
/// <item><c>socket,id=ID,host=H,port=P[,server=on|off][,wait=on|off][,reconnect=SECONDS]</c></item>
/// <item><c>socket,id=ID,path=/p[,server=on|off][,wait=on|off][,abstract=on][,tight=on]</c> (abstract names are always tight: <c>tight=off</c> is refused)</item>
/// <item>the legacy <c>tcp:H:P[,server][,nowait]</c> and <c>unix:/path[,server][,nowait]</c></item>
/// </list>
/// Booleans take QEMU's spellings: on/off, yes/no, true/false, y/n, a bare flag (<c>server</c>) and the
/// <c>no</c> prefix (<c>nowait</c>). <c>,,</c> is a literal comma, as in QEMU.
/// Beyond QEMU: <c>peer-uid=UID</c> (Unix only) refuses peers of any other user.
/// </summary>
public sealed record ChardevSocketSpec
{
    private static readonly HashSet<string> UnsupportedOptions = new(StringComparer.Ordinal)
    {
        "to", "telnet", "tn3270", "websocket", "tls-creds", "tls-authz", "fd", "logfile", "logappend", "mux", "numeric", "keep-alive",
    };

    private static readonly HashSet<string> BooleanOptions = new(StringComparer.Ordinal)
    {
        "server", "wait", "nodelay", "ipv4", "ipv6", "abstract", "tight",
    };

    private ChardevSocketSpec(string text)
    {
        Text = text;
    }

    /// <summary>The option string as given.</summary>
    public string Text { get; }

    /// <summary>The chardev id (<c>id=</c>), if given.</summary>
    public string? Id { get; private init; }

    /// <summary>TCP or Unix.</summary>
    public ChardevTransport Transport { get; private init; }

    /// <summary>TCP host or address. For a server without a host this is <c>127.0.0.1</c> (see <see cref="HostDefaulted"/>).</summary>
    public string? Host { get; private init; }

    /// <summary>TCP port (0 for a server means "any free port").</summary>
    public int Port { get; private init; }

    /// <summary>Unix socket path.</summary>
    public string? Path { get; private init; }

    /// <summary>Unix socket in the abstract namespace (<c>abstract=on</c>).</summary>
    public bool Abstract { get; private init; }

    /// <summary>Listen and accept (server=on) rather than connect.</summary>
    public bool Server { get; private init; }

    /// <summary>
    /// For a server: wait for the first peer before going on (QEMU's default for servers is on).
    /// Always false for a client.
    /// </summary>
    public bool Wait { get; private init; }

    /// <summary>
    /// For a client: QEMU's <c>reconnect=SECONDS</c> (or <c>reconnect-ms</c>). We always reconnect; this is the
    /// longest pause between attempts.
    /// </summary>
    public TimeSpan? Reconnect { get; private init; }

    /// <summary><c>nodelay</c>: null when not given (we then disable Nagle: frames are flushed in batches).</summary>
    public bool? NoDelay { get; private init; }

    /// <summary><c>ipv4=on</c>: use IPv4 only.</summary>
    public bool Ipv4Only { get; private init; }

    /// <summary><c>ipv6=on</c>: use IPv6 only.</summary>
    public bool Ipv6Only { get; private init; }

    /// <summary>True when a TCP server was given no host and binds the loopback address instead of all interfaces.</summary>
    public bool HostDefaulted { get; private init; }

    /// <summary>Only peers of this uid are accepted (checked with SO_PEERCRED). Unix sockets only.</summary>
    public uint? PeerUid { get; private init; }

    /// <summary>A short name for logs: the id, else the option string.</summary>
    public string DisplayName => Id ?? Text;

    /// <summary>Where this endpoint listens or connects to, for logs.</summary>
    public string Address => Transport == ChardevTransport.Tcp
        ? (Host!.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port}" : $"{Host}:{Port}")
        : (Abstract ? "@" + Path : Path!);

    /// <summary>Parses a chardev socket spec.</summary>
    /// <exception cref="ChardevSpecException">The text is not a usable socket chardev; the message quotes it.</exception>
    public static ChardevSocketSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!TryParse(text, out ChardevSocketSpec? spec, out string? error))
        {
            throw new ChardevSpecException(error);
        }

        return spec;
    }

    /// <summary>Parses a chardev socket spec; on failure <paramref name="error"/> says what is wrong and quotes it.</summary>
    public static bool TryParse(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ChardevSocketSpec? spec, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        ArgumentNullException.ThrowIfNull(text);
        spec = null;
        if (!Tokenize(text, out List<string> tokens, out error))
        {
            return false;
        }

        var options = new Dictionary<string, string?>(StringComparer.Ordinal);
        int first = 0;
        string head = tokens[0];
        if (head.StartsWith("tcp:", StringComparison.Ordinal))
        {
            if (!SplitLegacyTcp(head["tcp:".Length..], out string host, out string port))
            {
                error = $"invalid legacy TCP chardev '{head}' in '{text}': expected tcp:HOST:PORT";
                return false;
            }

            options["host"] = host;
            options["port"] = port;
            first = 1;
        }
        else if (head.StartsWith("unix:", StringComparison.Ordinal))
        {
            options["path"] = head["unix:".Length..];
            first = 1;
        }
        else if (!head.Contains('=', StringComparison.Ordinal))
        {
            if (head != "socket")
            {
                error = $"chardev backend '{head}' in '{text}' is not supported: colo-compare needs a socket chardev (socket,..., tcp:..., unix:...)";
                return false;
            }

            first = 1;
        }

        for (int i = first; i < tokens.Count; i++)
        {
            if (!AddOption(tokens[i], text, options, out error))
            {
                return false;
            }
        }

        return Build(text, options, out spec, out error);
    }

    /// <summary>Splits on commas, with QEMU's <c>,,</c> escape for a literal comma (<see cref="QemuOpts.Split"/>); no item may be empty.</summary>
    private static bool Tokenize(string text, out List<string> tokens, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        tokens = [];
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "empty chardev spec";
            return false;
        }

        tokens = QemuOpts.Split(text);
        if (tokens.Any(t => t.Length == 0))
        {
            error = $"empty option in chardev spec '{text}'";
            return false;
        }

        return true;
    }

    private static bool SplitLegacyTcp(string address, out string host, out string port)
    {
        host = string.Empty;
        port = string.Empty;
        if (address.StartsWith('['))
        {
            int close = address.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || close + 1 >= address.Length || address[close + 1] != ':')
            {
                return false;
            }

            host = address[1..close];
            port = address[(close + 2)..];
            return port.Length > 0;
        }

        int colon = address.LastIndexOf(':');
        if (colon < 0 || address.IndexOf(':', StringComparison.Ordinal) != colon)
        {
            return false;
        }

        host = address[..colon];
        port = address[(colon + 1)..];
        return port.Length > 0;
    }

    private static bool AddOption(string token, string text, Dictionary<string, string?> options, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        error = null;
        string key;
        string? value;
        int eq = token.IndexOf('=', StringComparison.Ordinal);
        if (eq >= 0)
        {
            key = token[..eq];
            value = token[(eq + 1)..];
        }
        else if (BooleanOptions.Contains(token))
        {
            // A bare flag means on (QEMU's short-form boolean).
            key = token;
            value = "on";
        }
        else if (token.StartsWith("no", StringComparison.Ordinal) && BooleanOptions.Contains(token[2..]))
        {
            key = token[2..];
            value = "off";
        }
        else
        {
            key = token;
            value = null;
        }

        if (key == "backend" && value == "socket")
        {
            return true;
        }

        if (UnsupportedOptions.Contains(key))
        {
            error = $"chardev option '{token}' in '{text}' is not supported by colo-compare";
            return false;
        }

        if (!BooleanOptions.Contains(key) && key is not ("id" or "host" or "port" or "path" or "reconnect" or "reconnect-ms" or "peer-uid"))
        {
            error = $"unknown chardev option '{token}' in '{text}'";
            return false;
        }

        if (value is null)
        {
            error = $"chardev option '{token}' in '{text}' needs a value ({key}=...)";
            return false;
        }

        if (options.ContainsKey(key))
        {
            error = $"chardev option '{key}' is given twice in '{text}'";
            return false;
        }

        options[key] = value;
        return true;
    }

    private static bool TryParseBool(string key, string value, string text, out bool result, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        error = QemuOpts.TryParseBoolean(value, out result) ? null : $"chardev option '{key}={value}' in '{text}' is not a boolean (use {QemuOpts.BooleanSpellings})";
        return error is null;
    }

    private static bool Build(string text, Dictionary<string, string?> options, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ChardevSocketSpec? spec, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        spec = null;
        var flags = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (string name in BooleanOptions)
        {
            if (options.TryGetValue(name, out string? raw))
            {
                if (!TryParseBool(name, raw!, text, out bool flag, out error))
                {
                    return false;
                }

                flags[name] = flag;
            }
        }

        options.TryGetValue("host", out string? host);
        options.TryGetValue("port", out string? portText);
        options.TryGetValue("path", out string? path);
        options.TryGetValue("id", out string? id);
        if (id is { Length: 0 })
        {
            error = $"chardev option 'id=' in '{text}' is empty";
            return false;
        }

        if (path is not null && (host is not null || portText is not null))
        {
            error = $"chardev spec '{text}' gives both a TCP address (host/port) and a Unix path";
            return false;
        }

        if (path is null && portText is null)
        {
            error = host is null
                ? $"chardev spec '{text}' needs host= and port=, or path="
                : $"chardev spec '{text}' gives host= but no port=";
            return false;
        }

        bool server = flags.GetValueOrDefault("server");
        if (!server && flags.ContainsKey("wait"))
        {
            error = $"chardev option 'wait' in '{text}' is incompatible with a client (server=off) socket";
            return false;
        }

        if (!TryReconnect(text, options, server, out TimeSpan? reconnect, out error) || !TryPeerUid(text, options, out uint? peerUid, out error))
        {
            return false;
        }

        if (path is not null)
        {
            return BuildUnix(text, options, flags, id, path, server, reconnect, peerUid, out spec, out error);
        }

        return BuildTcp(text, options, flags, id, host, portText!, server, reconnect, out spec, out error);
    }

    /// <summary><c>reconnect=SECONDS</c> or <c>reconnect-ms=MS</c> (QEMU 9.2+), clients only; 0 keeps the daemon's own pause.</summary>
    private static bool TryReconnect(string text, Dictionary<string, string?> options, bool server, out TimeSpan? reconnect, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        reconnect = null;
        error = null;
        bool hasReconnect = options.ContainsKey("reconnect");
        bool hasReconnectMs = options.ContainsKey("reconnect-ms");
        if (hasReconnect && hasReconnectMs)
        {
            error = $"chardev spec '{text}' gives both reconnect= and reconnect-ms=";
            return false;
        }

        if (server && (hasReconnect || hasReconnectMs))
        {
            error = $"chardev option '{(hasReconnect ? "reconnect" : "reconnect-ms")}' in '{text}' is incompatible with a server (server=on) socket";
            return false;
        }

        if (hasReconnect || hasReconnectMs)
        {
            string key = hasReconnect ? "reconnect" : "reconnect-ms";
            string raw = options[key]!;
            if (!long.TryParse(raw, NumberStyles.None, CultureInfo.InvariantCulture, out long amount) || amount > int.MaxValue)
            {
                error = $"chardev option '{key}={raw}' in '{text}' is not a non-negative integer";
                return false;
            }

            // QEMU's reconnect=0 means "never reconnect"; a daemon always reconnects, so 0 keeps our default pause.
            if (amount > 0)
            {
                reconnect = hasReconnect ? TimeSpan.FromSeconds(amount) : TimeSpan.FromMilliseconds(amount);
            }
        }

        return true;
    }

    /// <summary><c>peer-uid=UID</c>: only peers of that user are accepted (ours; Unix sockets only).</summary>
    private static bool TryPeerUid(string text, Dictionary<string, string?> options, out uint? peerUid, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        error = null;
        peerUid = null;
        if (options.TryGetValue("peer-uid", out string? uidText))
        {
            if (!uint.TryParse(uidText, NumberStyles.None, CultureInfo.InvariantCulture, out uint uid))
            {
                error = $"chardev option 'peer-uid={uidText}' in '{text}' is not a numeric uid";
                return false;
            }

            peerUid = uid;
        }

        return true;
    }

    private static bool BuildTcp(
        string text,
        Dictionary<string, string?> options,
        Dictionary<string, bool> flags,
        string? id,
        string? host,
        string portText,
        bool server,
        TimeSpan? reconnect,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ChardevSocketSpec? spec,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        spec = null;
        foreach (string unixOnly in new[] { "abstract", "tight", "peer-uid" })
        {
            if (options.ContainsKey(unixOnly))
            {
                error = $"chardev option '{unixOnly}' in '{text}' applies only to Unix sockets (path=)";
                return false;
            }
        }

        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > 65535 || (port == 0 && !server))
        {
            error = $"chardev option 'port={portText}' in '{text}' is not a valid TCP port{(server ? string.Empty : " (1-65535)")}";
            return false;
        }

        bool ipv4 = flags.GetValueOrDefault("ipv4");
        bool ipv6 = flags.GetValueOrDefault("ipv6");
        if (ipv4 && ipv6)
        {
            error = $"chardev spec '{text}' asks for both ipv4=on and ipv6=on";
            return false;
        }

        bool hostDefaulted = string.IsNullOrEmpty(host);
        if (hostDefaulted)
        {
            // QEMU would listen on every interface; we bind loopback unless an address is given explicitly.
            host = ipv6 ? "::1" : "127.0.0.1";
        }

        spec = new ChardevSocketSpec(text)
        {
            Id = id,
            Transport = ChardevTransport.Tcp,
            Host = host,
            Port = port,
            Server = server,
            Wait = server && flags.GetValueOrDefault("wait", true),
            Reconnect = reconnect,
            NoDelay = flags.TryGetValue("nodelay", out bool nodelay) ? nodelay : null,
            Ipv4Only = ipv4,
            Ipv6Only = ipv6,
            HostDefaulted = hostDefaulted && server,
        };
        error = null;
        return true;
    }

    private static bool BuildUnix(
        string text,
        Dictionary<string, string?> options,
        Dictionary<string, bool> flags,
        string? id,
        string path,
        bool server,
        TimeSpan? reconnect,
        uint? peerUid,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ChardevSocketSpec? spec,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        spec = null;
        if (path.Length == 0)
        {
            error = $"chardev spec '{text}' has an empty Unix path";
            return false;
        }

        foreach (string tcpOnly in new[] { "ipv4", "ipv6" })
        {
            if (options.ContainsKey(tcpOnly))
            {
                error = $"chardev option '{tcpOnly}' in '{text}' applies only to TCP sockets (host=, port=)";
                return false;
            }
        }

        bool isAbstract = flags.GetValueOrDefault("abstract");
        if (!isAbstract && options.ContainsKey("tight"))
        {
            error = $"chardev option 'tight' in '{text}' applies only with abstract=on";
            return false;
        }

        if (isAbstract && !flags.GetValueOrDefault("tight", true))
        {
            error = $"chardev option 'tight=off' in '{text}' is not supported: abstract socket names are always tight here";
            return false;
        }

        // sun_path holds 108 bytes including the terminating NUL (or the leading NUL of an abstract name).
        if (Encoding.UTF8.GetByteCount(path) > 107)
        {
            error = $"Unix socket path in '{text}' is longer than the 107 bytes a socket address holds";
            return false;
        }

        spec = new ChardevSocketSpec(text)
        {
            Id = id,
            Transport = ChardevTransport.Unix,
            Path = path,
            Abstract = isAbstract,
            Server = server,
            Wait = server && flags.GetValueOrDefault("wait", true),
            Reconnect = reconnect,
            NoDelay = flags.TryGetValue("nodelay", out bool nodelay) ? nodelay : null,
            PeerUid = peerUid,
        };
        error = null;
        return true;
    }
}
