using System.Text.Json;
using System.Text.Json.Serialization;
using BlockwiseLR.Core;

namespace BlockwiseLR;

/// <summary>The names of the closed choices (<see cref="OptimizerKind"/>, <see cref="LrSchedule"/>,
/// <see cref="Precision"/>, <see cref="WeightDecayPolicy"/>, <see cref="Architecture"/>,
/// <see cref="NewtonSchulzPrecision"/>): the kebab-case text
/// that config files, options.json and the CLI use. Parsing ignores case; this is the only parser of them (the
/// core's name tables), shared by the JSON reader, the CLI and C#.</summary>
internal static class OptionNames
{
    static readonly Dictionary<Type, (string What, object Table)> tables = new()
    {
        [typeof(OptimizerKind)] = ("optimizer", NameTables.Optimizers),
        [typeof(LrSchedule)] = ("schedule", NameTables.Schedules),
        [typeof(Precision)] = ("precision", NameTables.Precisions),
        [typeof(WeightDecayPolicy)] = ("weight-decay policy", NameTables.WeightDecayPolicies),
        [typeof(Architecture)] = ("architecture", NameTables.Architectures),
        [typeof(NewtonSchulzPrecision)] = ("Newton-Schulz precision", NameTables.NewtonSchulzPrecisions),
    };

    static (string What, IReadOnlyList<KeyValuePair<string, T>> Table) TableOf<T>()
        where T : struct, Enum
    {
        if (!tables.TryGetValue(typeof(T), out var entry))
            throw new NotSupportedException($"{typeof(T).Name} has no option names");
        return (entry.What, (IReadOnlyList<KeyValuePair<string, T>>)entry.Table);
    }

    /// <summary>Reads a name in any case; an unknown one is a <see cref="FormatException"/> listing the known
    /// names.</summary>
    public static T Parse<T>(string text)
        where T : struct, Enum
    {
        var (what, table) = TableOf<T>();
        return NameTables.Parse(what, table, text).OrThrow(reason => new FormatException(reason));
    }

    /// <summary>The name written for a value (e.g. "blockwise-adamw").</summary>
    public static string Format<T>(T value)
        where T : struct, Enum => NameTables.Format(TableOf<T>().Table, value);

    /// <summary>The names written back, one per value (e.g. for help texts).</summary>
    public static IReadOnlyList<string> Known<T>()
        where T : struct, Enum => NameTables.Canonical(TableOf<T>().Table);

    internal static bool Has(Type type) => tables.ContainsKey(type);
}

/// <summary>Writes and reads the enums of <see cref="OptionNames"/> as their names, case-insensitively.</summary>
sealed class OptionNameConverterFactory : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert) => OptionNames.Has(typeToConvert);

    public override JsonConverter? CreateConverter(Type typeToConvert, JsonSerializerOptions options) =>
        (JsonConverter)Activator.CreateInstance(typeof(Converter<>).MakeGenericType(typeToConvert))!;

    sealed class Converter<T> : TextConverter<T>
        where T : struct, Enum
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
