namespace ColoChardev.ChardevProtocol.Packets;

/// <summary>The TCP flag byte (RFC 9293 calls these the control bits).</summary>
[Flags]
public enum TcpControlBits : byte
{
    None = 0,
    Fin = 0x01,
    Syn = 0x02,
    Rst = 0x04,
    Psh = 0x08,
    Ack = 0x10,
    Urg = 0x20,
    Ece = 0x40,
    Cwr = 0x80,
}
