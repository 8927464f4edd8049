using ColoChardev.Daemon.Configuration;

namespace ColoChardev.ColoCompareDaemon.Tests.Configuration;

public class CommandLineTests
{
    private static DaemonConfiguration Parse(params string[] args)
    {
        Assert.True(CommandLine.TryParse(args, out DaemonConfiguration? configuration, out string? error), error);
        return configuration!;
    }

    private static string Error(params string[] args)
    {
        Assert.False(CommandLine.TryParse(args, out _, out string? error));
        return error!;
    }

    [Fact]
    public void Qemus_own_arguments_for_two_nics_parse_with_their_properties()
    {
        DaemonConfiguration c = Parse(
            "-chardev", "socket,id=compare0-0,host=127.0.0.1,port=9001",
            "-chardev", "socket,id=compare1,host=0.0.0.0,port=9004,server=on,wait=off",
            "-chardev", "socket,id=compare_out0,host=127.0.0.1,port=9005",
            "-chardev", "socket,id=p1,path=/run/p1.sock",
            "-chardev", "socket,id=s1,path=/run/s1.sock,server=on,wait=off",
            "-chardev", "socket,id=o1,path=/run/o1.sock",
            "-chardev", "socket,id=n1,path=/run/n1.sock",
            "-object", "iothread,id=iothread1",
            "-object", "colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,iothread=iothread1",
            "-object", "colo-compare,id=comp1,primary_in=p1,secondary_in=s1,outdev=o1,notify_dev=n1,compare_timeout=500,expired_scan_cycle=50,max_queue_size=64,vnet_hdr_support=on",
            "--qmp", "unix:/run/primary.qmp", "--secondary-qmp", "unix:/run/secondary.qmp");
        Assert.Equal(["comp0", "comp1"], c.Nics.Select(n => n.Id));
        NicConfiguration first = c.Nics[0];
        Assert.Equal(9001, first.PrimaryIn.Port);
        Assert.True(first.SecondaryIn.Server);
        Assert.Null(first.NotifyDev);
        Assert.Equal(3000, first.Compare.CompareTimeoutMs);
        Assert.Equal(1000, first.Compare.ExpiredScanCycleMs);
        Assert.Equal(1024, first.Compare.MaxQueueSize);
        Assert.False(first.Compare.VnetHdrSupport);
        NicConfiguration second = c.Nics[1];
        Assert.Equal("/run/n1.sock", second.NotifyDev!.Path);
        Assert.Equal(500, second.Compare.CompareTimeoutMs);
        Assert.Equal(50, second.Compare.ExpiredScanCycleMs);
        Assert.Equal(64, second.Compare.MaxQueueSize);
        Assert.True(second.Compare.VnetHdrSupport);
        Assert.Equal("unix:/run/primary.qmp", c.PrimaryQmp);
        Assert.Equal("unix:/run/secondary.qmp", c.SecondaryQmp);
    }

    [Fact]
    public void An_object_honours_qemus_double_comma_escape_as_chardev_specs_do()
    {
        DaemonConfiguration c = Parse(
            "-chardev", "socket,id=p,,0,path=/run/p,,0.sock",
            "-chardev", "socket,id=s,path=/run/s.sock,server=on,wait=off",
            "-chardev", "socket,id=o,path=/run/o.sock",
            "-object", "colo-compare,id=comp,,0,primary_in=p,,0,secondary_in=s,outdev=o");
        NicConfiguration nic = Assert.Single(c.Nics);
        Assert.Equal("comp,0", nic.Id);
        Assert.Equal("p,0", nic.PrimaryIn.Id);
        Assert.Equal("/run/p,0.sock", nic.PrimaryIn.Path);
    }

