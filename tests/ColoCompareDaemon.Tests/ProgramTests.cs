using ColoChardev.Daemon;

namespace ColoChardev.ColoCompareDaemon.Tests;

public class ProgramTests
{
    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = Program.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Help_prints_usage_and_succeeds()
    {
        (int code, string output, string error) = Run("--help");
        Assert.Equal(0, code);
        Assert.Contains("-object colo-compare", output, StringComparison.Ordinal);
        Assert.Contains("--primary-in SPEC", output, StringComparison.Ordinal);
        Assert.Contains("socket,id=ID,host=H,port=P", output, StringComparison.Ordinal);
        Assert.Empty(error);
    }

    [Fact]
    public void Unknown_argument_gets_one_line_naming_it_and_exit_code_2()
    {
        (int code, string output, string error) = Run("--frobnicate");
        Assert.Equal(Program.ExitUsage, code);
        Assert.Empty(output);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.Contains("'--frobnicate'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Check_chardev_describes_each_spec()
    {
        (int code, string output, _) = Run("check-chardev", "socket,id=compare1,host=127.0.0.1,port=9004,server=on,wait=off", "unix:/run/x.sock,server,nowait");
        Assert.Equal(0, code);
        string[] lines = output.TrimEnd().Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.Equal("compare1: tcp 127.0.0.1:9004, server", lines[0]);
        Assert.Equal("unix:/run/x.sock,server,nowait: unix /run/x.sock, server", lines[1]);
    }

    [Theory]
    [InlineData("status")]
    [InlineData("stats", "a.sock", "b.sock")]
    public async Task Status_and_stats_need_exactly_the_control_socket_path(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = await Program.RunAsync(args, output, error);
        Assert.Equal(Program.ExitUsage, code);
        Assert.Empty(output.ToString());
        Assert.Contains($"{args[0]} needs one argument, the daemon's --control socket path", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Events_needs_the_control_socket_path()
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        Assert.Equal(Program.ExitUsage, await Program.RunAsync(["events"], output, error));
        Assert.Contains("events needs the daemon's --control socket path", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Check_chardev_quotes_a_bad_option_and_exits_2()
    {
        (int code, _, string error) = Run("check-chardev", "socket,id=a,host=127.0.0.1,port=9004,colour=blue");
        Assert.Equal(Program.ExitUsage, code);
        Assert.Contains("'colour=blue'", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("status", "colo-compare status PATH")]
    [InlineData("stats", "colo-compare stats PATH")]
    [InlineData("events", "colo-compare events PATH [NAME...]")]
    [InlineData("qmp", "colo-compare qmp ADDRESS COMMAND")]
    [InlineData("check-chardev", "colo-compare check-chardev SPEC...")]
    public async Task A_subcommand_given_help_prints_its_usage_instead_of_taking_help_for_a_path(string subcommand, string usage)
    {
        foreach (string help in new[] { "--help", "-h" })
        {
            using var output = new StringWriter();
            using var error = new StringWriter();
            int code = await Program.RunAsync([subcommand, help], output, error);
            Assert.Equal(0, code);
            Assert.StartsWith(usage, output.ToString(), StringComparison.Ordinal);
            Assert.Empty(error.ToString());
        }
    }
}
