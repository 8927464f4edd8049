using System.Net;
using Prometheus;
using ColoChardev.Daemon.Configuration;

namespace ColoChardev.Daemon.Hosting;

/// <summary>
/// The Prometheus scrape endpoint (<c>--metrics</c>): prometheus-net's <see cref="MetricServer"/> publishing our meter
/// (<see cref="DaemonMetrics"/>) and the process metrics (CPU, memory, open files, start time). Its EventCounter and
/// debug metrics are off: they cost a listener on the runtime and tell an operator nothing about COLO.
/// </summary>
internal static class MetricsExport
{
    private static int s_configured;

    public static MetricServer Start(MetricsEndpoint endpoint)
    {
        if (Interlocked.Exchange(ref s_configured, 1) == 0)
        {
            // Global to prometheus-net, and only effective before its default registry is first used.
            Metrics.SuppressDefaultMetrics(new SuppressDefaultMetricOptions
            {
                SuppressEventCounters = true,
                SuppressDebugMetrics = true,
                SuppressMeters = false,
                SuppressProcessMetrics = false,
            });
            Metrics.ConfigureMeterAdapter(options => options.InstrumentFilterPredicate = instrument => instrument.Meter.Name == DaemonMetrics.MeterName);
        }

        var server = new MetricServer(endpoint.Host, endpoint.Port, "metrics/");
        try
        {
            server.Start();
        }
        catch (HttpListenerException e)
        {
            server.Dispose();
            throw new InvalidOperationException($"--metrics {endpoint.Url}: cannot listen ({e.Message})", e);
        }

        return server;
    }
}