    [Theory]
    [InlineData("on", true)]
    [InlineData("yes", true)]
    [InlineData("true", true)]
    [InlineData("y", true)]
    [InlineData("off", false)]
    [InlineData("no", false)]
    [InlineData("false", false)]
    [InlineData("n", false)]
    public void Every_boolean_spelling_works_for_object_properties_and_plain_options(string spelling, bool expected)
    {
        DaemonConfiguration c = Parse(
            "-chardev", "socket,id=p,path=/run/p.sock", "-chardev", "socket,id=s,path=/run/s.sock", "-chardev", "socket,id=o,path=/run/o.sock",
            "-object", "colo-compare,id=comp0,primary_in=p,secondary_in=s,outdev=o,vnet_hdr_support=" + spelling,
            "--compare-ipv6", spelling, "--compare-vlan", spelling);
        CompareOptionsAssert(c.Nics[0].Compare, expected);
    }

    [Fact]
    public void A_property_given_twice_is_refused_even_with_the_same_value()
    {
        string error = Error(
            "-chardev", "socket,id=p,path=/run/p.sock", "-chardev", "socket,id=s,path=/run/s.sock", "-chardev", "socket,id=o,path=/run/o.sock",
            "-object", "colo-compare,id=comp0,primary_in=p,secondary_in=s,outdev=o,compare_timeout=5,compare_timeout=5");
        Assert.Contains("property 'compare_timeout' is given twice", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Defaults_are_compare_options_own()
    {
        var defaults = new Daemon.Engine.CompareOptions();
        NicConfiguration plain = Assert.Single(Parse("--primary-in", "unix:/run/p", "--secondary-in", "unix:/run/s", "--outdev", "unix:/run/o").Nics);
        Assert.Equal(defaults, plain.Compare);
        NicConfiguration qemu = Assert.Single(Parse(
            "-chardev", "socket,id=p,path=/run/p.sock", "-chardev", "socket,id=s,path=/run/s.sock", "-chardev", "socket,id=o,path=/run/o.sock",
            "-object", "colo-compare,id=comp0,primary_in=p,secondary_in=s,outdev=o").Nics);
        Assert.Equal(defaults, qemu.Compare);
    }

    private static void CompareOptionsAssert(Daemon.Engine.CompareOptions options, bool expected)
    {
        Assert.Equal(expected, options.VnetHdrSupport);
        Assert.Equal(expected, options.CompareIpv6);
        Assert.Equal(expected, options.CompareVlan);
    }

    [Fact]
    public void Plain_options_give_one_nic_with_default_ids()
    {
        DaemonConfiguration c = Parse("--primary-in", "tcp:127.0.0.1:9001", "--secondary-in", "tcp::9004,server,nowait", "--outdev", "unix:/run/out.sock", "--vnet-hdr-support", "--max-queue-size", "10");
        NicConfiguration nic = Assert.Single(c.Nics);
        Assert.Equal("primary_in", nic.PrimaryIn.Id);
        Assert.Equal("outdev", nic.OutDev.Id);
        Assert.True(nic.Compare.VnetHdrSupport);
        Assert.Equal(10, nic.Compare.MaxQueueSize);
    }

    [Fact]
    public void Our_own_options_parse()
    {
        DaemonConfiguration c = Parse("--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2,server", "--outdev", "tcp:127.0.0.1:3",
            "--qmp", "unix:/q", "--restore-redirector", "redire0,before=redire1", "--summary-interval", "0", "--outdev-backlog-mb", "8",
            "--queue-budget-mb", "16", "--compare-ipv6", "off", "--compare-vlan", "no", "--log-level", "debug");
        NicConfiguration nic = c.Nics[0];
        Assert.Equal(new RedirectorRestore("redire0", "redire1"), nic.RestoreRedirector);
        Assert.Equal(TimeSpan.Zero, c.SummaryInterval);
        Assert.Equal(8L << 20, c.Outdev.BacklogBytes);
        Assert.Equal(16L << 20, nic.Compare.QueueBudgetBytes);
        Assert.False(nic.Compare.CompareIpv6);
        Assert.False(nic.Compare.CompareVlan);
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Debug, c.LogLevel);
    }

    [Fact]
    public void Capture_options_give_a_directory_and_its_limits_and_the_limits_have_defaults()
    {
        string[] nic = ["--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2,server", "--outdev", "tcp:127.0.0.1:3"];
        Assert.Null(Parse(nic).Capture);
        Assert.Equal(new ColoChardev.Daemon.Captures.CaptureSettings("/var/log/cc"), Parse([.. nic, "--capture", "/var/log/cc"]).Capture);
        ColoChardev.Daemon.Captures.CaptureSettings c = Parse([.. nic, "--capture-files", "3", "--capture", "/tmp/c", "--capture-file-mb", "2", "--capture-packets", "10"]).Capture!;
        Assert.Equal(new ColoChardev.Daemon.Captures.CaptureSettings("/tmp/c") { Files = 3, FileBytes = 2L << 20, PacketsPerSide = 10 }, c);
        Assert.Equal(16L << 20, new ColoChardev.Daemon.Captures.CaptureSettings("x").FileBytes);
        Assert.Contains("'--capture-files' needs --capture DIR", Error([.. nic, "--capture-files", "3"]), StringComparison.Ordinal);
        Assert.Contains("'--capture-file-mb=0' must be a whole number from 1 to 65536", Error([.. nic, "--capture", "/tmp/c", "--capture-file-mb", "0"]), StringComparison.Ordinal);
        Assert.Contains("'--capture-packets=many' must be a whole number", Error([.. nic, "--capture", "/tmp/c", "--capture-packets", "many"]), StringComparison.Ordinal);
        Assert.Contains("'--capture' needs a directory", Error([.. nic, "--capture", ""]), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0", 0)]
    [InlineData("60", 60_000)]
    [InlineData("0.25", 250)]
    [InlineData("1.5", 1_500)]
    public void The_summary_interval_takes_seconds_with_a_fraction(string seconds, int milliseconds)
    {
        DaemonConfiguration c = Parse("--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2,server", "--outdev", "tcp:127.0.0.1:3", "--summary-interval", seconds);
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), c.SummaryInterval);
    }

    [Theory]
    [InlineData("9100", "127.0.0.1", 9100, "http://127.0.0.1:9100/metrics")]
    [InlineData("0.0.0.0:9100", "+", 9100, "http://0.0.0.0:9100/metrics")]
    [InlineData("*:9100", "+", 9100, "http://0.0.0.0:9100/metrics")]
    [InlineData("localhost:1", "localhost", 1, "http://localhost:1/metrics")]
    [InlineData("[::1]:65535", "[::1]", 65535, "http://[::1]:65535/metrics")]
    public void The_metrics_address_is_a_port_or_host_and_port(string text, string host, int port, string url)
    {
        DaemonConfiguration c = Parse("--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2,server", "--outdev", "tcp:127.0.0.1:3", "--metrics", text);
        Assert.Equal(new MetricsEndpoint(host, port), c.Metrics);
        Assert.Equal(url, c.Metrics!.Url);
        Assert.Null(Parse("--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2,server", "--outdev", "tcp:127.0.0.1:3").Metrics);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("65536")]
    [InlineData("example.org:9100")]
    [InlineData("::1:9100")]
    [InlineData("10.0.0.1:")]
    public void A_bad_metrics_address_is_refused_with_its_form(string text)
    {
        Assert.Contains($"'--metrics={text}' must be PORT or HOST:PORT", Error("--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2,server", "--outdev", "tcp:127.0.0.1:3", "--metrics", text), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("0.0001")]
    [InlineData("1e3")]
    [InlineData("soon")]
    [InlineData("86401")]
    public void A_bad_summary_interval_is_refused_with_its_range(string seconds)
    {
        Assert.Contains($"'--summary-interval={seconds}' must be a number of seconds from 0 to 86400", Error("--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2,server", "--outdev", "tcp:127.0.0.1:3", "--summary-interval", seconds), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("'--colour'", "--colour")]
    [InlineData("needs a value", "--qmp")]
    [InlineData("nothing to compare", "--summary-interval", "5")]
    [InlineData("'--outdev' is required", "--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2")]
    [InlineData("could not be same", "-chardev", "socket,id=a,host=127.0.0.1,port=1", "-chardev", "socket,id=b,host=127.0.0.1,port=2", "-object", "colo-compare,id=c,primary_in=a,secondary_in=a,outdev=b")]
    [InlineData("names no -chardev", "-chardev", "socket,id=a,host=127.0.0.1,port=1", "-object", "colo-compare,id=c,primary_in=a,secondary_in=b,outdev=a")]
    [InlineData("'secondary_in' is required", "-chardev", "socket,id=a,host=127.0.0.1,port=1", "-object", "colo-compare,id=c,primary_in=a,outdev=a")]
    [InlineData("'colour=red'", "-chardev", "socket,id=a,host=127.0.0.1,port=1", "-object", "colo-compare,id=c,colour=red")]
    [InlineData("only colo-compare", "-object", "filter-mirror,id=m0,netdev=hn0")]
    [InlineData("needs an id=", "-chardev", "tcp:127.0.0.1:1")]
    [InlineData("defined twice", "-chardev", "socket,id=a,host=127.0.0.1,port=1", "-chardev", "socket,id=a,host=127.0.0.1,port=2")]
    [InlineData("'compare_timeout=0'", "-chardev", "socket,id=a,host=127.0.0.1,port=1", "-chardev", "socket,id=b,host=127.0.0.1,port=2", "-chardev", "socket,id=c,host=127.0.0.1,port=3", "-object", "colo-compare,id=x,primary_in=a,secondary_in=b,outdev=c,compare_timeout=0")]
    [InlineData("'vnet_hdr_support=maybe'", "-chardev", "socket,id=a,host=127.0.0.1,port=1", "-chardev", "socket,id=b,host=127.0.0.1,port=2", "-chardev", "socket,id=c,host=127.0.0.1,port=3", "-object", "colo-compare,id=x,primary_in=a,secondary_in=b,outdev=c,vnet_hdr_support=maybe")]
    [InlineData("cannot be mixed", "-chardev", "socket,id=a,host=127.0.0.1,port=1", "-chardev", "socket,id=b,host=127.0.0.1,port=2", "-chardev", "socket,id=c,host=127.0.0.1,port=3", "-object", "colo-compare,id=x,primary_in=a,secondary_in=b,outdev=c", "--primary-in", "tcp:127.0.0.1:4")]
    [InlineData("needs --qmp", "--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2", "--outdev", "tcp:127.0.0.1:3", "--restore-redirector", "redire0,before=redire1")]
    [InlineData("before=REDIRECTOR", "--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2", "--outdev", "tcp:127.0.0.1:3", "--qmp", "unix:/q", "--restore-redirector", "redire0")]
    [InlineData("--qmp: ", "--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2", "--outdev", "tcp:127.0.0.1:3", "--qmp", "udp:1")]
    [InlineData("'--log-level'", "--log-level", "loud")]
    [InlineData("'--control=' must be a socket path of 1 to 107 bytes", "--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2", "--outdev", "tcp:127.0.0.1:3", "--control", "")]
    public void A_bad_command_line_gets_one_sentence_naming_what_is_wrong(string named, params string[] args)
    {
        Assert.Contains(named, Error(args), StringComparison.Ordinal);
    }

    [Fact]
    public void A_chardev_cannot_serve_two_nics()
    {
        string error = Error(
            "-chardev", "socket,id=a,host=127.0.0.1,port=1", "-chardev", "socket,id=b,host=127.0.0.1,port=2", "-chardev", "socket,id=c,host=127.0.0.1,port=3", "-chardev", "socket,id=d,host=127.0.0.1,port=4",
            "-object", "colo-compare,id=x,primary_in=a,secondary_in=b,outdev=c",
            "-object", "colo-compare,id=y,primary_in=d,secondary_in=b,outdev=a");
        Assert.Contains("'b' is used by both colo-compare 'x' and 'y'", error, StringComparison.Ordinal);
    }
}
