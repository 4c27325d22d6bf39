using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using BlockwiseLR.Core;
using BlockwiseLR.Models;
using BlockwiseLR.Training;

namespace BlockwiseLR;

/// <summary>Everything a training run needs, grouped by component as torchtitan groups its job config: the model,
/// the data, the optimizer, the LR schedule, training, evaluation, the run folder, checkpoints, parallelism and
/// debugging. Each default is written here once (the CLI's help reads them); defaults follow the paper's recipe
/// where it has one. A JSON config file mirrors the groups (<c>{ "schedule": { "lr": 0.001 } }</c>, names in
/// camelCase, choices as their kebab-case names in any case) and the flat files of earlier versions still read;
/// the effective options are saved with the run as options.json, which reads back as a config file. An option is
/// named by its group and field, e.g. "Schedule.Lr" (<see cref="InvalidOptionException.Option"/>).
/// <para>A group set to null is an <see cref="ArgumentNullException"/> naming it; leave a group out for its
/// defaults.</para></summary>
[JsonConverter(typeof(PretrainOptionsConverter))]
public sealed record PretrainOptions
{
    /// <summary>The model to train.</summary>
    public ModelOptions Model
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Model));
    } = new();

    /// <summary>The data to train and evaluate on.</summary>
    public DataOptions Data
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Data));
    } = new();

    /// <summary>The optimizer, its ratios and hyperparameters.</summary>
    public OptimizerOptions Optimizer
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Optimizer));
    } = new();

    /// <summary>The learning-rate schedule.</summary>
    public ScheduleOptions Schedule
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Schedule));
    } = new();

    /// <summary>Steps, batch, precision, device and the like.</summary>
    public TrainingOptions Training
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Training));
    } = new();

    /// <summary>When and on how much validation data to evaluate.</summary>
    public EvaluationOptions Evaluation
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Evaluation));
    } = new();

    /// <summary>The run folder and what is written into it.</summary>
    public RunOptions Run
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Run));
    } = new();

    /// <summary>When checkpoints are written and how many are kept.</summary>
    public CheckpointOptions Checkpoint
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Checkpoint));
    } = new();

    /// <summary>Data parallelism (processes, ZeRO stage).</summary>
    public ParallelismOptions Parallelism
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Parallelism));
    } = new();

    /// <summary>Checks and diagnostics for debugging.</summary>
    public DebugOptions Debug
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Debug));
    } = new();

    /// <summary>The defaults (what the CLI's help prints).</summary>
    public static PretrainOptions Defaults { get; } = new();

    /// <summary>Reads options from a JSON config file (or an options.json). Unknown keys and bad values are an
    /// <see cref="InvalidOptionException"/> naming the file and the option.</summary>
    public static PretrainOptions FromJsonFile(string path)
    {
        if (!File.Exists(path))
            throw new InvalidOptionException("config", path, "file not found");
        JsonObject root;
        try
        {
            var text = File.ReadAllText(path);
            using (var document = JsonDocument.Parse(text))
                if (DuplicateKey(document.RootElement, "") is { } twice)
                    throw new InvalidOptionException(twice, null, "is given twice; give each option once", path);
            root =
                JsonNode.Parse(text) as JsonObject
                ?? throw new InvalidOptionException("config", path, "not a JSON object of options");
        }
        catch (JsonException e)
        {
            throw new InvalidOptionException("config", path, $"not valid JSON (line {e.LineNumber + 1})");
        }
        return FromJsonObject(root, path);
    }

    /// <summary>The path of the first key an object of <paramref name="element"/> holds twice ("training.steps"), or
    /// null.</summary>
    static string? DuplicateKey(JsonElement element, string prefix)
    {
        if (element.ValueKind != JsonValueKind.Object)
            return null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var property in element.EnumerateObject())
        {
            var path = prefix + property.Name;
            if (!seen.Add(property.Name))
                return path;
            if (DuplicateKey(property.Value, path + ".") is { } inner)
                return inner;
        }
        return null;
    }

    /// <summary>Reads options from JSON text (as <see cref="FromJsonFile"/>).</summary>
    public static PretrainOptions FromJson(string json)
    {
        JsonObject root;
        try
        {
            root =
                JsonNode.Parse(json) as JsonObject
                ?? throw new InvalidOptionException("config", null, "not a JSON object of options");
        }
        catch (JsonException e)
        {
            throw new InvalidOptionException("config", null, $"not valid JSON (line {e.LineNumber + 1})");
        }
        return FromJsonObject(root, null);
    }

    /// <summary>The options as JSON (what options.json holds).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, OptionsJson.Options);

    /// <summary>These options with some values replaced, each named by its path as in a config file
    /// ("schedule.lr", "optimizer.kind"; the flat names of earlier versions, "lr", "optimizer", also read; the auto
    /// settings as "optimizer.ratios.alpha", "maxRatio", "every", "smoothing", "noise") and given as its JSON value
    /// or text (e.g. ("optimizer.kind", "blockwise-adamw"), ("schedule.lr", 1e-3)). A bad name or value is an
    /// <see cref="InvalidOptionException"/> naming the option.</summary>
    public PretrainOptions With(IEnumerable<KeyValuePair<string, object?>> values)
    {
        var node = new JsonObject();
        foreach (var (key, value) in values)
            node[key] = JsonSerializer.SerializeToNode(value, OptionsJson.Options);
        return WithJson(node, null, document: false);
    }

    /// <summary>Reads a whole document: groups, flat keys of earlier versions, or both.</summary>
    internal static PretrainOptions FromJsonObject(JsonObject root, string? source) =>
        Defaults.WithJson(root, source, document: true);

    PretrainOptions WithJson(JsonObject values, string? source, bool document)
    {
        var result = this;
        var autoSettings = new List<(OptionField Field, JsonNode? Value, bool Flat)>();
        var ratiosGiven = false;
        foreach (var (key, value) in values.ToList())
        {
            // A group ({ "schedule": { "lr": ... } }), or one option by its path or its flat name of earlier versions.
            var entries =
                value is JsonObject group && OptionFields.IsGroup(key)
                    ? group.Select(kv => (Key: $"{key}.{kv.Key}", kv.Value))
                    : [(Key: key, Value: value)];
            foreach (var (path, item) in entries)
            {
                var field = OptionFields.Find(path)
                    ?? throw new InvalidOptionException(path, item?.ToJsonString(), OptionFields.Unknown(path), source);
                if (field.IsAutoSetting)
                    autoSettings.Add((field, item?.DeepClone(), path == field.FlatKey));
                else
                {
                    result = field.Set(result, OptionsJson.Convert(field, item, source));
                    ratiosGiven |= field.Path == "optimizer.ratios";
                }
            }
        }
        if (autoSettings.Count > 0)
            result = WithAutoSettings(result, autoSettings, source, document);
        // Ratios or auto settings given one by one (With: the command line's flags) with a plain optimizer would be
        // dropped: it gives every block the base LR. (A document may hold the default auto ratios with any
        // optimizer, as earlier versions wrote them; ResolvedOptions refuses other ratios there.)
        var kind = result.Optimizer.Kind;
        if (!document && !OptimizerKinds.IsBlockwise(kind) && Enum.IsDefined(kind))
        {
            if (ratiosGiven && !result.Optimizer.Ratios.Equals(BlockRatios.Uniform))
                throw ResolvedOptions.RatiosNeedBlockwise("Optimizer.Ratios", result.Optimizer.Ratios.ToString(), kind);
            if (autoSettings.Count > 0)
                throw ResolvedOptions.RatiosNeedBlockwise(
                    autoSettings[0].Field.Name,
                    autoSettings[0].Value?.ToJsonString(),
                    kind
                );
        }
        return result;
    }

    /// <summary>The auto-ratio settings given one by one (--auto-alpha, or the four flat keys of files written before
    /// typed ratios, <c>Flat</c>), applied to the auto ratios of <paramref name="options"/>.</summary>
    static PretrainOptions WithAutoSettings(
        PretrainOptions options,
        List<(OptionField Field, JsonNode? Value, bool Flat)> given,
        string? source,
        bool document
    )
    {
        var ratios = options.Optimizer.Ratios;
        // Files written before typed ratios hold the four flat keys whatever the ratios were; given any other way (the
        // command line's --auto-* flags, With, a path in a file) without auto ratios they would be dropped, so they
        // are refused.
        if (!ratios.IsAuto && document && given.All(g => g.Flat))
            return options;
        if (!ratios.IsAuto)
        {
            var (field, value, _) = document ? given.First(g => !g.Flat) : given[0];
            throw new InvalidOptionException(
                field.Name,
                value?.ToJsonString(),
                $"applies only to auto ratios (Optimizer.Ratios auto), not {ratios}; set Optimizer.Ratios to auto or "
                    + $"leave it out"
            );
        }
        var settings = ratios.AutoSettings!;
        foreach (var (field, value, _) in given)
        {
            // Each key is checked on its own (the others valid), so a refusal names the key that set it.
            double Number() =>
                value is JsonValue v && v.TryGetValue<double>(out var x)
                    ? x
                    : throw new InvalidOptionException(field.Name, value?.ToJsonString(), "expected a number", source);
            bool Switch() =>
                value is JsonValue v && v.TryGetValue<bool>(out var on) ? on
                : value is JsonValue t && t.TryGetValue<string>(out var text) && BlockRatios.ParseSwitch(text) is { } s
                    ? s
                : throw new InvalidOptionException(field.Name, value?.ToJsonString(), "expected on or off", source);
            settings = field.Path switch
            {
                OptionFields.AutoAlpha => settings with { Alpha = Number() },
                OptionFields.AutoMaxRatio => settings with { MaxRatio = Number() },
                OptionFields.AutoEvery => Number() is var every
                && every == Math.Floor(every)
                && every is >= int.MinValue and <= int.MaxValue
                    ? settings with
                    {
                        Every = (int)every,
                    }
                    : throw new InvalidOptionException(
                        field.Name,
                        value?.ToJsonString(),
                        "expected a whole number",
                        source
                    ),
                OptionFields.AutoNoise => settings with { Noise = Switch() },
                _ => settings with { Smoothing = Number() },
            };
            if (settings.Problem() is { } problem)
                throw new InvalidOptionException(field.Name, value?.ToJsonString(), problem, source);
        }
        return options with { Optimizer = options.Optimizer with { Ratios = BlockRatios.Auto(settings) } };
    }
}

