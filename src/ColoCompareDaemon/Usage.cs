namespace ColoChardev.Daemon;

/// <summary>The text printed by <c>colo-compare --help</c>.</summary>
internal static class Usage
{
    public const string Text = """
        colo-compare - an external replacement for QEMU's -object colo-compare

        Usage:
          colo-compare --help                 this text
          colo-compare --version              print the version
          colo-compare check-chardev SPEC...  parse chardev socket specs and say how each would be opened
          colo-compare qmp ADDRESS COMMAND [JSON-ARGUMENTS]
                                              run one QMP command, print the reply as one line of JSON
          colo-compare qmp ADDRESS --events [NAME...]
                                              print QMP events as JSON lines until interrupted (Ctrl-C)
            ADDRESS: unix:/path (QEMU's -qmp unix:/path,server=on,...), a plain path, or tcp:HOST:PORT

        Chardev socket specs (QEMU's -chardev socket syntax):
          socket,id=ID,host=H,port=P[,server=on|off][,wait=on|off][,reconnect=SECONDS][,nodelay=on|off]
          socket,id=ID,path=/p[,server=on|off][,wait=on|off][,abstract=on][,peer-uid=UID]
          tcp:H:P[,server][,nowait]           unix:/path[,server][,nowait]
          Booleans: on/off, yes/no, true/false, a bare flag (server) or the no prefix (nowait).
          A TCP server with no host listens on loopback only; give host=0.0.0.0 to listen everywhere.
          peer-uid=UID (Unix sockets) refuses peers of any other user (SO_PEERCRED).

        Status: this build provides the chardev framing, endpoints, packet parsing, the comparator
        engine and the QMP client. The daemon that wires them to QEMU (-object colo-compare,
        --primary-in/--secondary-in/--outdev, QMP checkpoints) is not in it yet.

        Exit codes: 0 success, 1 the command failed (QMP error, connection), 2 bad command line.

        """;
}
