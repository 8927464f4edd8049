using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using ColoChardev.ChardevProtocol.Framing;

namespace ColoChardev.ChardevProtocol.Tests.Framing;

public class FrameDecoderTests
{
    /// <summary>Frames decoded from <paramref name="buffer"/> until it is incomplete.</summary>
    private static List<(byte[] Payload, uint Vnet)> DecodeAll(ref ReadOnlySequence<byte> buffer, bool vnet)
    {
        var frames = new List<(byte[], uint)>();
        while (FrameDecoder.TryReadFrame(ref buffer, vnet, out FrameHeader header, out ReadOnlySequence<byte> payload) == FrameReadStatus.Complete)
        {
            Assert.Equal(header.Length, (uint)payload.Length);
            frames.Add((payload.ToArray(), header.VnetHdrLen));
        }

        return frames;
    }

    private static byte[] Encode(IEnumerable<(byte[] Payload, uint Vnet)> frames, bool vnet)
    {
        var writer = new ArrayBufferWriter<byte>();
        foreach ((byte[] payload, uint vnetHdrLen) in frames)
        {
            FrameEncoder.WriteFrame(writer, payload, vnet, vnetHdrLen);
        }

        return writer.WrittenSpan.ToArray();
    }

    private static List<(byte[] Payload, uint Vnet)> SampleFrames() =>
    [
        (Encoding.ASCII.GetBytes("Hello!!\0"), 0),
        ([0x01], 12),
        (Enumerable.Range(0, 300).Select(i => (byte)i).ToArray(), 10),
        (Encoding.ASCII.GetBytes("Hello! filter-mirror~\0"), 0),
    ];

