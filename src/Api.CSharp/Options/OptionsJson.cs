using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using BlockwiseLR.Core;

namespace BlockwiseLR.Training;

/// <summary>How options, results and checkpoint state are written as JSON: camelCase names, choices as their
/// names, NaN and infinities as "NaN" / "Infinity" (a run that never evaluated still writes its result).</summary>
static class OptionsJson
{
    public static JsonSerializerOptions Options { get; } = Create();

    /// <summary>For results: NaN and infinities are null (a value that was not measured).</summary>
    public static JsonSerializerOptions Results { get; } = CreateResults();

    static JsonSerializerOptions CreateResults()
    {
        var options = new JsonSerializerOptions(Create()) { Converters = { new MissingAsNull() } };
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }

    sealed class MissingAsNull : JsonConverter<double>
    {
        public override bool HandleNull => true;
        public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            reader.TokenType == JsonTokenType.Null ? double.NaN : reader.GetDouble();
        public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options)
        {
            if (double.IsFinite(value)) writer.WriteNumberValue(value); else writer.WriteNullValue();
        }
    }

    static JsonSerializerOptions Create()
    {
        var options = new JsonSerializerOptions
        {
            PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
            WriteIndented = true,
            DefaultIgnoreCondition = JsonIgnoreCondition.Never,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
            Converters = { new OptionNameConverterFactory() },
        };
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }

    static readonly Dictionary<string, PropertyInfo> properties = typeof(PretrainOptions)
        .GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite)
        .ToDictionary(p => JsonNamingPolicy.CamelCase.ConvertName(p.Name), StringComparer.Ordinal);

    public static readonly Dictionary<string, string> LegacyAutoKeys = new()
    {
        ["autoAlpha"] = "alpha", ["autoMaxRatio"] = "max-ratio", ["autoEvery"] = "every", ["autoSmoothing"] = "smoothing",
    };

    public static IEnumerable<string> Names => properties.Keys;

    public static PropertyInfo? Property(string jsonName) => properties.GetValueOrDefault(jsonName);

    /// <summary>A JSON value as the property's type; a refusal names the property, never a .NET type.</summary>
    public static object? Convert(PropertyInfo property, JsonNode? value, string? source)
    {
        var text = value switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonArray items => string.Join(",", items.Select(i => i is JsonValue iv && iv.TryGetValue<string>(out var t) ? t : i?.ToJsonString())),
            null => "null",
            _ => value.ToJsonString(),
        };
        try
        {
            var converted = value.Deserialize(property.PropertyType, Options);
            if (converted is null && new NullabilityInfoContext().Create(property).WriteState == NullabilityState.NotNull)
                throw new InvalidOptionException(property.Name, "null", $"needs a value ({Expected(property.PropertyType)})", source);
            return converted;
        }
        catch (OptionValueException e) { throw new InvalidOptionException(property.Name, text, e.Message, source); }
        catch (JsonException) { throw new InvalidOptionException(property.Name, text, $"expected {Expected(property.PropertyType)}", source); }
        catch (InvalidOperationException) { throw new InvalidOptionException(property.Name, text, $"expected {Expected(property.PropertyType)}", source); }
    }

    static string Expected(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        return type == typeof(int) || type == typeof(long) ? "a whole number"
            : type == typeof(ulong) ? "a whole number >= 0"
            : type == typeof(double) ? "a number"
            : type == typeof(bool) ? "true or false"
            : type == typeof(string) ? "text"
            : type == typeof(ModelConfig) ? "a model config object (architecture, layers, width, heads, kvHeads, feedForward, context, vocab, bias, tied, normEps, ropeTheta)"
            : "a value of the documented form";
    }
}
