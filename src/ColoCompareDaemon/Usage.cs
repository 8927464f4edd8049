namespace ColoChardev.Daemon;

/// <summary>The text printed by <c>colo-compare --help</c>.</summary>
internal static class Usage
{
    public const string Text = """
        colo-compare - an external replacement for QEMU's -object colo-compare

        Run the comparator, in QEMU's own syntax (one -object colo-compare per NIC):
          colo-compare -chardev socket,id=compare0-0,host=127.0.0.1,port=9001
                       -chardev socket,id=compare1,host=0.0.0.0,port=9004,server=on,wait=off
                       -chardev socket,id=compare_out0,host=127.0.0.1,port=9005
                       -object colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0
                               [,notify_dev=ID][,compare_timeout=MS][,expired_scan_cycle=MS][,max_queue_size=N]
                               [,vnet_hdr_support=on][,iothread=ID (ignored)]
                       [--qmp ADDRESS] [--secondary-qmp ADDRESS] [OPTIONS]
        or with plain options for one NIC:
          colo-compare --primary-in SPEC --secondary-in SPEC --outdev SPEC [--notify-dev SPEC]
                       [--compare-timeout MS] [--expired-scan-cycle MS] [--max-queue-size N] [--vnet-hdr-support]
                       [--qmp ADDRESS] [--secondary-qmp ADDRESS] [OPTIONS]

        Checkpoints: with --qmp (the primary QEMU's monitor) a checkpoint is requested by re-sending the current
        x-checkpoint-delay; queued packets are released once the secondary holds the new state: at the secondary's
        RESUME (--secondary-qmp), else at the primary's. COLO_EXIT on the primary means failover: everything is
        released and primary traffic passes through. With notify_dev, Xen's DO_CHECKPOINT/COLO_CHECKPOINT are used.

        OPTIONS
          --restore-redirector ID,before=ID2[,nic=NIC]
                                 after each outdev connection re-create the primary's filter-redirector ID (the one
                                 reading outdev) before ID2 over --qmp: QEMU up to 10.2 stops reading it for good
                                 after its peer left once
          --bypass RULE          pass matching flows uncompared, never a reason to checkpoint (repeatable; every NIC):
                                 proto=tcp|udp|icmp|icmpv6|N, host=ADDRESS[/PREFIX], port=N[-M]; host and port
                                 match either end, e.g. --bypass proto=tcp,port=3389
          --control PATH         a control socket (Unix, mode 0600, QMP-shaped JSON lines): colo-compare status|stats|
                                 events PATH, qom-set of compare_timeout, expired_scan_cycle, max_queue_size at run time,
                                 and chardev-drop-peer (make one chardev's peer reconnect)
          --capture DIR          write every divergence (the flow's queued packets of both sides, the diverging
                                 pair marked, the reason in each packet's comment) to DIR/NIC-NNNNNN.pcapng for
                                 Wireshark/tshark; files rotate at --capture-file-mb N (default 16), the newest
                                 --capture-files N (default 8) are kept, --capture-packets N per side (default 64)
          --metrics [HOST:]PORT  serve Prometheus metrics at http://HOST:PORT/metrics (HOST defaults to 127.0.0.1;
                                 0.0.0.0 for every interface): frames, releases, drops, mismatches and checkpoint
                                 requests by reason, queues, flows, endpoints; labelled per NIC, never per flow
          --summary-interval S   log a one-line summary every S seconds (default 60, 0 for never, fractions
                                 such as 0.25 allowed)
          --outdev-backlog-mb N  released frames held for a slow or absent outdev (default 4, about 34 ms at 1 Gbit/s);
                                 when it is full, reading primary_in and secondary_in pauses (back-pressure)
          --outdev-stall-ms MS   how long the inputs stay paused while outdev takes no bytes at all (default 1000);
                                 then reading resumes and what does not fit in the backlog is dropped and counted
          --outdev-hold-ms MS    how long a released frame waits for an outdev peer while none is connected
                                 (default 2000, 0: none); older ones are dropped and counted
          --queue-budget-mb N    memory the comparison may hold (default 64): queued frames and the flow table;
                                 from 3/4 of it the input that is ahead is no longer read (back-pressure) until
                                 the queues are down to half or a checkpoint is outstanding; at the bound idle
                                 flows are forgotten first, then packets dropped and counted
          --queue-stall-ms MS    how long such a pause lasts while that input's queue does not shrink (default
                                 200): then a checkpoint is requested and reading resumes; 0: never pause
          --compare-ipv6 on|off, --compare-vlan on|off
                                 compare IPv6 / VLAN-tagged traffic (default on; off passes it uncompared, as QEMU 7.2)
          --log-level LEVEL      trace, debug, information (default), warning, error

        Other commands:
          colo-compare --help | --version
          colo-compare check-chardev SPEC...  parse chardev socket specs and say how each would be opened
          colo-compare qmp ADDRESS COMMAND [JSON-ARGUMENTS]
                                              run one QMP command, print the reply as one line of JSON
          colo-compare qmp ADDRESS --events [NAME...]
                                              print QMP events as JSON lines until interrupted (Ctrl-C)
          colo-compare status PATH            a running daemon's endpoints, options, queues, last checkpoints
          colo-compare stats PATH             its counters (PATH: its --control socket); more with
                                              colo-compare qmp unix:PATH qom-set '{"path":"ID","property":...}'
          colo-compare events PATH [NAME...]  its events as JSON lines until interrupted: COLO_COMPARE_DIVERGENCE,
                                              _CHECKPOINT_REQUEST, _CHECKPOINT, _FAILOVER, _CHARDEV, ...
          colo-compare ocf ACTION             the Pacemaker resource agent ocf:colochardev:colo (packaging/pacemaker):
                                              start, stop, monitor, promote, demote, notify, meta-data, validate-all,
                                              parameters in OCF_RESKEY_*

        Chardev socket specs (QEMU's -chardev socket syntax):
          socket,id=ID,host=H,port=P[,server=on|off][,wait=on|off][,reconnect=SECONDS][,nodelay=on|off]
          socket,id=ID,path=/p[,server=on|off][,wait=on|off][,abstract=on][,peer-uid=UID]
          tcp:H:P[,server][,nowait]           unix:/path[,server][,nowait]
          Booleans: on/off, yes/no, true/false, a bare flag (server) or the no prefix (nowait).
          A TCP server with no host listens on loopback only; give host=0.0.0.0 to listen everywhere.
          peer-uid=UID (Unix sockets) refuses peers of any other user (SO_PEERCRED).
        ADDRESS (QMP): unix:/path (QEMU's -qmp unix:/path,server=on,...), a plain path, or tcp:HOST:PORT.

        SIGTERM/SIGINT release every queued primary packet, then exit 0. Under systemd (Type=notify) the daemon
        reports ready once its endpoints are open.

        Exit codes: 0 success; 1 the daemon cannot start (a chardev, --metrics or --control address that is taken
        or not ours, a path that cannot be used: one line naming it) or a command failed (QMP error, connection);
        2 bad command line. A client chardev (server=off) whose peer is not there yet is not an error: it is retried
        with backoff and logged.

        """;

