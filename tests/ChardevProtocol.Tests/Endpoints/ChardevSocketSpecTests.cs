using ColoChardev.ChardevProtocol.Endpoints;

namespace ColoChardev.ChardevProtocol.Tests.Endpoints;

public class ChardevSocketSpecTests
{
    [Fact]
    public void Qemu_tcp_server_syntax_from_COLO_FT_parses()
    {
        ChardevSocketSpec spec = ChardevSocketSpec.Parse("socket,id=compare1,host=0.0.0.0,port=9004,server=on,wait=on");
        Assert.Equal("compare1", spec.Id);
        Assert.Equal(ChardevTransport.Tcp, spec.Transport);
        Assert.Equal("0.0.0.0", spec.Host);
        Assert.Equal(9004, spec.Port);
        Assert.True(spec.Server);
        Assert.True(spec.Wait);
        Assert.False(spec.HostDefaulted);
        Assert.Null(spec.Reconnect);
    }

    [Fact]
    public void Qemu_tcp_client_with_reconnect_parses()
    {
        ChardevSocketSpec spec = ChardevSocketSpec.Parse("socket,id=red1,host=127.0.0.1,port=9004,reconnect=1");
        Assert.False(spec.Server);
        Assert.False(spec.Wait);
        Assert.Equal(TimeSpan.FromSeconds(1), spec.Reconnect);
        Assert.Equal("127.0.0.1:9004", spec.Address);
    }

