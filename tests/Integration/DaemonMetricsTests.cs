using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using ColoChardev.Testbed;

namespace ColoChardev.Integration;

/// <summary>
/// The Prometheus scrape endpoint of the daemon as a real process (issue 8, first step): scraped during a run, its
/// numbers must be the frames we sent, the releases and drops they caused, the mismatch and its checkpoint request,
/// and the endpoints' state.
/// </summary>
public sealed partial class DaemonMetricsTests : IDisposable
{
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(120));
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private readonly DirectoryInfo _captures = Directory.CreateTempSubdirectory("colo-metrics-");

    public void Dispose()
    {
        _timeout.Dispose();
        _http.Dispose();
        _captures.Delete(recursive: true);
    }

    private static byte[] Udp(string payload, byte mac = 1, ushort port = 53) =>
        new FrameBuilder().SourceMac(mac).Ipv4("10.0.0.10", "10.0.0.1", mac).Udp(port, 40000, Encoding.ASCII.GetBytes(payload)).Build();

    [Fact]
    public async Task A_scrape_during_a_run_counts_what_was_sent_released_dropped_and_asked_for()
    {
        int metricsPort = FreePort.Next();
        await using DaemonRig rig = await DaemonRig.StartAsync(
            vnet: false,
            notify: true,
            // A held mismatch is asked for again every compare_timeout: 60 s keeps it to one request on a busy machine.
            ports => DaemonRig.QemuSyntax(ports.Primary, ports.Secondary, ports.Outdev, ports.Notify, ",compare_timeout=60000"),
            _timeout.Token,
            ["--metrics", $"127.0.0.1:{metricsPort}", "--capture", Path.Combine(_captures.FullName, "c")]);
        await rig.Daemon.WaitForLineAsync($"Prometheus scrape endpoint at http://127.0.0.1:{metricsPort}/metrics", TimeSpan.FromSeconds(10));
        string url = $"http://127.0.0.1:{metricsPort}/metrics";

        // 40 datagrams that match (over 4 flows), then one that differs.
        byte[][] primary = [.. Enumerable.Range(0, 40).Select(i => Udp($"answer {i}", port: (ushort)(1000 + (i % 4))))];
        await rig.SendPrimaryAsync(primary);
        await rig.SendSecondaryAsync([.. Enumerable.Range(0, 40).Select(i => Udp($"answer {i}", mac: 2, port: (ushort)(1000 + (i % 4))))]);
        Assert.Equal(40, (await rig.ReadReleasedAsync(40)).Count);
        await rig.SendPrimaryAsync(Udp("primary says", port: 2000));
        await rig.SendSecondaryAsync(Udp("second says", mac: 2, port: 2000));
        Assert.Equal("DO_CHECKPOINT", await rig.ReadNotifyAsync());

        Dictionary<string, double> m = await ScrapeAsync(url, s => Value(s, "colo_compare_frames_out_total{nic=\"comp0\"}") == 40 && Value(s, "colo_compare_captures_total{nic=\"comp0\"}") == 1);
        Assert.Equal(1, Value(m, "colo_compare_divergences_total{nic=\"comp0\"}"));
        Assert.Equal(0, Value(m, "colo_compare_captures_skipped_total{nic=\"comp0\",reason=\"Busy\"}"));
        Assert.Equal(0, Value(m, "colo_compare_captures_skipped_total{nic=\"comp0\",reason=\"WriteFailed\"}"));
        Assert.Equal(41, Value(m, "colo_compare_frames_in_total{nic=\"comp0\",side=\"primary\"}"));
        Assert.Equal(41, Value(m, "colo_compare_frames_in_total{nic=\"comp0\",side=\"secondary\"}"));
        Assert.Equal(40, Value(m, "colo_compare_frames_released_total{nic=\"comp0\",reason=\"Matched\"}"));
        Assert.Equal(40, Value(m, "colo_compare_frames_dropped_total{nic=\"comp0\",reason=\"Matched\",side=\"secondary\"}"));
        Assert.Equal(1, Value(m, "colo_compare_mismatches_total{nic=\"comp0\",protocol=\"Udp\"}"));
        Assert.Equal(0, Value(m, "colo_compare_mismatches_total{nic=\"comp0\",protocol=\"Tcp\"}"));
        Assert.Equal(1, Value(m, "colo_compare_checkpoint_requests_total{nic=\"comp0\",reason=\"Mismatch\"}"));
        Assert.Equal(1, Value(m, "colo_compare_queued_frames{nic=\"comp0\",side=\"primary\"}"));
        Assert.Equal(5, Value(m, "colo_compare_flows{nic=\"comp0\"}"));
        Assert.Equal(0, Value(m, "colo_compare_checkpoints_total{nic=\"comp0\"}"));
        foreach (string endpoint in new[] { "primary_in", "secondary_in", "outdev", "notify_dev" })
        {
            Assert.Equal(1, Value(m, $"colo_compare_endpoint_connected{{endpoint=\"{endpoint}\",nic=\"comp0\"}}"));
            Assert.Equal(1, Value(m, $"colo_compare_endpoint_connections_total{{endpoint=\"{endpoint}\",nic=\"comp0\"}}"));
        }

        Assert.Contains("process_cpu_seconds_total", m.Keys);
        Assert.DoesNotContain(m.Keys, k => k.Contains("flow=", StringComparison.Ordinal) || k.Contains("10.0.0.", StringComparison.Ordinal));

        // The checkpoint completes (after 300 ms: the held frame's wait): the frame goes out and the scrape says so.
        await Task.Delay(300, _timeout.Token);
        await rig.SendNotifyAsync("COLO_CHECKPOINT");
        Assert.Single(await rig.ReadReleasedAsync(1));
        m = await ScrapeAsync(url, s => Value(s, "colo_compare_frames_out_total{nic=\"comp0\"}") == 41);
        Assert.Equal(1, Value(m, "colo_compare_checkpoints_total{nic=\"comp0\"}"));
        Assert.Equal(1, Value(m, "colo_compare_frames_released_total{nic=\"comp0\",reason=\"Checkpoint\"}"));
        Assert.Equal(0, Value(m, "colo_compare_queued_frames{nic=\"comp0\",side=\"primary\"}"));
        Assert.Equal(0, Value(m, "colo_compare_queued_bytes{nic=\"comp0\"}"));

        // Every released frame had been queued: the histogram counts all 41, the held one above 0.2 s.
        Assert.Equal(41, Value(m, "colo_compare_queued_seconds_count{nic=\"comp0\"}"));
        Assert.Equal(41, Value(m, "colo_compare_queued_seconds_bucket{le=\"+Inf\",nic=\"comp0\"}"));
        Assert.InRange(Value(m, "colo_compare_queued_seconds_bucket{le=\"0.2\",nic=\"comp0\"}"), 0, 40);
        Assert.True(Value(m, "colo_compare_queued_seconds_sum{nic=\"comp0\"}") >= 0.3);
        Assert.Equal(0, Value(m, "colo_compare_checkpoint_duration_seconds_count")); // no QMP here: notify_dev checkpoints have no STOP
        Assert.Equal(0, await rig.Daemon.StopAsync(TimeSpan.FromSeconds(20)));
    }

    [Theory]
    [InlineData("--metrics", "0")]
    [InlineData("--metrics", "example.org:9100")]
    [InlineData("--metrics", "127.0.0.1:70000")]
    public async Task A_bad_metrics_address_is_refused_with_its_form(string option, string value)
    {
        await using DaemonProcess daemon = DaemonProcess.Start(["--primary-in", "tcp:127.0.0.1:1", "--secondary-in", "tcp:127.0.0.1:2,server", "--outdev", "tcp:127.0.0.1:3", option, value]);
        Assert.Equal(2, await daemon.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains($"'--metrics={value}' must be PORT or HOST:PORT", daemon.Output, StringComparison.Ordinal);
    }

    private static double Value(Dictionary<string, double> metrics, string key) =>
        metrics.TryGetValue(key, out double value) ? value : throw new KeyNotFoundException($"no {key} in the scrape:\n{string.Join('\n', metrics.Keys.Where(k => k.StartsWith("colo_compare", StringComparison.Ordinal)))}");

    /// <summary>Scrapes until <paramref name="ready"/> holds (the writer and counters catch up within moments).</summary>
    private async Task<Dictionary<string, double>> ScrapeAsync(string url, Func<Dictionary<string, double>, bool> ready)
    {
        Dictionary<string, double> metrics = [];
        for (int attempt = 0; attempt < 100; attempt++)
        {
            string text = await _http.GetStringAsync(new Uri(url), _timeout.Token);
            metrics = SampleLine().Matches(text).ToDictionary(
                match => match.Groups["key"].Value,
                match => double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture));
            if (metrics.ContainsKey("colo_compare_frames_out_total{nic=\"comp0\"}") && ready(metrics))
            {
                return metrics;
            }

            await Task.Delay(100, _timeout.Token);
        }

        return metrics;
    }

    [GeneratedRegex(@"^(?<key>[a-z_]+(\{[^}]*\})?) (?<value>[-+0-9.eE]+)$", RegexOptions.Multiline)]
    private static partial Regex SampleLine();
}
