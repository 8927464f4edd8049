using ColoChardev.ChardevProtocol.Framing;

namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>Consumer of the frames an endpoint receives (see <see cref="ChardevEndpoint.ReceiveFramesAsync"/>).</summary>
public interface IChardevFrameSink
{
    /// <summary>
    /// Takes a batch of frames in arrival order. The sink owns every frame in <paramref name="frames"/> from
    /// this call on (it must dispose each one); the list itself is reused after the call returns.
    /// </summary>
    ValueTask OnFramesAsync(List<ChardevFrame> frames, CancellationToken cancellationToken);
}