/// <summary>Reads options as <see cref="PretrainOptions.FromJson"/> does (groups or the flat keys of earlier
/// versions, so older checkpoints' trainer.json reads) and writes them as groups.</summary>
sealed class PretrainOptionsConverter : JsonConverter<PretrainOptions>
{
    public override PretrainOptions Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var root = JsonNode.Parse(ref reader) as JsonObject ?? throw new JsonException("expected an object of options");
        try
        {
            return PretrainOptions.FromJsonObject(root, null);
        }
        catch (InvalidOptionException e)
        {
            throw new OptionValueException(e.Message);
        }
    }

    public override void Write(Utf8JsonWriter writer, PretrainOptions value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        foreach (var group in OptionFields.Groups)
        {
            writer.WritePropertyName(group.Key);
            JsonSerializer.Serialize(writer, group.Property.GetValue(value), group.Property.PropertyType, options);
        }
        writer.WriteEndObject();
    }
}

/// <summary>Where a run is, for progress displays.</summary>
/// <param name="Step">Optimizer steps done (1 after the first step), as <see cref="StepReport.Step"/> numbers
/// them.</param>
/// <param name="Steps">The run's length in steps.</param>
/// <param name="Loss">The train loss of the step.</param>
/// <param name="ValLoss">The validation loss after the step, when it evaluated (null otherwise).</param>
/// <param name="TokensPerSecond">Training speed of the step, in tokens per second.</param>
public sealed record TrainProgress(int Step, int Steps, double Loss, double? ValLoss, double TokensPerSecond);
