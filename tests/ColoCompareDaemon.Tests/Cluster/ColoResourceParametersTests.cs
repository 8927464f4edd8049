using System.Xml.Linq;
using ColoChardev.Daemon.Cluster;
using ColoChardev.Daemon.Configuration;
using ColoChardev.Qmp;

namespace ColoChardev.ColoCompareDaemon.Tests.Cluster;

public class ColoResourceParametersTests
{
    private static Dictionary<string, string> Minimal(params (string Name, string Value)[] more)
    {
        var environment = new Dictionary<string, string>
        {
            ["OCF_RESKEY_vm_name"] = "vm1",
            ["OCF_RESKEY_node_addresses"] = "n1=192.168.77.1 n2=192.168.77.2",
            ["OCF_RESKEY_qemu_options"] = "-m 128M -kernel /boot/vmlinuz -append 'console=ttyS0 quiet'",
        };
        foreach ((string name, string value) in more)
        {
            environment["OCF_RESKEY_" + name] = value;
        }

        return environment;
    }

    private static ColoResourceParameters Parse(params (string Name, string Value)[] more)
    {
        Assert.True(ColoResourceParameters.TryParse(Minimal(more), out ColoResourceParameters? parameters, out string? error), error);
        return parameters!;
    }

    private static string Error(params (string Name, string Value)[] more)
    {
        Assert.False(ColoResourceParameters.TryParse(Minimal(more), out _, out string? error));
        return error!;
    }

    [Fact]
    public void Unset_parameters_take_the_defaults_the_meta_data_documents()
    {
        ColoResourceParameters p = Parse();
        Assert.Equal("qemu-system-x86_64", p.QemuBinary);
        Assert.Equal(9000, p.BasePort);
        Assert.Equal(20_000, p.CheckpointInterval);
        Assert.Equal(3000, p.CompareTimeout);
        Assert.Equal(1000, p.ExpiredScanCycle);
        Assert.Equal(1024, p.MaxQueueSize);
        Assert.False(p.VnetHdr);
        Assert.Equal("/run/colo-ha/vm1", p.StateDir);
        Assert.Equal("colo-vm1", p.Tap);
        Assert.Null(p.Bridge);
        Assert.Null(p.Disk);
        Assert.Equal("virtio-blk-pci", p.DiskModel);
        Assert.Equal("qemu-img", p.QemuImg);
        Assert.Equal(ColoResourceParameters.DefaultColoCompare, p.ColoCompare);
        Assert.Equal(["-m", "128M", "-kernel", "/boot/vmlinuz", "-append", "console=ttyS0 quiet"], p.QemuOptions);
        Assert.Equal([new ClusterNode("n1", "192.168.77.1"), new ClusterNode("n2", "192.168.77.2")], p.Nodes);
        foreach (ColoResourceParameter definition in ColoResourceParameters.Definitions.Where(d => d.Type == OcfContentType.Integer))
        {
            // Every documented integer default is what the parser assumes.
            Assert.True(ColoResourceParameters.TryParse(Minimal((definition.Name, definition.Default)), out _, out string? error), error);
        }
    }

    [Fact]
    public void The_mac_address_made_from_the_vm_name_is_stable_locally_administered_and_unicast()
    {
        string mac = Parse().Mac;
        Assert.Equal(mac, Parse().Mac);
        Assert.StartsWith("52:54:00:", mac, StringComparison.Ordinal);
        Assert.NotEqual(mac, Parse(("vm_name", "vm2")).Mac);
        Assert.Equal("52:54:00:12:34:56", Parse(("mac", "52:54:00:12:34:56")).Mac);
    }

    [Theory]
    [InlineData("vm_name", "", "parameter vm_name is required")]
    [InlineData("vm_name", "a/b", "parameter vm_name 'a/b' must be 1 to 32 letters")]
    [InlineData("node_addresses", "n1=192.168.77.1", "must name two different nodes")]
    [InlineData("node_addresses", "n1=10.0.0.1 n1=10.0.0.2", "must name two different nodes")]
    [InlineData("node_addresses", "n1 n2", "'n1' is not NODE=ADDRESS")]
    [InlineData("base_port", "65532", "parameter base_port '65532' must be a whole number from 1 to 65531")]
    [InlineData("base_port", "9x", "parameter base_port '9x'")]
    [InlineData("compare_timeout", "0", "parameter compare_timeout '0' must be a whole number from 1")]
    [InlineData("vnet_hdr", "maybe", "parameter vnet_hdr 'maybe' must be true or false")]
    [InlineData("mac", "53:54:00:12:34:56", "must be a unicast MAC address")]
    [InlineData("tap", "a-very-long-tap-name", "parameter tap 'a-very-long-tap-name' must be a network interface name")]
    [InlineData("state_dir", "relative/dir", "must be an absolute path")]
    [InlineData("disk", "vm1.raw", "parameter disk 'vm1.raw' must be an absolute path")]
    [InlineData("state_dir", "/run/a,b", "parameter state_dir '/run/a,b' may not contain a comma")]
    [InlineData("qemu_options", "-append 'unclosed", "parameter qemu_options has an unmatched '")]
    [InlineData("daemon_options", "--qmp unix:/x", "daemon_options may not set --qmp")]
    [InlineData("daemon_options", "--restore-redirector=redire0,before=redire1", "daemon_options may not set --restore-redirector")]
    public void A_bad_parameter_is_one_sentence_naming_it(string name, string value, string expected)
    {
        Assert.Contains(expected, Error((name, value)), StringComparison.Ordinal);
    }

