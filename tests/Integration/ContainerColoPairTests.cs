using ColoChardev.Testbed;
using Xunit.Abstractions;

namespace ColoChardev.Integration;

/// <summary>One pair whose QEMUs run in containers (Testcontainers, local image, --network none).</summary>
public sealed class SharedContainerColoPair : SharedPair<ContainerColoPair>
{
    protected override Task<ContainerColoPair> StartAsync() => ContainerColoPair.StartAsync();
}

/// <summary>The traffic and divergence tests again, with both QEMUs inside containers started through Testcontainers.</summary>
[Trait("Qemu", "real")]
[Collection(ColoPairSerial.Name)]
public sealed class ContainerColoPairTests(SharedContainerColoPair shared, ITestOutputHelper output) : IClassFixture<SharedContainerColoPair>
{
    [Fact]
    public Task In_containers_ping_http_a_4_MiB_download_and_tcp_echo_pass_through_colo_compared_by_the_daemon() =>
        ColoPairScenarios.TrafficIsComparedAndReleasedAsync(shared.Pair, output);

    [Fact]
    public Task In_containers_divergence_requests_a_checkpoint_over_qmp_and_the_client_gets_the_primary_answer_intact() =>
        ColoPairScenarios.DivergenceCheckpointsAndThePrimaryAnswersAsync(shared.Pair, output);
}
