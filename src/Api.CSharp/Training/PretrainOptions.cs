using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using BlockwiseLR.Core;
using BlockwiseLR.Models;

namespace BlockwiseLR.Training;

/// <summary>Everything a training run needs; each default is written here once (the CLI's help reads them).
/// Defaults follow the paper's recipe where it has one. Every value can come from a JSON config file (property
/// names in camelCase, choices as their kebab-case names in any case); the effective options are saved with the
/// run as options.json, which reads back as a config file.</summary>
public sealed record PretrainOptions
{
    /// <summary>A named config (gpt2-tiny, llama-0.25b, ...; see <see cref="ModelConfigs.Names"/>).</summary>
    public string Model { get; init; } = "gpt2-tiny";
    /// <summary>Changes to the named config.</summary>
    public ModelOverrides ModelOverrides { get; init; } = ModelOverrides.None;
    /// <summary>A whole config built in code (<see cref="ModelConfigs.Gpt2"/>, <see cref="ModelConfigs.Llama"/>,
    /// <see cref="ModelConfigs.With"/>); when set, <see cref="Model"/> and <see cref="ModelOverrides"/> are not used.</summary>
    public ModelConfig? ModelConfig { get; init; }
    /// <summary>A folder of shards from `blr prepare` (<see cref="Data.ShardPreparer"/>).</summary>
    public string Data { get; init; } = "";
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.BlockwiseAdamW;
    /// <summary>The blockwise optimizers' ratios; plain AdamW and Adam-mini give every block the base LR.</summary>
    public BlockRatios Ratios { get; init; } = BlockRatios.Paper;
    /// <summary>Log the proxy sharpness per block (B ||grad_b||^2 / #params(b), from the step's gradients) into
    /// metrics.jsonl every N steps; 0: off.</summary>
    public int SharpnessEvery { get; init; }
    /// <summary>Base (AdamW) peak learning rate; a block's peak is its ratio times this.</summary>
    public double Lr { get; init; } = 6e-4;
    public LrSchedule Schedule { get; init; } = LrSchedule.Cosine;
    /// <summary>Warmup steps (default: <see cref="BlockSchedule.DefaultWarmup"/>, 2% of the run, at least 1).</summary>
    public int? WarmupSteps { get; init; }
    /// <summary>The one floor every block decays to (default: <see cref="BlockSchedule.DefaultFloor"/>, Lr / 20).</summary>
    public double? FloorLr { get; init; }
    /// <summary>A block's warmup is ratio times longer (equal warmup slopes).</summary>
    public bool AlphaWarmup { get; init; }
    public int Steps { get; init; } = 1000;
    /// <summary>Sequences per optimizer step (the global batch).</summary>
    public int BatchSize { get; init; } = 16;
    /// <summary>Sequences per forward/backward (default: the batch size); gradients accumulate up to the batch.</summary>
    public int? MicroBatchSize { get; init; }
    /// <summary>Tokens per sequence (default: the model's context).</summary>
    public int? SeqLen { get; init; }
    /// <summary>Seed of initialization and data order.</summary>
    public ulong Seed { get; init; } = 1337;
    /// <summary>The run folder: options.json, metrics.jsonl, evals.csv, tensorboard/, checkpoints/, result.json.</summary>
    public string Out { get; init; } = "runs/run";
    /// <summary>"latest" (the newest checkpoint in Out) or a checkpoint folder.</summary>
    public string? Resume { get; init; }
    /// <summary>Replace the run already in Out (its options, metrics, checkpoints and result); without it, an Out
    /// that holds a run is refused unless the run is resumed.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Start from the weights of a Hugging Face folder, checkpoint or run (same model shape), with a
    /// fresh optimizer and schedule.</summary>
    public string? InitFrom { get; init; }
    public ComputeDevice Device { get; init; } = ComputeDevice.Cpu;
    /// <summary>Deterministic algorithms for the process (<see cref="TorchRuntime.UseDeterministicAlgorithms"/>):
    /// on CUDA, kernels that can vary between runs are replaced by deterministic ones, or the step fails naming the
    /// operation. CPU runs are deterministic for a fixed thread count without it.</summary>
    public bool Deterministic { get; init; }
    /// <summary>Train with the plain per-parameter optimizers the flat-buffer ones are tested against (slow; one
    /// process): for checking the fast ones over a whole run.</summary>
    internal bool ReferenceOptimizer { get; init; }
    public Precision Precision { get; init; } = Precision.Fp32;
    /// <summary>Evaluate every N steps (and at the end); 0: only at the end.</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Validation windows (the first N of the val split).</summary>
    public int EvalWindows { get; init; } = 64;
    /// <summary>Checkpoint every N steps (and at the end); 0: only at the end.</summary>
    public int CheckpointEvery { get; init; }
    /// <summary>Checkpoints kept (the newest).</summary>
    public int KeepCheckpoints { get; init; } = 2;
    /// <summary>Global gradient-norm clip; 0 turns it off.</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>Decoupled weight decay.</summary>
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    /// <summary>Which parameters decay (default: all for AdamW, Adam-mini's names for Adam-mini).</summary>
    public WeightDecayPolicy? WeightDecayPolicy { get; init; }
    /// <summary>CPU threads for libtorch (default: libtorch's choice; at N processes per machine, cores / N each).</summary>
    public int? Threads { get; init; }
    /// <summary>ZeRO stage of a data-parallel run: 0 (every rank keeps all optimizer state) or 1 (each rank keeps
    /// the state of its part of every flat group).</summary>
    public int Zero { get; init; }
    /// <summary>Size in MiB of the pieces gradients are all-reduced in (ZeRO-0).</summary>
    public double BucketMb { get; init; } = 25;
    /// <summary>The GPU's dense peak TFLOP/s for MFU in the metrics, or a name from the table: h100, h200, a100
    /// (default h100 on CUDA; no MFU on the CPU).</summary>
    public string? PeakTflops { get; init; }

