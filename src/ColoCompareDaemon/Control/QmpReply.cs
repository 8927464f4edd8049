using System.Text.Json;

namespace ColoChardev.Daemon.Control;

/// <summary>What a command answers: a return value (written by <see cref="Value"/>) or an error with QMP's class and description.</summary>
internal readonly record struct QmpReply(Action<Utf8JsonWriter>? Value, string? ErrorClass = null, string? Description = null)
{
    /// <summary><c>{"return": {}}</c>.</summary>
    public static QmpReply Empty { get; } = new(static w =>
    {
        w.WriteStartObject();
        w.WriteEndObject();
    });

    public static QmpReply Return(Action<Utf8JsonWriter> value) => new(value);

    public static QmpReply Error(string errorClass, string description) => new(null, errorClass, description);

    /// <summary>QMP's GenericError.</summary>
    public static QmpReply Generic(string description) => Error("GenericError", description);

    /// <summary>The reply as one JSON message, with the request's id when it had one.</summary>
    public byte[] ToJson(JsonElement id)
    {
        Action<Utf8JsonWriter>? value = Value;
        string? errorClass = ErrorClass;
        string? description = Description;
        return Json(w =>
        {
            if (value is not null)
            {
                w.WritePropertyName("return");
                value(w);
            }
            else
            {
                w.WriteStartObject("error");
                w.WriteString("class", errorClass);
                w.WriteString("desc", description);
                w.WriteEndObject();
            }

            if (id.ValueKind != JsonValueKind.Undefined)
            {
                w.WritePropertyName("id");
                id.WriteTo(w);
            }
        });
    }

    /// <summary>One JSON object whose members <paramref name="body"/> writes.</summary>
    public static byte[] Json(Action<Utf8JsonWriter> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }
}

/// <summary>The commands a <see cref="QmpServerConnection"/> serves once capabilities are negotiated.</summary>
internal interface IQmpCommands
{
    /// <summary>Every command's name, in the order <c>query-commands</c> lists them.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>Runs <paramref name="command"/>; a command it does not know is its CommandNotFound.</summary>
    QmpReply Execute(string command, JsonElement arguments);
}
