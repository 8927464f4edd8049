using System.Net;
using System.Net.Sockets;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>
/// A daemon that cannot start says why in one line on stderr, naming the chardev or option and its address, and
/// exits 1: no stack trace, no signal. Real process, real sockets.
/// </summary>
public sealed class StartupErrorTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("colo-startup-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    public static TheoryData<string> Taken => ["primary_in", "secondary_in", "outdev", "notify_dev", "metrics"];

    [Theory]
    [MemberData(nameof(Taken))]
    public async Task A_port_that_is_already_taken_is_one_line_naming_the_chardev_and_address_and_exit_code_1(string which)
    {
        using var holder = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        holder.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        holder.Listen();
        int taken = ((IPEndPoint)holder.LocalEndPoint!).Port;
        int Port(string name) => name == which ? taken : FreePort.Next();
        string[] arguments =
        [
            "-chardev", $"socket,id=compare0-0,host=127.0.0.1,port={Port("primary_in")},server=on,wait=off",
            "-chardev", $"socket,id=compare1,host=127.0.0.1,port={Port("secondary_in")},server=on,wait=off",
            "-chardev", $"socket,id=compare_out0,host=127.0.0.1,port={Port("outdev")},server=on,wait=off",
            "-chardev", $"socket,id=notify0,host=127.0.0.1,port={Port("notify_dev")},server=on,wait=off",
            "-object", "colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,notify_dev=notify0",
            "--metrics", $"127.0.0.1:{Port("metrics")}",
        ];
        string named = which switch
        {
            "primary_in" => "chardev 'compare0-0'",
            "secondary_in" => "chardev 'compare1'",
            "outdev" => "chardev 'compare_out0'",
            "notify_dev" => "chardev 'notify0'",
            _ => "--metrics",
        };

        await using DaemonProcess daemon = DaemonProcess.Start(arguments);
        Assert.Equal(1, await daemon.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        string line = Assert.Single(daemon.ErrorLines);
        Assert.StartsWith("colo-compare: ", line, StringComparison.Ordinal);
        Assert.Contains(named, line, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{taken}", line, StringComparison.Ordinal);
        Assert.Contains("in use", line, StringComparison.Ordinal);
        AssertNoTrace(daemon);
    }

    [Fact]
    public async Task Unusable_paths_for_unix_chardevs_and_the_control_socket_are_one_line_each_and_exit_code_1()
    {
        string missing = Path.Combine(_directory, "no-such-directory", "primary.sock");
        string inTheWay = Path.Combine(_directory, "a-directory");
        Directory.CreateDirectory(inTheWay);
        string plainFile = Path.Combine(_directory, "plain-file");
        await File.WriteAllTextAsync(plainFile, "not a socket");
        string Sock(string name) => $"unix:{Path.Combine(_directory, name)},server,nowait";

        (string[] Arguments, string Named)[] cases =
        [
            (["--primary-in", $"unix:{missing},server,nowait", "--secondary-in", Sock("s"), "--outdev", Sock("o")], $"chardev 'primary_in': cannot listen on {missing}: no directory"),
            (["--primary-in", Sock("p"), "--secondary-in", $"unix:{inTheWay},server,nowait", "--outdev", Sock("o")], $"chardev 'secondary_in': cannot listen on {inTheWay}"),
            (["--primary-in", Sock("p"), "--secondary-in", Sock("s"), "--outdev", Sock("o"), "--control", inTheWay], $"--control {inTheWay}"),
            (["--primary-in", Sock("p"), "--secondary-in", Sock("s"), "--outdev", Sock("o"), "--control", plainFile], $"--control {plainFile}"),
            (["--primary-in", Sock("p"), "--secondary-in", Sock("s"), "--outdev", Sock("o"), "--capture", Path.Combine(plainFile, "sub")], "--capture"),
        ];
        foreach ((string[] arguments, string named) in cases)
        {
            await using DaemonProcess daemon = DaemonProcess.Start(arguments);
            Assert.Equal(1, await daemon.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            string line = Assert.Single(daemon.ErrorLines);
            Assert.Contains(named, line, StringComparison.Ordinal);
            AssertNoTrace(daemon);
        }

        // Nothing was taken over: the plain file is still there, untouched.
        Assert.Equal("not a socket", await File.ReadAllTextAsync(plainFile));
    }

    [Fact]
    public async Task A_sigterm_as_soon_as_the_daemon_has_bound_is_a_clean_stop_with_exit_code_0()
    {
        // A service manager or cluster agent may stop a daemon it has just started. The host handles signals only
        // once it runs, after binding and its first lines: a SIGTERM in between killed the process (exit 143).
        for (int round = 0; round < 10; round++)
        {
            string[] arguments =
            [
                "-chardev", $"socket,id=pri,host=127.0.0.1,port={FreePort.Next()},server=on,wait=off",
                "-chardev", $"socket,id=sec,host=127.0.0.1,port={FreePort.Next()},server=on,wait=off",
                "-chardev", $"socket,id=out,host=127.0.0.1,port={FreePort.Next()},server=on,wait=off",
                "-object", "colo-compare,id=cc0,primary_in=pri,secondary_in=sec,outdev=out",
                // What binds after the first chardev widens the window (the metrics endpoint takes tens of ms to start).
                "--metrics", $"127.0.0.1:{FreePort.Next()}",
                "--control", Path.Combine(_directory, $"control{round}.sock"),
            ];
            await using DaemonProcess daemon = DaemonProcess.Start(arguments);
            daemon.TerminateOnLine("chardev 'out': listening on"); // the last line before the host runs
            Assert.Equal(0, await daemon.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            AssertNoTrace(daemon);
        }
    }

    private static void AssertNoTrace(DaemonProcess daemon)
    {
        Assert.DoesNotContain(daemon.Lines, l => l.Contains("   at ", StringComparison.Ordinal) || l.Contains("Unhandled", StringComparison.Ordinal) || l.Contains("fail:", StringComparison.Ordinal));
    }
}
