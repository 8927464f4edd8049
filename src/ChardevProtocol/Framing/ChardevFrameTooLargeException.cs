namespace ColoChardev.ChardevProtocol.Framing;

/// <summary>
/// A peer announced a frame above QEMU's 69,632-byte limit. The byte stream cannot be resynchronised, so
/// the connection that carried it has to be closed; other endpoints are not affected.
/// </summary>
public sealed class ChardevFrameTooLargeException : IOException
{
    public ChardevFrameTooLargeException(string endpoint, long length)
        : base($"chardev '{endpoint}': frame announces {length} payload bytes, above QEMU's limit of {ChardevFraming.MaxPayloadLength}; "
            + "the stream cannot be resynchronised, so this connection is closed and re-established")
    {
        Endpoint = endpoint;
        Length = length;
    }

    public ChardevFrameTooLargeException()
        : this("?", 0)
    {
    }

    public ChardevFrameTooLargeException(string message)
        : base(message)
    {
        Endpoint = "?";
    }

    public ChardevFrameTooLargeException(string message, Exception innerException)
        : base(message, innerException)
    {
        Endpoint = "?";
    }

    /// <summary>The chardev id (or spec) of the endpoint that received the frame.</summary>
    public string Endpoint { get; }

    /// <summary>The payload length the frame announced.</summary>
    public long Length { get; }
}
