using System.Buffers;
using System.IO.Pipelines;
using ColoChardev.ChardevProtocol.Framing;
using CsCheck;
using Nerdbank.Streams;

namespace ColoChardev.ChardevProtocol.Tests.Framing;

public class ChardevFrameReaderTests
{
    private static byte[] Frame(byte[] payload, bool vnet, uint vnetHdrLen = 0)
    {
        var writer = new ArrayBufferWriter<byte>();
        if (payload.Length == 0)
        {
            // The encoder refuses zero-length frames, so build one by hand to feed the reader.
            writer.Write(vnet ? new byte[8] : new byte[4]);
            return writer.WrittenSpan.ToArray();
        }

        FrameEncoder.WriteFrame(writer, payload, vnet, vnetHdrLen);
        return writer.WrittenSpan.ToArray();
    }

    private static async Task<List<(byte[] Payload, uint Vnet)>> ReadAllAsync(ChardevFrameReader reader)
    {
        var result = new List<(byte[], uint)>();
        var batch = new List<ChardevFrame>();
        while (await reader.ReadBatchAsync(batch))
        {
            foreach (ChardevFrame frame in batch)
            {
                result.Add((frame.Payload.ToArray(), frame.VnetHdrLen));
                frame.Dispose();
            }

            batch.Clear();
        }

        return result;
    }

    /// <summary>Writes the chunks one flush at a time while the reader reads, then closes.</summary>
    private static async Task<(List<(byte[] Payload, uint Vnet)> Frames, ChardevStatistics Statistics)> FeedAsync(IEnumerable<byte[]> chunks, bool vnet)
    {
        var pipe = new Pipe();
        var statistics = new ChardevStatistics();
        var reader = new ChardevFrameReader(pipe.Reader, vnet, "test", statistics);
        Task<List<(byte[] Payload, uint Vnet)>> reading = ReadAllAsync(reader);
        foreach (byte[] chunk in chunks)
        {
            await pipe.Writer.WriteAsync(chunk);
        }

        await pipe.Writer.CompleteAsync();
        return (await reading, statistics);
    }

