using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using BlockwiseLR.Core;

namespace BlockwiseLR.Training;

/// <summary>How options, results and checkpoint state are written as JSON: camelCase names, choices as their
/// names, NaN and infinities as "NaN" / "Infinity"; in results, null for a number that was not measured.</summary>
static class OptionsJson
{
    public static JsonSerializerOptions Options { get; } = Create();

    /// <summary>For results: a number that was not measured (a null <c>double?</c>) is null; a measured one that is
    /// not finite is "NaN" / "Infinity", as in options; null read where a number is always measured (a
    /// <c>double</c>) is NaN, as earlier versions wrote a measured NaN.</summary>
    public static JsonSerializerOptions Results { get; } = CreateResults();

    static JsonSerializerOptions CreateResults()
    {
        var options = new JsonSerializerOptions(Create())
        {
            Converters = { new MeasuredNumber(), new NumberOrMissing() },
        };
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }

    /// <summary>A measured number: "NaN" and infinities by name; null (an earlier version's NaN) read as
    /// NaN.</summary>
    sealed class MeasuredNumber : JsonConverter<double>
    {
        public override bool HandleNull => true;

        public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            reader.TokenType == JsonTokenType.Null
                ? double.NaN
                : JsonSerializer.Deserialize<double>(ref reader, Options);

        public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options) =>
            JsonSerializer.Serialize(writer, value, Options);
    }

    /// <summary>A number that may not have been measured: null both ways; a measured one as
    /// <see cref="MeasuredNumber"/> writes it.</summary>
    sealed class NumberOrMissing : JsonConverter<double?>
    {
        public override bool HandleNull => true;

        public override double? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            reader.TokenType == JsonTokenType.Null ? null : JsonSerializer.Deserialize<double>(ref reader, Options);

        public override void Write(Utf8JsonWriter writer, double? value, JsonSerializerOptions options)
        {
            if (value is { } number)
                JsonSerializer.Serialize(writer, number, Options);
            else
                writer.WriteNullValue();
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

    /// <summary>A JSON value as the property's type; a refusal names the property, never a .NET type.</summary>
    public static object? Convert(OptionField field, JsonNode? value, string? source)
    {
        var property = field.Property;
        var text = value switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonArray items => string.Join(
                ",",
                items.Select(i => i is JsonValue iv && iv.TryGetValue<string>(out var t) ? t : i?.ToJsonString())
            ),
            null => "null",
            _ => value.ToJsonString(),
        };
        try
        {
            var converted = value.Deserialize(property.PropertyType, Options);
            if (
                converted is null
                && new NullabilityInfoContext().Create(property).WriteState == NullabilityState.NotNull
            )
                throw new InvalidOptionException(
                    field.Name,
                    "null",
                    $"needs a value ({Expected(property.PropertyType)})",
                    source
                );
            return converted;
        }
        catch (OptionValueException e)
        {
            throw new InvalidOptionException(field.Name, text, e.Message, source);
        }
        catch (JsonException)
        {
            throw Unexpected();
        }
        catch (InvalidOperationException)
        {
            throw Unexpected();
        }
        InvalidOptionException Unexpected() =>
            new(field.Name, text, $"expected {Expected(property.PropertyType)}", source);
    }

    static string Expected(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        return type == typeof(int) || type == typeof(long) ? "a whole number"
            : type == typeof(ulong) ? "a whole number >= 0"
            : type == typeof(double) ? "a number"
            : type == typeof(bool) ? "true or false"
            : type == typeof(string) ? "text"
            : type == typeof(ModelConfig)
                ? "a model config object (architecture, layers, width, heads, kvHeads, feedForward, context, vocab, "
                    + "bias, tied, normEps, ropeTheta)"
            : "a value of the documented form";
    }
}