    /// <summary>The usage of one subcommand (<c>colo-compare SUBCOMMAND --help</c>).</summary>
    public static string For(string subcommand) => subcommand switch
    {
        "status" => """
            colo-compare status PATH
              A running daemon's state, from its --control socket PATH, as one line of JSON: per NIC the options in
              force, every chardev (address, server or client, connected, connections made), queued frames and bytes,
              flows, the outdev backlog and its state (writing, back-pressure, stalled, no peer), the last checkpoint
              requests and checkpoints. Exit 0, or 1 if the socket does not answer.

            """,
        "stats" => """
            colo-compare stats PATH
              A running daemon's counters, from its --control socket PATH, as one line of JSON: per NIC frames in,
              released by reason, dropped by side and reason (outdev drops by reason too), mismatches, checkpoint
              requests, outdev pauses and stalls. Exit 0, or 1 if the socket does not answer.

            """,
        "events" => """
            colo-compare events PATH [NAME...]
              Print a running daemon's events (from its --control socket PATH) as JSON lines until interrupted
              (Ctrl-C), all of them or only those NAMEd: COLO_COMPARE_DIVERGENCE, COLO_COMPARE_CHECKPOINT_REQUEST,
              COLO_COMPARE_CHECKPOINT, COLO_COMPARE_FAILOVER, COLO_COMPARE_CHARDEV, COLO_COMPARE_EVENTS_LOST.

            """,
        "qmp" => """
            colo-compare qmp ADDRESS COMMAND [JSON-ARGUMENTS]
              Run one QMP command and print the reply as one line of JSON (exit 1 on a QMP error).
            colo-compare qmp ADDRESS --events [NAME...]
              Print QMP events as JSON lines until interrupted (Ctrl-C).
            ADDRESS: unix:/path, a plain path, or tcp:HOST:PORT (a QEMU monitor, or a daemon's --control socket).

            """,
        "check-chardev" => """
            colo-compare check-chardev SPEC...
              Parse chardev socket specs (QEMU's -chardev socket syntax) and say how each would be opened.
              Exit 0, or 2 with the first spec that does not parse.

            """,
        _ => Text,
    };
}
