using ColoChardev.ChardevProtocol.Endpoints;

namespace ColoChardev.ChardevProtocol.Tests.Endpoints;

/// <summary>QEMU's option-string syntax, shared by -chardev and -object: ",," escapes, empty items, pairs, booleans.</summary>
public class QemuOptsTests
{
    [Theory]
    [InlineData("socket,id=a,path=/tmp/x", new[] { "socket", "id=a", "path=/tmp/x" })]
    [InlineData("socket,path=/tmp/a,,b", new[] { "socket", "path=/tmp/a,b" })]
    [InlineData("id=a,,,,b", new[] { "id=a,,b" })]
    [InlineData("id=a,,,b", new[] { "id=a,", "b" })]
    [InlineData(",,", new[] { "," })]
    [InlineData("a,", new[] { "a", "" })]
    [InlineData(",a", new[] { "", "a" })]
    [InlineData("a,,,", new[] { "a,", "" })]
    [InlineData("", new[] { "" })]
    [InlineData("x", new[] { "x" })]
    public void Split_reads_double_commas_as_one_literal_comma_and_keeps_empty_items(string text, string[] items) =>
        Assert.Equal(items, QemuOpts.Split(text));

    [Theory]
    [InlineData("/var/lib/vm,1.raw")]
    [InlineData(",,")]
    [InlineData("plain")]
    public void An_escaped_value_splits_back_to_itself(string value) =>
        Assert.Equal(["file.filename=" + value, "driver=raw"], QemuOpts.Split("file.filename=" + QemuOpts.Escape(value) + ",driver=raw"));

    [Theory]
    [InlineData("id=a", "id", "a")]
    [InlineData("path=/tmp/x=y", "path", "/tmp/x=y")]
    [InlineData("port=", "port", "")]
    public void A_pair_splits_at_its_first_equals_sign(string item, string key, string value)
    {
        Assert.True(QemuOpts.TrySplitPair(item, out string k, out string v));
        Assert.Equal((key, value), (k, v));
    }

    [Theory]
    [InlineData("server")]
    [InlineData("=on")]
    [InlineData("")]
    public void An_item_without_a_key_and_an_equals_sign_is_no_pair(string item) => Assert.False(QemuOpts.TrySplitPair(item, out _, out _));

    [Theory]
    [InlineData("on", true)]
    [InlineData("yes", true)]
    [InlineData("true", true)]
    [InlineData("y", true)]
    [InlineData("off", false)]
    [InlineData("no", false)]
    [InlineData("false", false)]
    [InlineData("n", false)]
    public void Every_boolean_spelling_qemu_takes(string text, bool expected)
    {
        Assert.True(QemuOpts.TryParseBoolean(text, out bool value));
        Assert.Equal(expected, value);
    }

    [Theory]
    [InlineData("ON")]
    [InlineData("1")]
    [InlineData("0")]
    [InlineData("")]
    [InlineData("maybe")]
    [InlineData(" on")]
    public void Anything_else_is_no_boolean(string text) => Assert.False(QemuOpts.TryParseBoolean(text, out _));
}
