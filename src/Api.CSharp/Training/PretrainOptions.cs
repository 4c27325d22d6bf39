using System.Text.Json;
using System.Text.Json.Serialization;
using BlockwiseLR.Core;
using BlockwiseLR.Models;

namespace BlockwiseLR.Training;

/// <summary>Everything a training run needs. Defaults follow the paper's recipe where it has one. Every value
/// can come from a JSON config file (property names in camelCase); the effective options are saved with the run.</summary>
public sealed record PretrainOptions
{
    /// <summary>A named config (gpt2-tiny, llama-0.25b, ...).</summary>
    public string Model { get; init; } = "gpt2-tiny";
    /// <summary>Model overrides like "layers=2" (keys: layers, width, heads, kv-heads, d-ff, context, vocab, bias, tied).</summary>
    public IReadOnlyList<string> ModelOverrides { get; init; } = [];
    /// <summary>A folder of shards from `blr prepare`.</summary>
    public string Data { get; init; } = "";
    /// <summary>adamw, blockwise-adamw, adam-mini or blockwise-adam-mini.</summary>
    public string Optimizer { get; init; } = "blockwise-adamw";
    /// <summary>paper, uniform, a map like emb=10,qk=8,vo=4,ffn=6,norm=1, or auto (from measured sharpness, see
    /// the Auto* options). Plain adamw and adam-mini use uniform.</summary>
    public string Ratios { get; init; } = "paper";
    /// <summary>auto ratios: r_b = clamp((S_norm / S_b)^AutoAlpha, 1, AutoMaxRatio) from the proxy sharpness of
    /// every step's gradients, smoothed by an exponential moving average (AutoSmoothing), applied every AutoEvery
    /// steps. AutoAlpha 0.25 comes from the README's measurement (0.5 kept only 60% of AdamW's level where the
    /// paper ratios lose; 0.25 beat AdamW there and kept all of the paper ratios' gain where they win).</summary>
    public double AutoAlpha { get; init; } = 0.25;
    public double AutoMaxRatio { get; init; } = 10;
    public int AutoEvery { get; init; } = 10;
    public double AutoSmoothing { get; init; } = 0.9;
    /// <summary>Log the proxy sharpness per block (B ||grad_b||^2 / #params(b), from the step's gradients) into
    /// metrics.jsonl every N steps; 0: off.</summary>
    public int SharpnessEvery { get; init; }
    /// <summary>Base (AdamW) peak learning rate; a block's peak is its ratio times this.</summary>
    public double Lr { get; init; } = 6e-4;
    /// <summary>cosine, linear, constant, wsd, wsd-cosine, wsd-1-sqrt, wsd-anneal.</summary>
    public string Schedule { get; init; } = "cosine";
    /// <summary>Warmup steps (default: 2% of the run, at least 1).</summary>
    public int? WarmupSteps { get; init; }
    /// <summary>The one floor every block decays to (default: Lr / 20).</summary>
    public double? FloorLr { get; init; }
    public bool AlphaWarmup { get; init; }
    public int Steps { get; init; } = 1000;
    /// <summary>Sequences per optimizer step (the global batch).</summary>
    public int BatchSize { get; init; } = 16;
    /// <summary>Sequences per forward/backward (default: the batch size); gradients accumulate up to the batch.</summary>
    public int? MicroBatchSize { get; init; }
    /// <summary>Tokens per sequence (default: the model's context).</summary>
    public int? SeqLen { get; init; }
    public ulong Seed { get; init; } = 1337;
    /// <summary>The run folder (metrics, checkpoints, options, report).</summary>
    public string Out { get; init; } = "runs/run";
    /// <summary>"latest" (the newest checkpoint in Out) or a checkpoint folder.</summary>
    public string? Resume { get; init; }
    /// <summary>Start from the weights of a Hugging Face folder, checkpoint or run (same model shape), with a
    /// fresh optimizer and schedule.</summary>
    public string? InitFrom { get; init; }
    /// <summary>cpu or cuda.</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>fp32, tf32 or bf16-mixed.</summary>
    public string Precision { get; init; } = "fp32";
    /// <summary>Evaluate every N steps (and at the end); 0: only at the end.</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Validation windows (the first N of the val split).</summary>
    public int EvalWindows { get; init; } = 64;
    /// <summary>Checkpoint every N steps (and at the end); 0: only at the end.</summary>
    public int CheckpointEvery { get; init; }
    public int KeepCheckpoints { get; init; } = 2;
    /// <summary>Global gradient-norm clip; 0 turns it off.</summary>
    public double GradClip { get; init; } = 1.0;
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    /// <summary>all, matrices or adam-mini (default: all for AdamW, adam-mini for Adam-mini).</summary>
    public string? WeightDecayPolicy { get; init; }
    /// <summary>CPU threads for libtorch (default: libtorch's choice).</summary>
    public int? Threads { get; init; }
    /// <summary>The GPU's dense peak TFLOP/s for MFU in the metrics, or a name from the table: h100, h200, a100
    /// (default h100 on CUDA; no MFU on the CPU).</summary>
    public string? PeakTflops { get; init; }

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Reads options from a JSON file; unknown keys are an error naming them.</summary>
    public static PretrainOptions FromJsonFile(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"{path}: config file not found");
        var strict = new JsonSerializerOptions(Json) { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow };
        try { return JsonSerializer.Deserialize<PretrainOptions>(File.ReadAllText(path), strict) ?? throw new ArgumentException($"{path}: empty config"); }
        catch (JsonException e) { throw new ArgumentException($"{path}: {e.Message.Split('\n')[0]}"); }
    }

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>These options with some values replaced, named as in a config file (camelCase): what a command
    /// line gives overrides the file.</summary>
    public PretrainOptions With(IEnumerable<KeyValuePair<string, object?>> values)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(ToJson())!.AsObject();
        foreach (var (key, value) in values)
        {
            if (!node.ContainsKey(key)) throw new ArgumentException($"unknown training option '{key}'");
            node[key] = JsonSerializer.SerializeToNode(value, Json);
        }
        return node.Deserialize<PretrainOptions>(Json)!;
    }
}

