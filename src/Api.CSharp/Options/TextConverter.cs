using System.Text.Json;
using System.Text.Json.Serialization;

namespace BlockwiseLR;

/// <summary>A value written and read as one text, parsed by the type's own parser; its FormatException's message
/// becomes the one-line reason.</summary>
abstract class TextConverter<T> : JsonConverter<T>
{
    protected abstract string Expected { get; }
    protected abstract T Parse(string text);

    protected virtual string Format(T value) => value!.ToString()!;

    protected virtual bool TryFromNumber(int value, out T result)
    {
        result = default!;
        return false;
    }

    public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (
            reader.TokenType == JsonTokenType.Number
            && reader.TryGetInt32(out var number)
            && TryFromNumber(number, out var legacy)
        )
            return legacy;
        if (reader.TokenType != JsonTokenType.String)
            throw new OptionValueException(Expected);
        try
        {
            return Parse(reader.GetString()!);
        }
        catch (FormatException e)
        {
            throw new OptionValueException(e.Message);
        }
    }

    public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) =>
        writer.WriteStringValue(Format(value));
}
