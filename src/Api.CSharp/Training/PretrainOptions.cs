using System.Text.Json;
using System.Text.Json.Nodes;
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
        return Defaults.WithJson(root, path, document: true);
    }

    /// <summary>Reads options from JSON text (as <see cref="FromJsonFile"/>).</summary>
    public static PretrainOptions FromJson(string json)
    {
        JsonObject root;
        try { root = JsonNode.Parse(json) as JsonObject ?? throw new InvalidOptionException("config", null, "not a JSON object of options"); }
        catch (JsonException e) { throw new InvalidOptionException("config", null, $"not valid JSON (line {e.LineNumber + 1})"); }
        return Defaults.WithJson(root, null, document: true);
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
        return WithJson(node, null, document: false);
    }

    PretrainOptions WithJson(JsonObject values, string? source, bool document)
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
        // Files written before typed ratios hold the four keys whatever the ratios were; given anew (the command
        // line's --auto-* flags, With) without auto ratios they would be dropped, so they are refused.
        if (legacyAuto.Count > 0 && !result.Ratios.IsAuto && !document)
        {
            var (key, value) = legacyAuto.First();
            throw new InvalidOptionException(char.ToUpperInvariant(key[0]) + key[1..], value?.ToJsonString(),
                $"applies only to auto ratios (Ratios auto), not {result.Ratios}; set Ratios to auto or leave it out");
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

/// <summary>Where a run is, for progress displays.</summary>
public sealed record TrainProgress(int Step, int Steps, double Loss, double? ValLoss, double TokensPerSecond);