    [Fact]
    public void A_state_dir_whose_sockets_would_not_fit_sockaddr_un_is_refused()
    {
        Assert.Contains("too long for the sockets in it", Error(("state_dir", "/" + new string('d', 100))), StringComparison.Ordinal);
    }
}

public class ShellWordsTests
{
    [Theory]
    [InlineData("-m 128M", new[] { "-m", "128M" })]
    [InlineData("  -a\t'b c'  \"d \\\"e\\\"\" f\\ g ", new[] { "-a", "b c", "d \"e\"", "f g" })]
    [InlineData("x'y'z", new[] { "xyz" })]
    [InlineData("'' a", new[] { "", "a" })]
    [InlineData("'a\\b'", new[] { "a\\b" })]
    [InlineData("", new string[0])]
    public void Words_split_as_sh_splits_them_without_expansions(string text, string[] expected)
    {
        Assert.True(ShellWords.TrySplit(text, out List<string> words, out string? error), error);
        Assert.Equal(expected, words);
    }

    [Theory]
    [InlineData("a 'b", "has an unmatched ' at character 3")]
    [InlineData("a \"b", "has an unmatched \" at character 3")]
    [InlineData("a\\", "ends with a lone backslash")]
    public void Unbalanced_quotes_are_an_error(string text, string expected)
    {
        Assert.False(ShellWords.TrySplit(text, out _, out string? error));
        Assert.Equal(expected, error);
    }
}

public class ColoCommandLinesTests
{
    private static ColoCommandLines Lines(QmpVersion version, bool vnet = false, string? disk = null)
    {
        var environment = new Dictionary<string, string>
        {
            ["OCF_RESKEY_vm_name"] = "vm1",
            ["OCF_RESKEY_node_addresses"] = "n1=192.168.77.1 n2=192.168.77.2",
            ["OCF_RESKEY_qemu_options"] = "-m 128M",
            ["OCF_RESKEY_vnet_hdr"] = vnet ? "true" : "false",
            ["OCF_RESKEY_daemon_options"] = "--metrics 127.0.0.1:9187",
        };
        if (disk is not null)
        {
            environment["OCF_RESKEY_disk"] = disk;
        }

        Assert.True(ColoResourceParameters.TryParse(environment, out ColoResourceParameters? parameters, out string? error), error);
        return new ColoCommandLines(parameters!, parameters!.Nodes[1], version);
    }

    [Fact]
    public void The_secondary_connects_to_the_peers_mirror_and_daemon_and_waits_for_x_colo_before_listening()
    {
        List<string> secondary = Lines(new QmpVersion(7, 2, 22)).Secondary();
        Assert.Contains("socket,id=red0,host=192.168.77.1,port=9001,reconnect=1", secondary);
        Assert.Contains("socket,id=red1,host=192.168.77.1,port=9002,reconnect=1", secondary);
        Assert.Contains("tcp:192.168.77.2:9004,server=on,wait=off", secondary);
        Assert.Equal("defer", secondary[secondary.IndexOf("-incoming") + 1]);
        Assert.Contains("filter-rewriter,id=rew0,netdev=hn0,queue=all", secondary);
        Assert.Contains("-display", secondary);
    }

    [Fact]
    public void From_qemu_9_2_chardevs_reconnect_in_milliseconds()
    {
        Assert.Contains("socket,id=red0,host=192.168.77.1,port=9001,reconnect-ms=1000", Lines(new QmpVersion(10, 0, 13)).Secondary());
        Assert.Contains("socket,id=red0,host=192.168.77.1,port=9001,reconnect=1", Lines(new QmpVersion(9, 1, 0)).Secondary());
    }

