namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>A chardev socket spec that cannot be used; the message quotes the offending text.</summary>
public sealed class ChardevSpecException : FormatException
{
    public ChardevSpecException()
    {
    }

    public ChardevSpecException(string message)
        : base(message)
    {
    }

    public ChardevSpecException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
