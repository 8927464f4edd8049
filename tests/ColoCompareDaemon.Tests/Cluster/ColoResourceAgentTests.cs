using ColoChardev.Daemon.Cluster;

namespace ColoChardev.ColoCompareDaemon.Tests.Cluster;

public class ColoResourceAgentTests
{
    private static async Task<(int Code, string Output, string Error)> RunAsync(string action, Dictionary<string, string> environment)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = await new ColoResourceAgent(environment, output, error).RunAsync(action, CancellationToken.None);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task Meta_data_needs_no_parameters_and_an_unknown_action_is_unimplemented()
    {
        (int code, string text, _) = await RunAsync("meta-data", []);
        Assert.Equal(OcfExitCode.Success, code);
        Assert.StartsWith("<?xml version=\"1.0\"?>\n<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">", text, StringComparison.Ordinal);
        (code, _, string error) = await RunAsync("reload", []);
        Assert.Equal(OcfExitCode.Unimplemented, code);
        Assert.Contains("'reload' is not one of", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_a_usable_configuration_start_is_not_configured_but_stop_and_a_probe_find_nothing_running()
    {
        var broken = new Dictionary<string, string> { ["OCF_RESKEY_vm_name"] = "vm1" };
        Assert.Equal(OcfExitCode.Configured, (await RunAsync("start", broken)).Code);
        Assert.Equal(OcfExitCode.Configured, (await RunAsync("validate-all", broken)).Code);
        // Nothing can have been started with it, so the cluster may clean up instead of escalating to fencing.
        Assert.Equal(OcfExitCode.Success, (await RunAsync("stop", broken)).Code);
        Assert.Equal(OcfExitCode.NotRunning, (await RunAsync("monitor", broken)).Code);
        broken["OCF_RESKEY_CRM_meta_interval"] = "3000";
        Assert.Equal(OcfExitCode.Configured, (await RunAsync("monitor", broken)).Code);
    }

    [Fact]
    public async Task A_node_that_is_not_one_of_the_two_is_refused_locally()
    {
        var environment = new Dictionary<string, string>
        {
            ["OCF_RESKEY_vm_name"] = "vm1",
            ["OCF_RESKEY_node_addresses"] = "n1=192.168.77.1 n2=192.168.77.2",
            ["OCF_RESKEY_qemu_options"] = "-m 128M",
            ["OCF_RESKEY_CRM_meta_on_node"] = "n3",
            ["OCF_RESKEY_state_dir"] = Path.Combine(Path.GetTempPath(), "colo-ra-unit-" + Guid.NewGuid().ToString("N")),
        };
        (int code, _, string error) = await RunAsync("start", environment);
        Assert.Equal(OcfExitCode.Args, code);
        Assert.Contains("this node 'n3' is not in node_addresses (n1, n2)", error, StringComparison.Ordinal);
        Assert.Equal(OcfExitCode.Args, (await RunAsync("validate-all", environment)).Code);
        Assert.Equal(OcfExitCode.Success, (await RunAsync("stop", environment)).Code);
    }
}

public class ColoNodeTests
{
    [Fact]
    public void A_log_past_its_limit_is_kept_as_dot_1_and_emptied_and_a_writer_holding_it_open_goes_on_at_the_new_end()
    {
        string dir = Directory.CreateTempSubdirectory("colo-node-").FullName;
        try
        {
            var environment = new Dictionary<string, string>
            {
                ["OCF_RESKEY_vm_name"] = "vm1",
                ["OCF_RESKEY_node_addresses"] = "n1=192.168.77.1 n2=192.168.77.2",
                ["OCF_RESKEY_qemu_options"] = "-m 128M",
                ["OCF_RESKEY_state_dir"] = dir,
            };
            Assert.True(ColoResourceParameters.TryParse(environment, out ColoResourceParameters? parameters, out string? error), error);
            var node = new ColoNode(parameters!, new ColoCommandLines(parameters!, parameters!.Nodes[0], new Qmp.QmpVersion(7, 2, 0)), TextWriter.Null);
            string log = Path.Combine(dir, "daemon.log");
            File.WriteAllBytes(log, new byte[ColoNode.LogLimitBytes - 1]);
            // The daemon's descriptor as the agent opens it: sh's >> (O_APPEND), held open while the log is trimmed.
            var start = new System.Diagnostics.ProcessStartInfo("sh", ["-c", "exec >>\"$0\"; while read -r line; do echo \"$line\"; done", log]) { RedirectStandardInput = true };
            using System.Diagnostics.Process writer = System.Diagnostics.Process.Start(start)!;
            node.TrimLogs();
            Assert.Equal(ColoNode.LogLimitBytes - 1, new FileInfo(log).Length);
            Assert.False(File.Exists(log + ".1"));

            writer.StandardInput.WriteLine("past the limit");
            WaitFor(() => new FileInfo(log).Length == ColoNode.LogLimitBytes + 14);
            node.TrimLogs();
            Assert.Equal(ColoNode.LogLimitBytes + 14, new FileInfo(log + ".1").Length);
            Assert.Equal(0, new FileInfo(log).Length);
            writer.StandardInput.WriteLine("after");
            WaitFor(() => new FileInfo(log).Length > 0);
            Assert.Equal("after\n", File.ReadAllText(log));
            writer.StandardInput.Close();
            writer.WaitForExit();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void WaitFor(Func<bool> condition)
    {
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(10), "the writer did not write");
            Thread.Sleep(10);
        }
    }
}