/// <summary>One option: its path in a config file ("schedule.lr"), its name in messages ("Schedule.Lr"), the flat
/// key earlier versions wrote ("lr"), and the group and field properties it reads and writes.</summary>
sealed record OptionField(string Path, string Name, string? FlatKey, PropertyInfo Group, PropertyInfo Property)
{
    /// <summary>One of the auto-ratio settings, which live inside <see cref="OptimizerOptions.Ratios"/>.</summary>
    public bool IsAutoSetting => Path.StartsWith(OptionFields.AutoPrefix, StringComparison.Ordinal);

    /// <summary>The options with this field set (a copy of its group with the field replaced).</summary>
    public PretrainOptions Set(PretrainOptions options, object? value)
    {
        var group = CloneRecord(Group.GetValue(options) ?? Activator.CreateInstance(Group.PropertyType)!);
        Property.SetValue(group, value);
        var copy = CloneRecord(options);
        Group.SetValue(copy, group);
        return (PretrainOptions)copy;
    }

    public object? Get(PretrainOptions options) => Property.GetValue(Group.GetValue(options));

    // Records clone through their compiler-made <Clone>$ (what `with` calls).
    static object CloneRecord(object record) => record.GetType().GetMethod("<Clone>$")!.Invoke(record, null)!;
}

/// <summary>Every option of <see cref="PretrainOptions"/>, found from the groups' properties, and the flat keys of
/// the files earlier versions wrote (one line each below).</summary>
static class OptionFields
{
    public const string AutoPrefix = "optimizer.ratios.";
    public const string AutoAlpha = AutoPrefix + "alpha",
        AutoMaxRatio = AutoPrefix + "maxRatio";
    public const string AutoEvery = AutoPrefix + "every",
        AutoSmoothing = AutoPrefix + "smoothing",
        AutoNoise = AutoPrefix + "noise";

    /// <summary>Flat key of earlier versions -> path.</summary>
    static readonly Dictionary<string, string> flatKeys = new(StringComparer.Ordinal)
    {
        ["model"] = "model.name",
        ["modelOverrides"] = "model.overrides",
        ["modelConfig"] = "model.config",
        ["data"] = "data.path",
        ["optimizer"] = "optimizer.kind",
        ["ratios"] = "optimizer.ratios",
        ["beta1"] = "optimizer.beta1",
        ["beta2"] = "optimizer.beta2",
        ["eps"] = "optimizer.eps",
        ["weightDecay"] = "optimizer.weightDecay",
        ["weightDecayPolicy"] = "optimizer.weightDecayPolicy",
        ["autoAlpha"] = AutoAlpha,
        ["autoMaxRatio"] = AutoMaxRatio,
        ["autoEvery"] = AutoEvery,
        ["autoSmoothing"] = AutoSmoothing,
        ["schedule"] = "schedule.kind",
        ["lr"] = "schedule.lr",
        ["warmupSteps"] = "schedule.warmupSteps",
        ["floorLr"] = "schedule.floorLr",
        ["alphaWarmup"] = "schedule.alphaWarmup",
        ["steps"] = "training.steps",
        ["batchSize"] = "training.batchSize",
        ["microBatchSize"] = "training.microBatchSize",
        ["seqLen"] = "training.seqLen",
        ["seed"] = "training.seed",
        ["precision"] = "training.precision",
        ["gradClip"] = "training.gradClip",
        ["device"] = "training.device",
        ["threads"] = "training.threads",
        ["evalEvery"] = "evaluation.every",
        ["evalWindows"] = "evaluation.windows",
        ["out"] = "run.out",
        ["overwrite"] = "run.overwrite",
        ["checkpointEvery"] = "checkpoint.every",
        ["keepCheckpoints"] = "checkpoint.keep",
        ["resume"] = "checkpoint.resume",
        ["initFrom"] = "checkpoint.initFrom",
        ["zero"] = "parallelism.zero",
        ["bucketMb"] = "parallelism.bucketMb",
        ["sharpnessEvery"] = "debug.sharpnessEvery",
        ["peakTflops"] = "debug.peakTflops",
        ["deterministic"] = "debug.deterministic",
    };