    /// <summary>The defaults (what the CLI's help prints).</summary>
    public static PretrainOptions Defaults { get; } = new();

    /// <summary>Reads options from a JSON config file (or an options.json). Unknown keys and bad values are an
    /// <see cref="InvalidOptionException"/> naming the file and the option.</summary>
    public static PretrainOptions FromJsonFile(string path)
    {
        if (!File.Exists(path)) throw new InvalidOptionException("config", path, "file not found");
        JsonObject root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidOptionException("config", path, "not a JSON object of options"); }
        catch (JsonException e) { throw new InvalidOptionException("config", path, $"not valid JSON (line {e.LineNumber + 1})"); }
        return Defaults.WithJson(root, path);
    }

    /// <summary>Reads options from JSON text (as <see cref="FromJsonFile"/>).</summary>
    public static PretrainOptions FromJson(string json)
    {
        JsonObject root;
        try { root = JsonNode.Parse(json) as JsonObject ?? throw new InvalidOptionException("config", null, "not a JSON object of options"); }
        catch (JsonException e) { throw new InvalidOptionException("config", null, $"not valid JSON (line {e.LineNumber + 1})"); }
        return Defaults.WithJson(root, null);
    }

    /// <summary>The options as JSON (what options.json holds).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, OptionsJson.Options);

    /// <summary>These options with some values replaced, each named as in a config file (camelCase) and given as
    /// its JSON value or text (e.g. ("optimizer", "blockwise-adamw"), ("lr", 1e-3)). A bad name or value is an
    /// <see cref="InvalidOptionException"/> naming the option.</summary>
    public PretrainOptions With(IEnumerable<KeyValuePair<string, object?>> values)
    {
        var node = new JsonObject();
        foreach (var (key, value) in values) node[key] = JsonSerializer.SerializeToNode(value, OptionsJson.Options);
        return WithJson(node, null);
    }

    PretrainOptions WithJson(JsonObject values, string? source)
    {
        var result = this with { };
        var legacyAuto = new JsonObject();
        foreach (var (key, value) in values.ToList())
        {
            // Before typed ratios, the auto settings were four top-level keys: read them into Ratios.
            if (OptionsJson.LegacyAutoKeys.ContainsKey(key)) { legacyAuto[key] = value?.DeepClone(); continue; }
            var property = OptionsJson.Property(key)
                ?? throw new InvalidOptionException(key, null, $"unknown option (known: {string.Join(", ", OptionsJson.Names)})", source);
            property.SetValue(result, OptionsJson.Convert(property, value, source));
        }
        if (legacyAuto.Count > 0 && result.Ratios.IsAuto)
        {
            var settings = result.Ratios.AutoSettings!;
            foreach (var (key, value) in legacyAuto)
            {
                // Each key is checked on its own (the others valid), so a refusal names the key that set it.
                var option = char.ToUpperInvariant(key[0]) + key[1..];
                double Number() => value is JsonValue v && v.TryGetValue<double>(out var x) ? x
                    : throw new InvalidOptionException(option, value?.ToJsonString(), "expected a number", source);
                settings = OptionsJson.LegacyAutoKeys[key] switch
                {
                    "alpha" => settings with { Alpha = Number() },
                    "max-ratio" => settings with { MaxRatio = Number() },
                    "every" => Number() is var every && every == Math.Floor(every) && every is >= int.MinValue and <= int.MaxValue ? settings with { Every = (int)every }
                        : throw new InvalidOptionException(option, value?.ToJsonString(), "expected a whole number", source),
                    _ => settings with { Smoothing = Number() },
                };
                if (settings.Problem() is { } problem) throw new InvalidOptionException(option, value?.ToJsonString(), problem, source);
            }
            result = result with { Ratios = BlockRatios.Auto(settings) };
        }
        return result;
    }
}

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

