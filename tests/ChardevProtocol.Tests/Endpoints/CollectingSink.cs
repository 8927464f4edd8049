using System.Threading.Channels;
using ColoChardev.ChardevProtocol.Endpoints;
using ColoChardev.ChardevProtocol.Framing;

namespace ColoChardev.ChardevProtocol.Tests.Endpoints;

/// <summary>A frame sink that copies every frame into a channel the test can await.</summary>
internal sealed class CollectingSink : IChardevFrameSink
{
    private readonly Channel<(byte[] Payload, uint Vnet)> _frames = Channel.CreateUnbounded<(byte[], uint)>();

    public ValueTask OnFramesAsync(List<ChardevFrame> frames, CancellationToken cancellationToken)
    {
        foreach (ChardevFrame frame in frames)
        {
            _frames.Writer.TryWrite((frame.Payload.ToArray(), frame.VnetHdrLen));
            frame.Dispose();
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>The next frame, or a TimeoutException after <paramref name="seconds"/>.</summary>
    public async Task<(byte[] Payload, uint Vnet)> NextAsync(double seconds = 20)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try
        {
            return await _frames.Reader.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no frame within {seconds} s");
        }
    }

    public bool TryTake(out (byte[] Payload, uint Vnet) frame) => _frames.Reader.TryRead(out frame);
}
