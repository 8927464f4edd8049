namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>The two header words of one frame.</summary>
/// <param name="Length">Payload length in bytes (the first be32 word).</param>
/// <param name="VnetHdrLen">The second be32 word, or 0 when vnet_hdr_support is off.</param>
public readonly record struct FrameHeader(uint Length, uint VnetHdrLen);