/// <summary>The options checked and resolved against each other: every problem is found before anything is
/// written. Refusals are <see cref="InvalidOptionException"/>s naming the option.</summary>
public sealed record ResolvedOptions(
    PretrainOptions Options, ModelConfig? Config, BlockRatios Ratios, BlockSchedule Schedule,
    int SeqLen, int MicroBatch, int Accumulation, WeightDecayPolicy DecayPolicy)
{
    /// <summary>The tokenizer the data's manifest records (null: data of your own, or shards without a manifest).</summary>
    public Data.TokenizerRecord? Tokenizer { get; init; }

    /// <summary>Whether each block gets its own LR (a blockwise optimizer).</summary>
    public bool Blockwise => OptimizerKindModule.isBlockwise(Options.Optimizer);

    /// <summary>Whether the ratios are set from measured sharpness during the run.</summary>
    public bool AutoRatios => Blockwise && Options.Ratios.IsAuto;

    /// <summary>Checks options for a named model (or <see cref="PretrainOptions.ModelConfig"/>) on a prepared dataset.</summary>
    public static ResolvedOptions Resolve(PretrainOptions o) => Resolve(o, ownData: false);

    internal static ResolvedOptions Resolve(PretrainOptions o, bool ownData, int world = 1) => Resolve(o, custom: false, customTied: true, ownData, world);

    /// <summary>For a model of your own: no config; the head is tied when no parameter is the head's.</summary>
    internal static ResolvedOptions ResolveCustom(PretrainOptions o, bool tiedHead, bool ownData, int world = 1) => Resolve(o, custom: true, tiedHead, ownData, world);

    /// <summary><paramref name="world"/> processes split each global batch: each takes BatchSize / world windows,
    /// in micro-batches (default: one per process).</summary>
    static ResolvedOptions Resolve(PretrainOptions o, bool custom, bool customTied, bool ownData, int world)
    {
        static string Text(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        static InvalidOptionException Bad(string option, object? value, string problem) =>
            new(option, value is double d ? Text(d) : value?.ToString(), problem);
        static void Finite(string option, double value, double min, bool inclusive)
        {
            if (!double.IsFinite(value) || (inclusive ? value < min : value <= min))
                throw Bad(option, value, $"must be a finite number {(inclusive ? ">=" : ">")} {Text(min)}");
        }
        if (o.ModelConfig is not null && !o.ModelOverrides.IsEmpty)
            throw Bad(nameof(o.ModelOverrides), string.Join(",", o.ModelOverrides.ToKeyValues()), "give either ModelConfig or ModelOverrides, not both (ModelConfigs.With applies overrides to a config)");
        ModelConfig? config = null;
        if (!custom && o.ModelConfig is null && ModelConfigModule.tryNamed(o.Model) is { IsError: true } unknown)
            throw Bad(nameof(o.Model), o.Model, unknown.ErrorValue);
        if (!custom)
            try { config = o.ModelConfig is { } whole ? whole.With(ModelOverrides.None) : ModelConfigs.Create(o.Model, o.ModelOverrides); }
            catch (ArgumentException e) when (e is not InvalidOptionException)
            {
                throw o.ModelConfig is not null ? Bad(nameof(o.ModelConfig), ModelConfigs.Describe(o.ModelConfig), e.Message)
                    : o.ModelOverrides.IsEmpty ? Bad(nameof(o.Model), o.Model, e.Message)
                    : Bad(nameof(o.ModelOverrides), string.Join(",", o.ModelOverrides.ToKeyValues()), e.Message);
            }
        if (custom && o.InitFrom is not null) throw Bad(nameof(o.InitFrom), o.InitFrom, "starts a built-in model from saved weights; load them into your own model before training it");
        if (custom && o.Precision == Precision.Bf16Mixed) throw Bad(nameof(o.Precision), "bf16-mixed", "is the built-in models' hand-written autocast; a model of your own computes in its own dtypes (use fp32 or tf32)");
        var tied = config?.Tied ?? customTied;
        Finite(nameof(o.Lr), o.Lr, 0, inclusive: false);
        if (o.Steps < 1) throw Bad(nameof(o.Steps), o.Steps, "must be >= 1");
        if (o.BatchSize < 1) throw Bad(nameof(o.BatchSize), o.BatchSize, "must be >= 1");
        if (world > 1 && o.BatchSize % world != 0)
            throw Bad(nameof(o.BatchSize), o.BatchSize, $"must be divisible by the number of processes ({world}); each takes an equal share of the batch");
        var micro = o.MicroBatchSize ?? o.BatchSize / world;
        if (micro < 1 || o.BatchSize % micro != 0)
            throw Bad(nameof(o.MicroBatchSize), micro, $"must divide the batch size ({o.BatchSize}); pick a micro-batch that divides the batch");
        if (world > 1 && (o.BatchSize / world) % micro != 0)
            throw Bad(nameof(o.MicroBatchSize), micro, $"must divide each process's share of the batch ({o.BatchSize} / {world} processes = {o.BatchSize / world}); the batch must be divisible by processes x micro-batch");
        if (o.Zero is not (0 or 1)) throw Bad(nameof(o.Zero), o.Zero, "must be 0 (no sharding) or 1 (optimizer state sharded across processes)");
        Finite(nameof(o.BucketMb), o.BucketMb, 0, inclusive: false);
        var seqLen = o.SeqLen ?? config?.Context ?? throw Bad(nameof(o.SeqLen), null, "is required for a model of your own (its context is not known)");
        if (seqLen < 1 || (config is not null && seqLen > config.Context))
            throw Bad(nameof(o.SeqLen), seqLen, config is null ? "must be >= 1" : $"must be in 1..{config.Context} (the model's context)");
        if (!ownData && string.IsNullOrWhiteSpace(o.Data)) throw Bad(nameof(o.Data), null, "is required: a folder of shards (ShardPreparer.Run or blr prepare writes one)");
        if (!ownData && !Directory.Exists(o.Data)) throw Bad(nameof(o.Data), o.Data, "no such folder; prepare the data into it first (ShardPreparer.Run or blr prepare)");
        // The model's vocabulary comes from the data's tokenizer (padded to a multiple of 64, as the named configs pad
        // GPT-2's 50,257 to 50,304), unless given; one smaller than the tokenizer's is refused here.
        var tokenizer = !ownData ? Data.TextTokenizers.OfDataset(o.Data!) : null;
        if (config is not null && tokenizer is not null)
        {
            var explicitVocab = o.ModelConfig is not null || o.ModelOverrides.Vocab is not null;
            if (explicitVocab && config.Vocab < tokenizer.VocabSize)
                throw Bad(o.ModelConfig is not null ? nameof(o.ModelConfig) : nameof(o.ModelOverrides), $"vocab={config.Vocab}",
                    $"is smaller than the data's tokenizer ({tokenizer.Name}, {tokenizer.VocabSize} ids); leave vocab out to take it from the data, or give at least {tokenizer.VocabSize}");
            if (!explicitVocab && config.Vocab != PaddedVocab(tokenizer.VocabSize))
                config = config.With(ModelOverrides.None with { Vocab = PaddedVocab(tokenizer.VocabSize) });
        }
        if (File.Exists(o.Out)) throw Bad(nameof(o.Out), o.Out, "is a file; give a folder for the run");
        if (o.EvalEvery < 0) throw Bad(nameof(o.EvalEvery), o.EvalEvery, "must be >= 0 (0: only at the end)");
        if (o.EvalWindows < 1) throw Bad(nameof(o.EvalWindows), o.EvalWindows, "must be >= 1");
        if (o.CheckpointEvery < 0) throw Bad(nameof(o.CheckpointEvery), o.CheckpointEvery, "must be >= 0 (0: only at the end)");
        if (o.KeepCheckpoints < 1) throw Bad(nameof(o.KeepCheckpoints), o.KeepCheckpoints, "must be >= 1");
        if (o.SharpnessEvery < 0) throw Bad(nameof(o.SharpnessEvery), o.SharpnessEvery, "must be >= 0 (0: off)");
        Finite(nameof(o.GradClip), o.GradClip, 0, inclusive: true);
        Finite(nameof(o.WeightDecay), o.WeightDecay, 0, inclusive: true);
        Finite(nameof(o.Eps), o.Eps, 0, inclusive: false);
        if (!(o.Beta1 >= 0 && o.Beta1 < 1)) throw Bad(nameof(o.Beta1), o.Beta1, "must be in [0, 1)");
        if (!(o.Beta2 >= 0 && o.Beta2 < 1)) throw Bad(nameof(o.Beta2), o.Beta2, "must be in [0, 1)");
        if (o.FloorLr is { } floor) Finite(nameof(o.FloorLr), floor, 0, inclusive: true);
        if (o.WarmupSteps is < 0) throw Bad(nameof(o.WarmupSteps), o.WarmupSteps, "must be >= 0");
        if (o.Threads is < 1) throw Bad(nameof(o.Threads), o.Threads, "must be >= 1 (leave it unset for libtorch's choice)");
        if (o.PeakTflops is { } peak) _ = PeakFlops(peak, o.Precision);
        if (!Enum.IsDefined(o.Optimizer)) throw Bad(nameof(o.Optimizer), (int)o.Optimizer, $"is not one of {string.Join(", ", OptionNames.Known<OptimizerKind>())}");
        if (!Enum.IsDefined(o.Schedule)) throw Bad(nameof(o.Schedule), (int)o.Schedule, $"is not one of {string.Join(", ", OptionNames.Known<LrSchedule>())}");
        if (!Enum.IsDefined(o.Precision)) throw Bad(nameof(o.Precision), (int)o.Precision, $"is not one of {string.Join(", ", OptionNames.Known<Precision>())}");
        if (o.Ratios is null) throw Bad(nameof(o.Ratios), null, "is required (BlockRatios.Paper, Uniform, Of(...) or Auto())");
        if (o.Device is null) throw Bad(nameof(o.Device), null, "is required (ComputeDevice.Cpu or Cuda)");
        // Plain AdamW and Adam-mini are the blockwise ones with one LR for every block; auto starts from uniform.
        var blockwise = OptimizerKindModule.isBlockwise(o.Optimizer);
        var ratios = blockwise && !o.Ratios.IsAuto ? o.Ratios : BlockRatios.Uniform;
        BlockSchedule schedule;
        try { ratios.Validate(tied); }
        catch (ArgumentException e) { throw Bad(nameof(o.Ratios), o.Ratios, e.Message); }
        try { schedule = BlockSchedule.Create(o.Schedule, o.Lr, o.WarmupSteps, o.Steps, ratios, tied, o.FloorLr, o.AlphaWarmup); }
        catch (ArgumentException e)
        {
            var (option, value) = e.Message.Contains("warmup", StringComparison.OrdinalIgnoreCase) ? (nameof(o.WarmupSteps), (object?)(o.WarmupSteps ?? BlockSchedule.DefaultWarmup(o.Steps)))
                : e.Message.Contains("floor", StringComparison.OrdinalIgnoreCase) ? (nameof(o.FloorLr), o.FloorLr ?? BlockSchedule.DefaultFloor(o.Lr))
                : (nameof(o.Schedule), OptionNames.Format(o.Schedule));
            throw Bad(option, value, e.Message);
        }
        var decay = o.WeightDecayPolicy ?? (OptimizerKindModule.family(o.Optimizer) == OptimizerFamily.AdamMini
            ? Core.WeightDecayPolicy.AdamMiniNames : Core.WeightDecayPolicy.AllParameters);
        var normalized = o.ModelConfig is null && !custom ? o : o with { Model = "custom" };
        return new ResolvedOptions(normalized, config, ratios, schedule, seqLen, micro, o.BatchSize / micro, decay) { Tokenizer = tokenizer };
    }

    /// <summary>A vocabulary rounded up to a multiple of 64 (50,257 -> 50,304; 100,277 -> 100,288).</summary>
    public static int PaddedVocab(int vocab) => (vocab + 63) / 64 * 64;

    /// <summary>Peak FLOP/s: a number of TFLOP/s, or a GPU name from the core's table (by precision).</summary>
    internal static double PeakFlops(string peak, Precision precision)
    {
        if (double.TryParse(peak, NumberStyles.Float, CultureInfo.InvariantCulture, out var tflops) && double.IsFinite(tflops) && tflops > 0) return tflops * 1e12;
        var entry = Flops.peakTflops.FirstOrDefault(e => e.Item1 == peak.Trim().ToLowerInvariant())
            ?? throw new InvalidOptionException(nameof(PretrainOptions.PeakTflops), peak, $"give TFLOP/s (a number > 0) or one of {string.Join(", ", Flops.peakTflops.Select(e => e.Item1))}");
        var (bf16, tf32, fp32) = entry.Item2;
        return 1e12 * (precision == Precision.Bf16Mixed ? bf16 : precision == Precision.Tf32 ? tf32 : fp32);
    }
}

/// <summary>One evaluation.</summary>
public sealed record EvalPoint(int Step, double ValLoss);

/// <summary>Where a run is, for progress displays.</summary>
public sealed record TrainProgress(int Step, int Steps, double Loss, double? ValLoss, double TokensPerSecond);

/// <summary>What a run produced.</summary>
public sealed record PretrainResult(
    string RunDirectory, int Steps, double FinalValLoss, double BestValLoss, IReadOnlyList<EvalPoint> Evals,
    IReadOnlyList<double> TrainLosses, double TokensPerSecond, double MillisecondsPerStep, long OptimizerStateBytes,
    string? LastCheckpoint, string MetricsPath, bool Interrupted)
{
    /// <summary>Reads a run's result.json (null numbers read as NaN).</summary>
    public static PretrainResult FromJsonFile(string path) =>
        JsonSerializer.Deserialize<PretrainResult>(File.ReadAllText(path), OptionsJson.Results)
        ?? throw new InvalidDataException($"{path}: empty result");

    /// <summary>The result as JSON (what result.json holds): a number that does not exist (no evaluation, no
    /// timed step) is null.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, OptionsJson.Results);
}

/// <summary>Training stopped because the loss or gradients stopped being finite.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
