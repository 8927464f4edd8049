namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>The socket family of a chardev.</summary>
public enum ChardevTransport
{
    /// <summary>TCP: <c>host=</c> and <c>port=</c>.</summary>
    Tcp,

    /// <summary>Unix domain stream socket: <c>path=</c>.</summary>
    Unix,
}
