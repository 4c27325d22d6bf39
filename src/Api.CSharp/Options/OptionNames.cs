using System.Text.Json;
using System.Text.Json.Serialization;
using BlockwiseLR.Core;
using Microsoft.FSharp.Collections;

namespace BlockwiseLR;

/// <summary>The names of the closed choices (<see cref="OptimizerKind"/>, <see cref="LrSchedule"/>,
/// <see cref="Precision"/>, <see cref="WeightDecayPolicy"/>, <see cref="Architecture"/>): the kebab-case text
/// that config files, options.json and the CLI use. Parsing ignores case; this is the only parser of them (the
/// core's name tables), shared by the JSON reader, the CLI and C#.</summary>
public static class OptionNames
{
    static readonly Dictionary<Type, (string What, object Table)> tables = new()
    {
        [typeof(OptimizerKind)] = ("optimizer", Names.optimizers),
        [typeof(LrSchedule)] = ("schedule", Names.schedules),
        [typeof(Precision)] = ("precision", Names.precisions),
        [typeof(WeightDecayPolicy)] = ("weight-decay policy", Names.weightDecayPolicies),
        [typeof(Architecture)] = ("architecture", Names.architectures),
    };

    static (string What, FSharpList<Tuple<string, T>> Table) TableOf<T>() where T : struct, Enum
    {
        if (!tables.TryGetValue(typeof(T), out var entry)) throw new NotSupportedException($"{typeof(T).Name} has no option names");
        var table = (FSharpList<Tuple<string, T>>)entry.Table;
        return (entry.What, table);
    }

    /// <summary>Reads a name in any case; an unknown one is a <see cref="FormatException"/> listing the known names.</summary>
    public static T Parse<T>(string text) where T : struct, Enum
    {
        var (what, table) = TableOf<T>();
        var parsed = Names.parse(what, table, text);
        return parsed.IsOk ? parsed.ResultValue : throw new FormatException(parsed.ErrorValue);
    }

    /// <summary>The name written for a value (e.g. "blockwise-adamw").</summary>
    public static string Format<T>(T value) where T : struct, Enum => Names.format(TableOf<T>().Table, value);

    /// <summary>The names written back, one per value (e.g. for help texts).</summary>
    public static IReadOnlyList<string> Known<T>() where T : struct, Enum => Names.canonical(TableOf<T>().Table).ToList();

    internal static bool Has(Type type) => tables.ContainsKey(type);
}

/// <summary>Writes and reads the enums of <see cref="OptionNames"/> as their names, case-insensitively.</summary>
sealed class OptionNameConverterFactory : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert) => OptionNames.Has(typeToConvert);

    public override JsonConverter? CreateConverter(Type typeToConvert, JsonSerializerOptions options) =>
        (JsonConverter)Activator.CreateInstance(typeof(Converter<>).MakeGenericType(typeToConvert))!;

    sealed class Converter<T> : TextConverter<T> where T : struct, Enum
    {
        // Checkpoints written before typed options hold the model's architecture as its number.
        protected override bool TryFromNumber(int value, out T result)
        {
            result = (T)Enum.ToObject(typeof(T), value);
            return Enum.IsDefined(typeof(T), value);
        }

        protected override string Expected => $"expected one of {string.Join(", ", OptionNames.Known<T>())}";
        protected override T Parse(string text) => OptionNames.Parse<T>(text);
        protected override string Format(T value) => OptionNames.Format(value);
    }
}

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
        if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var number) && TryFromNumber(number, out var legacy)) return legacy;
        if (reader.TokenType != JsonTokenType.String) throw new OptionValueException(Expected);
        try { return Parse(reader.GetString()!); }
        catch (FormatException e) { throw new OptionValueException(e.Message); }
    }

    public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => writer.WriteStringValue(Format(value));
}

/// <summary>A converter's own one-line reason for refusing a value (the serializer's text never reaches a user).</summary>
sealed class OptionValueException(string message) : JsonException(message);
