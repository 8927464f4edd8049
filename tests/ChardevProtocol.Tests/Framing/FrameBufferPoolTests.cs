using ColoChardev.ChardevProtocol.Framing;

namespace ColoChardev.ChardevProtocol.Tests.Framing;

public class FrameBufferPoolTests
{
    [Theory]
    [InlineData(0, 64)]
    [InlineData(1, 64)]
    [InlineData(64, 64)]
    [InlineData(65, 96)]
    [InlineData(96, 96)]
    [InlineData(97, 128)]
    [InlineData(129, 192)]
    [InlineData(1454, 1536)]
    [InlineData(1526, 1536)]
    [InlineData(1537, 2048)]
    [InlineData(2049, 3072)]
    [InlineData(69632, 98304)]
    [InlineData(98305, 131072)]
    [InlineData(131072, 131072)]
    public void Rent_gives_the_smallest_size_class_that_holds_the_request(int request, int expected)
    {
        var pool = new FrameBufferPool();
        Assert.Equal(expected, pool.Rent(request).Length);
    }

    [Fact]
    public void Returned_arrays_are_reused_even_when_a_thousand_are_out_at_once()
    {
        // ArrayPool<byte>.Shared keeps only a few dozen per size; a batch of 64-byte frames is ~1,000.
        var pool = new FrameBufferPool();
        byte[][] first = Enumerable.Range(0, 1000).Select(_ => pool.Rent(64)).ToArray();
        foreach (byte[] array in first)
        {
            pool.Return(array);
        }

        Assert.Equal(1000, pool.RetainedCount);
        var reused = new HashSet<byte[]>(first, ReferenceEqualityComparer.Instance);
        byte[][] second = Enumerable.Range(0, 1000).Select(_ => pool.Rent(60)).ToArray();
        Assert.All(second, array => Assert.Contains(array, reused));
        Assert.Equal(0, pool.RetainedCount);
    }

    [Fact]
    public void Each_class_keeps_at_most_its_cap_of_arrays_and_of_bytes()
    {
        var pool = new FrameBufferPool(maxRetainedPerClass: 10, retainedBytesPerClass: 2048 * 4);
        foreach (byte[] array in Enumerable.Range(0, 50).Select(_ => pool.Rent(64)).ToArray())
        {
            pool.Return(array);
        }

        Assert.Equal(10, pool.RetainedCount);
        foreach (byte[] array in Enumerable.Range(0, 50).Select(_ => pool.Rent(2000)).ToArray())
        {
            pool.Return(array);
        }

        Assert.Equal(14, pool.RetainedCount);
    }

    [Fact]
    public void Arrays_that_are_not_a_size_class_are_never_kept()
    {
        var pool = new FrameBufferPool();
        pool.Return(new byte[100]);
        pool.Return(new byte[1500]);
        pool.Return(new byte[32]);
        pool.Return(new byte[256 * 1024]);
        Assert.Equal(0, pool.RetainedCount);
        Assert.Equal(200_000, pool.Rent(200_000).Length);
    }

    [Fact]
    public void A_returned_array_can_be_cleared()
    {
        var pool = new FrameBufferPool();
        byte[] array = pool.Rent(64);
        array.AsSpan().Fill(0xAB);
        pool.Return(array, clearArray: true);
        Assert.All(pool.Rent(64), b => Assert.Equal(0, b));
    }
}