    static string Camel(string name) => JsonNamingPolicy.CamelCase.ConvertName(name);

    /// <summary>The groups, as written: JSON name and property.</summary>
    public static IReadOnlyList<(string Key, PropertyInfo Property)> Groups { get; } =
        typeof(PretrainOptions)
            .GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite)
            .Select(p => (Camel(p.Name), p))
            .ToList();

    static readonly Dictionary<string, OptionField> byPath = Create();

    static Dictionary<string, OptionField> Create()
    {
        var fields = new Dictionary<string, OptionField>(StringComparer.Ordinal);
        var flatOf = flatKeys.ToDictionary(kv => kv.Value, kv => kv.Key);
        foreach (var (key, group) in Groups)
        foreach (
            var property in group
                .PropertyType.GetProperties(BindingFlags.Public | BindingFlags.Instance)
                .Where(p => p.CanWrite)
        )
        {
            var path = $"{key}.{Camel(property.Name)}";
            fields[path] = new OptionField(
                path,
                $"{group.Name}.{property.Name}",
                flatOf.GetValueOrDefault(path),
                group,
                property
            );
        }
        // The auto-ratio settings are parts of Optimizer.Ratios, read and checked by PretrainOptions.
        var ratios = fields["optimizer.ratios"];
        foreach (var path in new[] { AutoAlpha, AutoMaxRatio, AutoEvery, AutoSmoothing, AutoNoise })
        {
            var name =
                "Optimizer.Ratios." + char.ToUpperInvariant(path[AutoPrefix.Length]) + path[(AutoPrefix.Length + 1)..];
            fields[path] = ratios with { Path = path, Name = name, FlatKey = flatOf.GetValueOrDefault(path) };
        }
        return fields;
    }

    /// <summary>Every option's path.</summary>
    public static IEnumerable<string> Paths => byPath.Keys;

    /// <summary>Every option.</summary>
    public static IEnumerable<OptionField> All => byPath.Values;

    public static bool IsGroup(string key) => Groups.Any(g => g.Key == key);

    /// <summary>The option at a path ("schedule.lr") or flat key of earlier versions ("lr"), or null.</summary>
    public static OptionField? Find(string key) =>
        byPath.GetValueOrDefault(key) ?? (flatKeys.TryGetValue(key, out var path) ? byPath[path] : null);

    /// <summary>Why a key is not an option, and what is: a group's fields for a key in a known group, a group given as
    /// something other than an object, else the groups.</summary>
    public static string Unknown(string key)
    {
        // Keys are case-sensitive, as options.json writes them: a key that differs only in case is named.
        var spelled = byPath
            .Keys.Concat(flatKeys.Keys)
            .Concat(Groups.Select(g => g.Key))
            .FirstOrDefault(k => string.Equals(k, key, StringComparison.OrdinalIgnoreCase));
        if (spelled is not null)
            return $"unknown option '{key}'; keys are case-sensitive: write {spelled}";
        var dot = key.IndexOf('.');
        var group = dot < 0 ? key : key[..dot];
        var fields = byPath
            .Keys.Where(p => p.StartsWith(group + ".", StringComparison.Ordinal) && !p.StartsWith(AutoPrefix))
            .Select(p => p[(group.Length + 1)..]);
        return !IsGroup(group) ? $"unknown option (groups: {string.Join(", ", Groups.Select(g => g.Key))})"
            : dot < 0 ? $"expected an object of {group} options ({string.Join(", ", fields)})"
            : $"unknown option ({group} has: {string.Join(", ", fields)})";
    }

    /// <summary>The option of a message name ("Schedule.Lr"), or null.</summary>
    public static OptionField? Named(string name) => byPath.Values.FirstOrDefault(f => f.Name == name);
}
