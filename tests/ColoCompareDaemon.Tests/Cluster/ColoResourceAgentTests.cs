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
