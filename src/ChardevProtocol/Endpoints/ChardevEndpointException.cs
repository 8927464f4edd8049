namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>An endpoint cannot be opened as specified (address in use, unresolvable host, ...).</summary>
public sealed class ChardevEndpointException : IOException
{
    public ChardevEndpointException()
    {
    }

    public ChardevEndpointException(string message)
        : base(message)
    {
    }

    public ChardevEndpointException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
