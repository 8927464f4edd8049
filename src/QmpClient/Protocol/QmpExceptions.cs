namespace ColoChardev.Qmp;

/// <summary>Base of every error this client raises.</summary>
public class QmpException : Exception
{
    public QmpException()
    {
    }

    public QmpException(string message)
        : base(message)
    {
    }

    public QmpException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>QEMU answered a command with <c>{"error": {"class": ..., "desc": ...}}</c>.</summary>
public sealed class QmpCommandException : QmpException
{
    public QmpCommandException(string command, string errorClass, string description)
        : base($"QMP command '{command}' failed: {errorClass}: {description}")
    {
        Command = command;
        ErrorClass = errorClass;
        Description = description;
    }

    public QmpCommandException()
        : this("?", "?", "?")
    {
    }

    public QmpCommandException(string message)
        : this("?", "?", message)
    {
    }

    public QmpCommandException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Command = "?";
        ErrorClass = "?";
        Description = message;
    }

    /// <summary>The command that failed.</summary>
    public string Command { get; }

    /// <summary>QMP's error class, e.g. <c>CommandNotFound</c> or <c>GenericError</c>.</summary>
    public string ErrorClass { get; }

    /// <summary>QMP's human-readable description.</summary>
    public string Description { get; }
}

/// <summary>
/// The connection to the QMP server is gone (closed, reset, or abandoned after a protocol violation). Every command
/// still waiting for a reply fails with this; <see cref="Exception.InnerException"/> is the cause.
/// </summary>
public sealed class QmpConnectionLostException : QmpException
{
    public QmpConnectionLostException()
        : base("the QMP connection was lost")
    {
    }

    public QmpConnectionLostException(string message)
        : base(message)
    {
    }

    public QmpConnectionLostException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The server broke the protocol: JSON that does not parse, a reply to an id we never sent, an unknown message.</summary>
public sealed class QmpProtocolException : QmpException
{
    public QmpProtocolException()
    {
    }

    public QmpProtocolException(string message)
        : base(message)
    {
    }

    public QmpProtocolException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>No answer within the allowed time (greeting, negotiation or a command).</summary>
public sealed class QmpTimeoutException : QmpException
{
    public QmpTimeoutException(string operation, TimeSpan timeout)
        : base($"QMP {operation}: no answer within {timeout.TotalMilliseconds:0} ms")
    {
        Operation = operation;
        Timeout = timeout;
    }

    public QmpTimeoutException()
        : this("?", TimeSpan.Zero)
    {
    }

    public QmpTimeoutException(string message)
        : base(message)
    {
        Operation = "?";
    }

    public QmpTimeoutException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Operation = "?";
    }

    /// <summary>What timed out: "greeting", or the command's name.</summary>
    public string Operation { get; }

    /// <summary>How long we waited.</summary>
    public TimeSpan Timeout { get; }
}