/// <summary>The options checked and resolved against each other: every problem is found before anything is
/// written.</summary>
public sealed record ResolvedOptions(
    PretrainOptions Options, ModelConfig Config, BlockRatios Ratios, BlockSchedule Schedule, Precision Precision,
    int SeqLen, int MicroBatch, int Accumulation, WeightDecayPolicy DecayPolicy, bool AutoRatios)
{
    public static ResolvedOptions Resolve(PretrainOptions o)
    {
        var config = ModelConfigs.Create(o.Model, [.. o.ModelOverrides]);
        if (!(o.Lr > 0) || double.IsInfinity(o.Lr)) throw new ArgumentException($"--lr {o.Lr} must be a finite number > 0");
        if (o.Steps < 1) throw new ArgumentException($"--steps {o.Steps} must be >= 1");
        if (o.BatchSize < 1) throw new ArgumentException($"--batch-size {o.BatchSize} must be >= 1");
        var micro = o.MicroBatchSize ?? o.BatchSize;
        if (micro < 1 || o.BatchSize % micro != 0)
            throw new ArgumentException($"--batch-size {o.BatchSize} is not divisible by --micro-batch-size {micro}; pick a micro-batch that divides the batch");
        var seqLen = o.SeqLen ?? config.Context;
        if (seqLen < 1 || seqLen > config.Context) throw new ArgumentException($"--seq-len {seqLen} must be in 1..{config.Context} (the model's context)");
        if (o.Device is not ("cpu" or "cuda")) throw new ArgumentException($"--device {o.Device} is not cpu or cuda");
        if (string.IsNullOrWhiteSpace(o.Data)) throw new ArgumentException("--data is required: a folder of shards from blr prepare");
        if (!Directory.Exists(o.Data)) throw new ArgumentException($"{o.Data}: no such data folder; run blr prepare --out {o.Data} first");
        if (o.EvalWindows < 1) throw new ArgumentException($"--eval-windows {o.EvalWindows} must be >= 1");
        if (o.KeepCheckpoints < 1) throw new ArgumentException($"--keep-checkpoints {o.KeepCheckpoints} must be >= 1");
        if (o.GradClip < 0) throw new ArgumentException($"--grad-clip {o.GradClip} must be >= 0");
        var precision = PrecisionModule.parse(o.Precision);
        if (precision.IsError) throw new ArgumentException(precision.ErrorValue);
        var family = OptimizerFamilyModule.parse(o.Optimizer);
        if (family.IsError) throw new ArgumentException(family.ErrorValue);
        // Plain AdamW and Adam-mini are the blockwise ones with one LR for every block; auto starts from uniform.
        var blockwise = o.Optimizer.StartsWith("blockwise", StringComparison.Ordinal);
        var auto = blockwise && o.Ratios.Trim() == "auto";
        if (auto && (!(o.AutoAlpha > 0) || !(o.AutoMaxRatio >= 1) || o.AutoEvery < 1 || !(o.AutoSmoothing >= 0 && o.AutoSmoothing < 1)))
            throw new ArgumentException("auto ratios need autoAlpha > 0, autoMaxRatio >= 1, autoEvery >= 1 and autoSmoothing in [0, 1)");
        var ratios = blockwise && !auto ? BlockRatios.Parse(o.Ratios) : BlockRatios.Uniform;
        var warmup = o.WarmupSteps ?? Math.Max(1, o.Steps / 50);
        var schedule = BlockSchedule.Create(o.Schedule, o.Lr, warmup, o.Steps, ratios, config.Tied, o.FloorLr, o.AlphaWarmup);
        var decay = o.WeightDecayPolicy is { } text
            ? WeightDecay.parse(text) is var parsed && parsed.IsOk ? parsed.ResultValue : throw new ArgumentException(parsed.ErrorValue)
            : family.ResultValue == OptimizerFamily.AdamMini ? Core.WeightDecayPolicy.AdamMiniNames : Core.WeightDecayPolicy.AllParameters;
        return new ResolvedOptions(o, config, ratios, schedule, precision.ResultValue, seqLen, micro, o.BatchSize / micro, decay, auto);
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
    string? LastCheckpoint, string MetricsPath, bool Interrupted);

/// <summary>Training stopped because the loss or gradients stopped being finite.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