    [Fact]
    public void Qemu_filter_mirror_reference_frame_decodes()
    {
        // spec §5.2, from tests/qtest/test-filter-mirror.c: be32 22 + "Hello! filter-mirror~\0".
        byte[] wire = [0x00, 0x00, 0x00, 0x16, .. Encoding.ASCII.GetBytes("Hello! filter-mirror~\0")];
        var buffer = new ReadOnlySequence<byte>(wire);
        Assert.Equal(FrameReadStatus.Complete, FrameDecoder.TryReadFrame(ref buffer, false, out FrameHeader header, out ReadOnlySequence<byte> payload));
        Assert.Equal(22u, header.Length);
        Assert.Equal("Hello! filter-mirror~\0", Encoding.ASCII.GetString(payload.ToArray()));
        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void Qemu_filter_redirector_reference_frame_round_trips_byte_exact()
    {
        // spec §5.2, from tests/qtest/test-filter-redirector.c: be32 8 + "Hello!!\0".
        byte[] expected = [0x00, 0x00, 0x00, 0x08, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x21, 0x21, 0x00];
        byte[] encoded = Encode([(Encoding.ASCII.GetBytes("Hello!!\0"), 0)], vnet: false);
        Assert.Equal(expected, encoded);
    }

    [Fact]
    public void Vnet_frame_carries_the_second_length_word()
    {
        // spec §5.2: 00 00 00 LL 00 00 00 VV + payload.
        byte[] encoded = Encode([(new byte[] { 0xAA, 0xBB, 0xCC }, 12)], vnet: true);
        Assert.Equal(new byte[] { 0, 0, 0, 3, 0, 0, 0, 12, 0xAA, 0xBB, 0xCC }, encoded);
        var buffer = new ReadOnlySequence<byte>(encoded);
        Assert.Equal(FrameReadStatus.Complete, FrameDecoder.TryReadFrame(ref buffer, true, out FrameHeader header, out _));
        Assert.Equal(new FrameHeader(3, 12), header);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Every_single_split_point_of_a_stream_gives_the_same_frames(bool vnet)
    {
        List<(byte[] Payload, uint Vnet)> frames = SampleFrames();
        if (!vnet)
        {
            frames = frames.Select(f => (f.Payload, 0u)).ToList();
        }

        byte[] stream = Encode(frames, vnet);
        for (int cut = 0; cut <= stream.Length; cut++)
        {
            ReadOnlySequence<byte> buffer = Sequences.Split(stream, cut);
            List<(byte[] Payload, uint Vnet)> decoded = DecodeAll(ref buffer, vnet);
            Assert.True(buffer.IsEmpty, $"bytes left over at cut {cut}");
            Assert.Equal(frames.Count, decoded.Count);
            for (int i = 0; i < frames.Count; i++)
            {
                Assert.Equal(frames[i].Payload, decoded[i].Payload);
                Assert.Equal(frames[i].Vnet, decoded[i].Vnet);
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Every_pair_of_split_points_gives_the_same_frames(bool vnet)
    {
        List<(byte[] Payload, uint Vnet)> frames = [(Encoding.ASCII.GetBytes("Hello!!\0"), vnet ? 7u : 0), ([9, 8, 7, 6, 5], 0), ([1], vnet ? 1u : 0)];
        byte[] stream = Encode(frames, vnet);
        for (int a = 0; a <= stream.Length; a++)
        {
            for (int b = a; b <= stream.Length; b++)
            {
                ReadOnlySequence<byte> buffer = Sequences.Split(stream, a, b);
                List<(byte[] Payload, uint Vnet)> decoded = DecodeAll(ref buffer, vnet);
                Assert.True(buffer.IsEmpty);
                Assert.Equal(frames.Select(f => Convert.ToHexString(f.Payload) + "/" + f.Vnet), decoded.Select(f => Convert.ToHexString(f.Payload) + "/" + f.Vnet));
            }
        }
    }

    [Fact]
    public void An_incomplete_frame_leaves_the_buffer_unchanged()
    {
        byte[] stream = Encode([([1, 2, 3, 4], 0)], false);
        for (int length = 0; length < stream.Length; length++)
        {
            var buffer = new ReadOnlySequence<byte>(stream, 0, length);
            Assert.Equal(FrameReadStatus.Incomplete, FrameDecoder.TryReadFrame(ref buffer, false, out _, out _));
            Assert.Equal(length, buffer.Length);
        }
    }

    [Fact]
    public void Exactly_69632_bytes_is_accepted_and_one_more_is_oversized()
    {
        var writer = new ArrayBufferWriter<byte>();
        FrameEncoder.WriteFrame(writer, new byte[ChardevFraming.MaxPayloadLength], false, 0);
        var buffer = new ReadOnlySequence<byte>(writer.WrittenMemory);
        Assert.Equal(FrameReadStatus.Complete, FrameDecoder.TryReadFrame(ref buffer, false, out FrameHeader header, out _));
        Assert.Equal(69632u, header.Length);

        byte[] oversized = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(oversized, 69633);
        buffer = new ReadOnlySequence<byte>(oversized);
        Assert.Equal(FrameReadStatus.Oversized, FrameDecoder.TryReadFrame(ref buffer, false, out header, out _));
        Assert.Equal(69633u, header.Length);
        Assert.Equal(8, buffer.Length);
    }

    [Fact]
    public void Oversize_is_detected_from_the_length_word_alone()
    {
        // QEMU notices only after 69,632 payload bytes; we know from the header (spec §1.1, vector 17).
        byte[] header = [0x00, 0x01, 0x11, 0x70, 0, 0, 0, 0]; // 70000, then a vnet word
        var buffer = new ReadOnlySequence<byte>(header);
        Assert.Equal(FrameReadStatus.Oversized, FrameDecoder.TryReadFrame(ref buffer, true, out FrameHeader parsed, out _));
        Assert.Equal(70000u, parsed.Length);
    }

    [Fact]
    public void A_zero_length_frame_is_a_complete_empty_frame()
    {
        byte[] stream = [0, 0, 0, 0, 0, 0, 0, 1, 0x42];
        var buffer = new ReadOnlySequence<byte>(stream);
        Assert.Equal(FrameReadStatus.Complete, FrameDecoder.TryReadFrame(ref buffer, false, out FrameHeader header, out ReadOnlySequence<byte> payload));
        Assert.Equal(0u, header.Length);
        Assert.True(payload.IsEmpty);
        Assert.Equal(FrameReadStatus.Complete, FrameDecoder.TryReadFrame(ref buffer, false, out header, out payload));
        Assert.Equal(new byte[] { 0x42 }, payload.ToArray());
    }

    [Fact]
    public void The_encoder_refuses_zero_length_and_oversized_payloads()
    {
        var writer = new ArrayBufferWriter<byte>();
        ArgumentException zero = Assert.Throws<ArgumentException>(() => FrameEncoder.WriteFrame(writer, [], false, 0));
        Assert.Contains("zero-length", zero.Message, StringComparison.Ordinal);
        ArgumentException big = Assert.Throws<ArgumentException>(() => FrameEncoder.WriteFrame(writer, new byte[ChardevFraming.MaxPayloadLength + 1], true, 0));
        Assert.Contains("69633", big.Message, StringComparison.Ordinal);
        Assert.Equal(0, writer.WrittenCount);
    }

    [Fact]
    public void The_encoder_copes_with_a_writer_that_hands_out_small_spans()
    {
        var writer = new TinySpanWriter(3);
        FrameEncoder.WriteFrame(writer, [1, 2, 3, 4, 5, 6, 7], true, 0x01020304);
        Assert.Equal(new byte[] { 0, 0, 0, 7, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7 }, writer.Written.ToArray());
    }

    /// <summary>An IBufferWriter that never gives more than a few bytes at a time (allowed by the contract).</summary>
    private sealed class TinySpanWriter(int spanSize) : IBufferWriter<byte>
    {
        private byte[] _buffer = new byte[spanSize];

        public List<byte> Written { get; } = [];

        public void Advance(int count) => Written.AddRange(_buffer[..count]);

        public Memory<byte> GetMemory(int sizeHint = 0) => _buffer = new byte[spanSize];

        public Span<byte> GetSpan(int sizeHint = 0) => _buffer = new byte[spanSize];
    }
}
