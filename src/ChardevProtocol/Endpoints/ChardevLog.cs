using Microsoft.Extensions.Logging;

namespace ColoChardev.ChardevProtocol.Endpoints;

/// <summary>Source-generated log messages of the chardev endpoints.</summary>
internal static partial class ChardevLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "chardev '{Endpoint}': listening on {Address}")]
    public static partial void Listening(ILogger logger, string endpoint, string address);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "chardev '{Endpoint}': no host given, listening on loopback {Address} only; give host=0.0.0.0 (or ::) to listen on every interface")]
    public static partial void LoopbackDefault(ILogger logger, string endpoint, string address);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "chardev '{Endpoint}': connected to {Address} (connection {Count})")]
    public static partial void Connected(ILogger logger, string endpoint, string address, long count);

    [LoggerMessage(EventId = 103, Level = LogLevel.Information, Message = "chardev '{Endpoint}': accepted a peer from {Peer} (connection {Count})")]
    public static partial void Accepted(ILogger logger, string endpoint, string peer, long count);

    [LoggerMessage(EventId = 104, Level = LogLevel.Warning, Message = "chardev '{Endpoint}': cannot connect to {Address} ({Reason}); retrying every {Backoff} at most")]
    public static partial void ConnectFailed(ILogger logger, string endpoint, string address, string reason, TimeSpan backoff);

    [LoggerMessage(EventId = 105, Level = LogLevel.Warning, Message = "chardev '{Endpoint}': refused a peer with uid {Uid}: only uid {Allowed} is allowed (peer-uid)")]
    public static partial void PeerRefused(ILogger logger, string endpoint, uint uid, uint allowed);

    [LoggerMessage(EventId = 106, Level = LogLevel.Warning, Message = "chardev '{Endpoint}': refused a peer whose credentials cannot be read (errno {Errno})")]
    public static partial void PeerCredentialsUnreadable(ILogger logger, string endpoint, int errno);

    [LoggerMessage(EventId = 107, Level = LogLevel.Error, Message = "{Message}")]
    public static partial void FrameTooLarge(ILogger logger, string message);

    [LoggerMessage(EventId = 108, Level = LogLevel.Information, Message = "chardev '{Endpoint}': peer closed the connection{Truncated}")]
    public static partial void PeerClosed(ILogger logger, string endpoint, string truncated);

    [LoggerMessage(EventId = 109, Level = LogLevel.Warning, Message = "chardev '{Endpoint}': connection failed: {Reason}")]
    public static partial void ConnectionFailed(ILogger logger, string endpoint, string reason);
}