    [Fact]
    public void Random_frames_in_random_chunks_come_out_whole_and_in_order()
    {
        Gen<(bool Vnet, byte[][] Payloads, int[] ChunkSizes)> gen =
            from vnet in Gen.Bool
            from payloads in Gen.Byte.Array[0, 1600].Array[1, 12]
            from chunkSizes in Gen.Int[1, 700].Array[1, 20]
            select (vnet, payloads, chunkSizes);
        gen.Sample(
            sample =>
            {
                byte[] stream = sample.Payloads.SelectMany((p, i) => Frame(p, sample.Vnet, (uint)i)).ToArray();
                var chunks = new List<byte[]>();
                int position = 0;
                for (int i = 0; position < stream.Length; i++)
                {
                    int size = Math.Min(sample.ChunkSizes[i % sample.ChunkSizes.Length], stream.Length - position);
                    chunks.Add(stream[position..(position + size)]);
                    position += size;
                }

                (List<(byte[] Payload, uint Vnet)> frames, ChardevStatistics statistics) = FeedAsync(chunks, sample.Vnet).GetAwaiter().GetResult();
                var expected = sample.Payloads.Select((p, i) => (Payload: p, Vnet: sample.Vnet ? (uint)i : 0u)).Where(f => f.Payload.Length > 0).ToList();
                Assert.Equal(expected.Count, frames.Count);
                for (int i = 0; i < expected.Count; i++)
                {
                    Assert.Equal(expected[i].Payload, frames[i].Payload);
                    Assert.Equal(expected[i].Vnet, frames[i].Vnet);
                }

                Assert.Equal(sample.Payloads.Count(p => p.Length == 0), statistics.ZeroLengthFrames);
                Assert.Equal(expected.Count, statistics.FramesRead);
                Assert.Equal(0, statistics.TruncatedFrames);
            },
            iter: 300);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Frames_spanning_many_small_pipe_segments_come_out_whole_and_an_oversized_one_after_them_is_reported(bool vnet)
    {
        // Tiny segments: the reader's span fast path ends at every segment edge and the sequence path takes the
        // frame that crosses it; the oversized header is found by whichever path reaches it.
        var pipe = new Pipe(new PipeOptions(minimumSegmentSize: 16, pauseWriterThreshold: 0));
        var reader = new ChardevFrameReader(pipe.Reader, vnet, "tiny", new ChardevStatistics());
        byte[][] payloads = [.. Enumerable.Range(1, 40).Select(i => Enumerable.Range(0, (i * 37) % 90 + 1).Select(b => (byte)(b + i)).ToArray())];
        foreach (byte[] payload in payloads)
        {
            await pipe.Writer.WriteAsync(Frame(payload, vnet, (uint)payload.Length));
        }

        byte[] oversized = new byte[vnet ? 8 : 4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(oversized, ChardevFraming.MaxPayloadLength + 1);
        await pipe.Writer.WriteAsync(oversized);
        await pipe.Writer.CompleteAsync();
        var got = new List<ChardevFrame>();
        ChardevFrameTooLargeException error = await Assert.ThrowsAsync<ChardevFrameTooLargeException>(async () =>
        {
            while (await reader.ReadBatchAsync(got))
            {
            }
        });
        Assert.Contains("tiny", error.Message, StringComparison.Ordinal);
        Assert.Equal(payloads.Length, got.Count);
        for (int i = 0; i < payloads.Length; i++)
        {
            Assert.Equal(payloads[i], got[i].Payload.ToArray());
            Assert.Equal(vnet ? (uint)payloads[i].Length : 0u, got[i].VnetHdrLen);
            got[i].Dispose();
        }
    }

    [Fact]
    public async Task Frames_that_fill_a_pipe_segment_exactly_are_followed_by_the_frames_of_the_next_segment()
    {
        // Found by the random-chunk property in CI: six frames of exactly 4,096 bytes (the pipe's segment size), the
        // rest in one more segment. After the first segment the rest is single-segment again; it must still be read.
        int[] lengths = [304, 1128, 911, 853, 298, 578, 423, 1160, 609, 384, 438];
        byte[][] payloads = [.. lengths.Select((length, i) => Enumerable.Range(0, length).Select(b => (byte)(b * 7 + i)).ToArray())];
        byte[] stream = [.. payloads.SelectMany(p => Frame(p, vnet: false))];
        Assert.Equal(4096, payloads.Take(6).Sum(p => p.Length + 4));
        var pipe = new Pipe(new PipeOptions(minimumSegmentSize: 4096));
        await pipe.Writer.WriteAsync(stream);
        await pipe.Writer.CompleteAsync();
        var reader = new ChardevFrameReader(pipe.Reader, false, "exact", new ChardevStatistics());
        List<(byte[] Payload, uint Vnet)> frames = await ReadAllAsync(reader);
        Assert.Equal(payloads.Length, frames.Count);
        for (int i = 0; i < payloads.Length; i++)
        {
            Assert.Equal(payloads[i], frames[i].Payload);
        }

        Assert.Equal(0, reader.Statistics.TruncatedFrames);
    }

    [Fact]
    public void The_span_decoder_reads_complete_frames_and_consumes_nothing_otherwise()
    {
        byte[] stream = [.. Frame([1, 2, 3], vnet: true, vnetHdrLen: 7), .. Frame([9], vnet: true)];
        Assert.Equal(FrameReadStatus.Complete, FrameDecoder.TryReadFrame(stream, true, out FrameHeader header, out int length));
        Assert.Equal((3u, 7u, 11), (header.Length, header.VnetHdrLen, length));
        Assert.Equal(FrameReadStatus.Complete, FrameDecoder.TryReadFrame(stream.AsSpan(length), true, out header, out int second));
        Assert.Equal((1u, 9), (header.Length, second));
        Assert.Equal(FrameReadStatus.Incomplete, FrameDecoder.TryReadFrame(stream.AsSpan(0, 10), true, out _, out int none));
        Assert.Equal(0, none);
        Assert.Equal(FrameReadStatus.Incomplete, FrameDecoder.TryReadFrame(stream.AsSpan(0, 7), true, out _, out _));
        byte[] huge = [0, 0x01, 0x10, 0x01];
        Assert.Equal(FrameReadStatus.Oversized, FrameDecoder.TryReadFrame(huge, false, out header, out _));
        Assert.Equal(0x011001u, header.Length);
    }

    [Fact]
    public void Random_chunking_of_the_pure_decoder_matches_the_frames()
    {
        Gen<(byte[][] Payloads, int[] Cuts)> gen =
            from payloads in Gen.Byte.Array[1, 300].Array[1, 8]
            from cuts in Gen.Int[0, 3000].Array[0, 10]
            select (payloads, cuts);
        gen.Sample(
            sample =>
            {
                byte[] stream = sample.Payloads.SelectMany(p => Frame(p, false)).ToArray();
                int[] cuts = sample.Cuts.Select(c => c % (stream.Length + 1)).Order().ToArray();
                ReadOnlySequence<byte> buffer = Sequences.Split(stream, cuts);
                int count = 0;
                while (FrameDecoder.TryReadFrame(ref buffer, false, out _, out ReadOnlySequence<byte> payload) == FrameReadStatus.Complete)
                {
                    Assert.Equal(sample.Payloads[count], payload.ToArray());
                    count++;
                }

                Assert.Equal(sample.Payloads.Length, count);
                Assert.True(buffer.IsEmpty);
            },
            iter: 1000);
    }

    [Fact]
    public async Task Zero_length_frames_are_counted_and_never_handed_on()
    {
        byte[] stream = [.. Frame([], false), .. Frame([7, 7], false), .. Frame([], false), .. Frame([], false), .. Frame([8], false)];
        (List<(byte[] Payload, uint Vnet)> frames, ChardevStatistics statistics) = await FeedAsync([stream], vnet: false);
        Assert.Equal([new byte[] { 7, 7 }, [8]], frames.Select(f => f.Payload));
        Assert.Equal(3, statistics.ZeroLengthFrames);
        Assert.Equal(2, statistics.FramesRead);
    }

    [Fact]
    public async Task A_stream_of_only_zero_length_frames_ends_cleanly()
    {
        byte[] stream = [.. Frame([], true), .. Frame([], true)];
        (List<(byte[] Payload, uint Vnet)> frames, ChardevStatistics statistics) = await FeedAsync([stream], vnet: true);
        Assert.Empty(frames);
        Assert.Equal(2, statistics.ZeroLengthFrames);
    }

    [Fact]
    public async Task A_peer_closing_mid_frame_loses_only_that_frame_and_it_is_counted()
    {
        byte[] whole = [.. Frame([1, 2, 3], false), .. Frame([4, 5], false)];
        byte[] partial = Frame([6, 6, 6, 6, 6, 6], false)[..7];
        (List<(byte[] Payload, uint Vnet)> frames, ChardevStatistics statistics) = await FeedAsync([whole, partial], vnet: false);
        Assert.Equal([new byte[] { 1, 2, 3 }, [4, 5]], frames.Select(f => f.Payload));
        Assert.Equal(1, statistics.TruncatedFrames);
    }

    [Fact]
    public async Task A_peer_closing_inside_the_header_is_counted_as_truncated()
    {
        (List<(byte[] Payload, uint Vnet)> frames, ChardevStatistics statistics) = await FeedAsync([Frame([1], true), [0, 0]], vnet: true);
        Assert.Single(frames);
        Assert.Equal(1, statistics.TruncatedFrames);
    }

    [Fact]
    public async Task An_oversized_frame_raises_an_error_naming_the_endpoint_and_length_after_the_frames_before_it()
    {
        var pipe = new Pipe();
        var statistics = new ChardevStatistics();
        var reader = new ChardevFrameReader(pipe.Reader, false, "compare0-0", statistics);
        byte[] oversized = [0x00, 0x01, 0x11, 0x70, 1, 2, 3];
        await pipe.Writer.WriteAsync((byte[])[.. Frame([1], false), .. Frame([2], false), .. oversized, .. Frame([3], false)]);
        var batch = new List<ChardevFrame>();
        Assert.True(await reader.ReadBatchAsync(batch));
        Assert.Equal(2, batch.Count);
        batch.ForEach(f => f.Dispose());
        ChardevFrameTooLargeException error = await Assert.ThrowsAsync<ChardevFrameTooLargeException>(async () => await reader.ReadBatchAsync([]));
        Assert.Equal("compare0-0", error.Endpoint);
        Assert.Equal(70000, error.Length);
        Assert.Contains("compare0-0", error.Message, StringComparison.Ordinal);
        Assert.Contains("70000", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, statistics.OversizedFrames);
        await Assert.ThrowsAsync<ChardevFrameTooLargeException>(async () => await reader.ReadFrameAsync());
    }

    [Fact]
    public async Task Single_frame_reads_and_batch_reads_see_the_same_stream()
    {
        var pipe = new Pipe();
        var reader = new ChardevFrameReader(pipe.Reader, false, "test");
        await pipe.Writer.WriteAsync((byte[])[.. Frame([1], false), .. Frame([2], false), .. Frame([3], false)]);
        await pipe.Writer.CompleteAsync();
        using (ChardevFrame first = (await reader.ReadFrameAsync())!.Value)
        {
            Assert.Equal(new byte[] { 1 }, first.Payload.ToArray());
        }

        var batch = new List<ChardevFrame>();
        Assert.True(await reader.ReadBatchAsync(batch));
        Assert.Equal([new byte[] { 2 }, [3]], batch.Select(f => f.Payload.ToArray()));
        batch.ForEach(f => f.Dispose());
        Assert.Null(await reader.ReadFrameAsync());
        Assert.False(await reader.ReadBatchAsync(batch));
    }

    [Fact]
    public async Task Writer_and_reader_talk_through_an_in_memory_duplex_stream_with_one_flush_per_batch()
    {
        (Stream a, Stream b) = FullDuplexStream.CreatePair();
        await using (a)
        await using (b)
        {
            var writerStatistics = new ChardevStatistics();
            var writer = new ChardevFrameWriter(PipeWriter.Create(a), vnetHdrSupport: true, writerStatistics);
            var reader = new ChardevFrameReader(PipeReader.Create(b), vnetHdrSupport: true, "b");
            for (int i = 1; i <= 50; i++)
            {
                writer.Write(Enumerable.Repeat((byte)i, i).ToArray(), (uint)i);
            }

            Assert.Equal(50, writer.UnflushedFrames);
            Assert.Equal(0, writerStatistics.FramesWritten);
            Assert.True(await writer.FlushAsync());
            Assert.Equal(50, writerStatistics.FramesWritten);
            Assert.Equal(Enumerable.Range(1, 50).Sum(), writerStatistics.BytesWritten);

            int seen = 0;
            var batch = new List<ChardevFrame>();
            while (seen < 50 && await reader.ReadBatchAsync(batch))
            {
                foreach (ChardevFrame frame in batch)
                {
                    seen++;
                    Assert.Equal(seen, frame.Length);
                    Assert.Equal((uint)seen, frame.VnetHdrLen);
                    Assert.All(frame.Payload.ToArray(), x => Assert.Equal((byte)seen, x));
                    frame.Dispose();
                }

                batch.Clear();
            }

            Assert.Equal(50, seen);
        }
    }

    [Fact]
    public void The_writer_refuses_to_emit_a_zero_length_frame()
    {
        var pipe = new Pipe();
        var writer = new ChardevFrameWriter(pipe.Writer, false);
        Assert.Throws<ArgumentException>(() => writer.Write(ReadOnlySpan<byte>.Empty, 0));
        Assert.Equal(0, writer.UnflushedFrames);
    }

    [Fact]
    public async Task Flushing_to_a_closed_pipe_reports_failure_instead_of_throwing()
    {
        var pipe = new Pipe();
        var writer = new ChardevFrameWriter(pipe.Writer, false);
        await pipe.Reader.CompleteAsync();
        writer.Write([1, 2, 3], 0);
        Assert.False(await writer.FlushAsync());
    }
}