    [Fact]
    public void The_daemons_command_line_is_one_the_daemon_accepts_with_the_colo_compare_properties_and_extra_options()
    {
        List<string> daemon = Lines(new QmpVersion(7, 2, 22), vnet: true).Daemon();
        Assert.True(CommandLine.TryParse(daemon, out DaemonConfiguration? configuration, out string? error), error);
        Assert.NotNull(configuration);
        Assert.Contains(daemon, a => a.StartsWith("colo-compare,id=comp0,", StringComparison.Ordinal) && a.Contains("compare_timeout=3000,expired_scan_cycle=1000,max_queue_size=1024,vnet_hdr_support=on", StringComparison.Ordinal));
        Assert.Equal("tcp:192.168.77.1:9004", daemon[daemon.IndexOf("--secondary-qmp") + 1]);
        Assert.Equal("/run/colo-ha/vm1/control.sock", daemon[daemon.IndexOf("--control") + 1]);
        Assert.Equal("127.0.0.1:9187", daemon[daemon.IndexOf("--metrics") + 1]);
    }

    [Fact]
    public void A_primary_boots_plain_without_filters_or_an_incoming_migration()
    {
        List<string> primary = Lines(new QmpVersion(7, 2, 22)).Primary();
        Assert.DoesNotContain("-incoming", primary);
        Assert.DoesNotContain(primary, a => a.Contains("filter-", StringComparison.Ordinal));
        Assert.Contains("tap,id=hn0,ifname=colo-vm1,script=no,downscript=no,vhost=off,vnet_hdr=off", primary);
        Assert.DoesNotContain("-drive", primary);
    }

    [Fact]
    public void A_disk_is_colo_ft_txts_quorum_on_both_with_the_secondarys_replication_chain_over_its_own_image()
    {
        ColoCommandLines lines = Lines(new QmpVersion(7, 2, 22), disk: "/var/lib/colo-ha/vm,1.raw");
        List<string> primary = lines.Primary();
        Assert.Contains("if=none,id=colo-disk0,driver=quorum,read-pattern=fifo,vote-threshold=1,children.0.file.filename=/var/lib/colo-ha/vm,,1.raw,children.0.driver=raw", primary);
        Assert.Contains("virtio-blk-pci,id=d0,drive=colo-disk0", primary);

        List<string> secondary = lines.Secondary();
        Assert.Contains("if=none,id=parent0,node-name=parent0-disk,driver=raw,file.filename=/var/lib/colo-ha/vm,,1.raw", secondary);
        Assert.Contains("if=none,id=childs0,driver=replication,mode=secondary,top-id=colo-disk0,file.driver=qcow2,file.file.filename=/run/colo-ha/vm1/active-disk.qcow2,file.backing.driver=qcow2,file.backing.file.filename=/run/colo-ha/vm1/hidden-disk.qcow2,file.backing.backing=parent0", secondary);
        Assert.Contains("if=none,id=colo-disk0,driver=quorum,read-pattern=fifo,vote-threshold=1,children.0=childs0", secondary);

        // The same devices in the same order on both sides: the migration carries their state.
        static IEnumerable<string> Devices(List<string> line) => line.Where((a, i) => i > 0 && line[i - 1] == "-device");
        Assert.Equal(Devices(primary), Devices(secondary));

        // The secondary's NBD export, on its COLO address at base_port + 3, as the primary's copy and replication reach it.
        Assert.Equal(("192.168.77.2", 9003), lines.NbdAddress(lines.Local));
        Assert.Equal(("192.168.77.1", 9003), lines.NbdAddress(lines.Peer));
    }
}

public class ColoResourceMetadataTests
{
    [Fact]
    public void The_meta_data_lists_every_parameter_once_with_its_default_and_every_action_with_a_timeout()
    {
        XDocument document = XDocument.Parse(ColoResourceMetadata.Text());
        XElement agent = document.Root!;
        Assert.Equal("colo", agent.Attribute("name")!.Value);
        Assert.Equal("1.1", agent.Element("version")!.Value);
        var parameters = agent.Element("parameters")!.Elements("parameter").ToList();
        Assert.Equal(ColoResourceParameters.Definitions.Select(d => d.Name), parameters.Select(p => p.Attribute("name")!.Value));
        foreach ((XElement element, ColoResourceParameter definition) in parameters.Zip(ColoResourceParameters.Definitions))
        {
            Assert.Equal(definition.Default, element.Element("content")!.Attribute("default")!.Value);
            Assert.Equal(definition.Required ? "1" : "0", element.Attribute("required")!.Value);
        }

        var actions = agent.Element("actions")!.Elements("action").ToList();
        Assert.Equal(["start", "stop", "monitor", "monitor", "promote", "demote", "notify", "meta-data", "validate-all"], actions.Select(a => a.Attribute("name")!.Value));
        Assert.All(actions, a => Assert.NotNull(a.Attribute("timeout")));
        // Pacemaker needs the two roles' monitors at different intervals.
        Assert.Equal(["Unpromoted", "Promoted"], actions.Where(a => a.Attribute("role") is not null).Select(a => a.Attribute("role")!.Value));
        Assert.Equal(2, actions.Where(a => a.Attribute("name")!.Value == "monitor").Select(a => a.Attribute("interval")!.Value).Distinct().Count());
    }
}
