using System.Net;
using ColoChardev.Qmp;

namespace ColoChardev.Testbed;

/// <summary>What a test needs from a running COLO pair, however its QEMUs were started (processes or containers).</summary>
public interface IColoPair : IAsyncDisposable
{
    /// <summary>The client's network namespace (the pair's bridge holds the client address).</summary>
    NetworkNamespace ClientNamespace { get; }

    /// <summary>The guest's address (the same on both VMs).</summary>
    IPAddress GuestAddress { get; }

    /// <summary>The 16 MiB file the guest serves as /payload.bin (its first 4 MiB as /4m.bin).</summary>
    byte[] Payload { get; }

    /// <summary>busybox ping from the client address; returns the replies received.</summary>
    Task<int> PingAsync(int count);

    /// <summary>A QMP connection to a VM's monitor for tests.</summary>
    Task<QmpClient> ConnectQmpAsync(ColoVm vm, CancellationToken cancellationToken);

    /// <summary>The daemon's output so far.</summary>
    string DaemonLog();

    /// <summary>Waits for a daemon summary line written after this call.</summary>
    Task<DaemonSummary> NextSummaryAsync(TimeSpan timeout);

    /// <summary>The last lines of every log of the pair, for failure messages.</summary>
    string Diagnostics();
}