    [Fact]
    public void Newer_qemu_reconnect_ms_parses()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(250), ChardevSocketSpec.Parse("socket,id=a,host=127.0.0.1,port=1,reconnect-ms=250").Reconnect);
    }

    [Fact]
    public void A_server_waits_for_its_first_peer_unless_told_not_to()
    {
        Assert.True(ChardevSocketSpec.Parse("socket,id=a,path=/tmp/a,server=on").Wait);
        Assert.False(ChardevSocketSpec.Parse("socket,id=a,path=/tmp/a,server=on,wait=off").Wait);
    }

    [Fact]
    public void Unix_socket_syntax_parses()
    {
        ChardevSocketSpec spec = ChardevSocketSpec.Parse("socket,id=mon,path=/run/colo/compare.sock,server=on,wait=off,peer-uid=1000");
        Assert.Equal(ChardevTransport.Unix, spec.Transport);
        Assert.Equal("/run/colo/compare.sock", spec.Path);
        Assert.Equal(1000u, spec.PeerUid);
        Assert.True(spec.Server);
        Assert.False(spec.Wait);
    }

    [Fact]
    public void Abstract_unix_socket_parses()
    {
        ChardevSocketSpec spec = ChardevSocketSpec.Parse("socket,id=a,path=colo-x,abstract=on");
        Assert.True(spec.Abstract);
        Assert.Equal("@colo-x", spec.Address);
    }

    [Theory]
    [InlineData("tcp:127.0.0.1:9001,server,nowait", "127.0.0.1", 9001, true, false)]
    [InlineData("tcp:127.0.0.1:9001", "127.0.0.1", 9001, false, false)]
    [InlineData("tcp:[::1]:9001,server=on,wait=off", "::1", 9001, true, false)]
    [InlineData("tcp:localhost:80,server", "localhost", 80, true, true)]
    public void Legacy_tcp_syntax_parses(string text, string host, int port, bool server, bool wait)
    {
        ChardevSocketSpec spec = ChardevSocketSpec.Parse(text);
        Assert.Equal(ChardevTransport.Tcp, spec.Transport);
        Assert.Equal(host, spec.Host);
        Assert.Equal(port, spec.Port);
        Assert.Equal(server, spec.Server);
        Assert.Equal(wait, spec.Wait);
        Assert.Null(spec.Id);
        Assert.Equal(text, spec.DisplayName);
    }

    [Fact]
    public void Legacy_unix_syntax_parses()
    {
        ChardevSocketSpec spec = ChardevSocketSpec.Parse("unix:/tmp/qmp.sock,server,nowait");
        Assert.Equal(ChardevTransport.Unix, spec.Transport);
        Assert.Equal("/tmp/qmp.sock", spec.Path);
        Assert.True(spec.Server);
        Assert.False(spec.Wait);
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
    public void Qemu_boolean_spellings_are_accepted(string value, bool expected)
    {
        Assert.Equal(expected, ChardevSocketSpec.Parse($"socket,id=a,host=127.0.0.1,port=5,server={value}").Server);
        Assert.Equal(expected, ChardevSocketSpec.Parse($"socket,id=a,host=127.0.0.1,port=5,server=on,wait={value}").Wait);
    }

    [Fact]
    public void Bare_flags_and_the_no_prefix_are_accepted()
    {
        ChardevSocketSpec spec = ChardevSocketSpec.Parse("socket,id=a,host=127.0.0.1,port=5,server,nowait,nodelay");
        Assert.True(spec.Server);
        Assert.False(spec.Wait);
        Assert.True(spec.NoDelay);
        Assert.False(ChardevSocketSpec.Parse("socket,id=a,host=127.0.0.1,port=5,noserver").Server);
    }

    [Fact]
    public void A_doubled_comma_is_a_literal_comma_in_a_value()
    {
        Assert.Equal("/tmp/a,b.sock", ChardevSocketSpec.Parse("socket,id=x,path=/tmp/a,,b.sock").Path);
    }

    [Fact]
    public void A_tcp_server_without_host_binds_loopback_not_every_interface()
    {
        ChardevSocketSpec spec = ChardevSocketSpec.Parse("tcp::9004,server,nowait");
        Assert.Equal("127.0.0.1", spec.Host);
        Assert.True(spec.HostDefaulted);
        Assert.False(ChardevSocketSpec.Parse("tcp:0.0.0.0:9004,server,nowait").HostDefaulted);
    }

    [Fact]
    public void The_id_is_optional_for_plain_options()
    {
        ChardevSocketSpec spec = ChardevSocketSpec.Parse("host=127.0.0.1,port=9001");
        Assert.Null(spec.Id);
        Assert.Equal(9001, spec.Port);
    }

    [Theory]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,colour=blue", "'colour=blue'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,telnet=on", "'telnet=on'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,to=9", "'to=9'")]
    [InlineData("udp,id=a,host=127.0.0.1,port=1", "'udp'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,path=/tmp/x", "both a TCP address")]
    [InlineData("socket,id=a,server=on", "needs host= and port=, or path=")]
    [InlineData("socket,id=a,host=127.0.0.1", "no port=")]
    [InlineData("socket,id=a,host=127.0.0.1,port=70000", "'port=70000'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=http", "'port=http'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=0", "'port=0'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,wait=off", "'wait'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,server=on,reconnect=1", "'reconnect'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,reconnect=1,reconnect-ms=5", "both reconnect= and reconnect-ms=")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,reconnect=-1", "'reconnect=-1'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,server=maybe", "'server=maybe'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,port=2", "'port' is given twice")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,peer-uid=0", "'peer-uid'")]
    [InlineData("socket,id=a,path=/tmp/x,ipv4=on", "'ipv4'")]
    [InlineData("socket,id=a,path=/tmp/x,peer-uid=root", "'peer-uid=root'")]
    [InlineData("socket,id=a,path=/tmp/x,tight=on", "'tight'")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,ipv4=on,ipv6=on", "both ipv4=on and ipv6=on")]
    [InlineData("socket,id=a,,host=127.0.0.1", "needs host= and port=, or path=")]
    [InlineData("socket,,id=a", "'socket,id=a'")]
    [InlineData("socket,id=a,,", "needs host= and port=, or path=")]
    [InlineData("socket,id=,host=127.0.0.1,port=1", "'id='")]
    [InlineData("socket,,", "'socket,'")]
    [InlineData("tcp:127.0.0.1", "tcp:HOST:PORT")]
    [InlineData("tcp:1:2:3", "tcp:HOST:PORT")]
    [InlineData("unix:,server", "empty Unix path")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,,,x", "'x'")]
    [InlineData("socket,id=a,host=127.0.0.1,,port=1", "no port=")]
    [InlineData("socket,id=a,host=127.0.0.1,port=1,", "empty option")]
    [InlineData("", "empty chardev spec")]
    public void Unknown_or_contradictory_options_get_an_error_quoting_them(string text, string quoted)
    {
        ChardevSpecException error = Assert.Throws<ChardevSpecException>(() => ChardevSocketSpec.Parse(text));
        Assert.Contains(quoted, error.Message, StringComparison.Ordinal);
        Assert.False(ChardevSocketSpec.TryParse(text, out _, out string? message));
        Assert.Equal(error.Message, message);
    }

    [Fact]
    public void A_unix_path_longer_than_sun_path_is_refused()
    {
        string path = "/tmp/" + new string('x', 120);
        ChardevSpecException error = Assert.Throws<ChardevSpecException>(() => ChardevSocketSpec.Parse("unix:" + path));
        Assert.Contains("107 bytes", error.Message, StringComparison.Ordinal);
    }
}
