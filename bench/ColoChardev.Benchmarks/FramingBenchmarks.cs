using System.Buffers;
using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;
using ColoChardev.ChardevProtocol.Framing;
using ColoChardev.ChardevProtocol.Packets;
using ColoChardev.Testbed;

namespace ColoChardev.Benchmarks;

/// <summary>
/// Frame decoding: the pure decoder alone, and the reader that copies each frame into a pooled buffer
/// (what the daemon runs per received frame). Figures are per frame.
/// </summary>
public class FramingBenchmarks
{
    private const int FramesPerBatch = 1024;
    private ReadOnlySequence<byte> _stream;
    private ReplayPipeReader _pipe = null!;
    private ChardevFrameReader _reader = null!;
    private readonly List<ChardevFrame> _batch = new(FramesPerBatch);

    [Params(64, 1454)]
    public int FrameSize { get; set; }

    [Params(false, true)]
    public bool Vnet { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        byte[] frame = SampleFrames.Tcp(FrameSize);
        var writer = new ArrayBufferWriter<byte>();
        for (int i = 0; i < FramesPerBatch; i++)
        {
            FrameEncoder.WriteFrame(writer, frame, Vnet, Vnet ? 12u : 0u);
        }

        // Split into 64 KiB segments, as socket reads would deliver them.
        _stream = SampleFrames.Segmented(writer.WrittenMemory, 64 * 1024);
        _pipe = new ReplayPipeReader(_stream);
        _reader = new ChardevFrameReader(_pipe, Vnet, "bench");
    }

    [Benchmark(OperationsPerInvoke = FramesPerBatch)]
    public long DecodeOnly()
    {
        ReadOnlySequence<byte> buffer = _stream;
        long bytes = 0;
        while (FrameDecoder.TryReadFrame(ref buffer, Vnet, out FrameHeader header, out _) == FrameReadStatus.Complete)
        {
            bytes += header.Length;
        }

        return bytes;
    }

    [Benchmark(OperationsPerInvoke = FramesPerBatch)]
    public int ReadIntoPooledFrames()
    {
        _pipe.Rewind();
        int count = 0;
        while (count < FramesPerBatch)
        {
            // The replay reader always has data, so the read completes synchronously.
            ValueTask<bool> read = _reader.ReadBatchAsync(_batch);
            if (!read.IsCompletedSuccessfully || !read.Result)
            {
                throw new InvalidOperationException("the replayed stream did not complete synchronously");
            }

            foreach (ChardevFrame frame in _batch)
            {
                count++;
                frame.Dispose();
            }

            _batch.Clear();
        }

        return count;
    }
}

/// <summary>Packet parsing cost per frame.</summary>
public class ParsingBenchmarks
{
    private byte[] _tcp = null!;
    private byte[] _udp6 = null!;

    [Params(64, 1454)]
    public int FrameSize { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _tcp = SampleFrames.Tcp(FrameSize);
        _udp6 = new FrameBuilder().Vlan(0x8100, 5).Ipv6("fd00::1", "fd00::2").Udp(1, 2, new byte[Math.Max(0, FrameSize - 66)]).Build();
    }

    [Benchmark]
    public int ParseIpv4Tcp()
    {
        PacketParser.TryParse(_tcp, 0, out ParsedPacket packet);
        return packet.PayloadLength;
    }

    [Benchmark]
    public int ParseVlanIpv6Udp()
    {
        PacketParser.TryParse(_udp6, 0, out ParsedPacket packet);
        return packet.PayloadLength;
    }
}
