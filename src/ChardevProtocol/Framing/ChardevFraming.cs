namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>
/// Constants of QEMU's socket-chardev packet framing (spec §1.1): <c>be32 len</c>, then
/// <c>be32 vnet_hdr_len</c> only when vnet_hdr_support is on, then <c>len</c> payload bytes.
/// </summary>
public static class ChardevFraming
{
    /// <summary>
    /// QEMU's <c>NET_BUFSIZE</c> (4096 + 65536): the largest payload any QEMU reader accepts.
    /// Exactly this many bytes is still accepted.
    /// </summary>
    public const int MaxPayloadLength = 4096 + 65536;

    /// <summary>Bytes of framing before the payload.</summary>
    public static int HeaderLength(bool vnetHdrSupport) => vnetHdrSupport ? 8 : 4;
}
