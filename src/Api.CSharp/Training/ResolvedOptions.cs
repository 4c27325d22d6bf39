using System.Globalization;
using BlockwiseLR.Core;
using BlockwiseLR.Models;

namespace BlockwiseLR.Training;

/// <summary>The options checked and resolved against each other: every problem is found before anything is
/// written. Refusals are <see cref="InvalidOptionException"/>s naming the option.</summary>
public sealed record ResolvedOptions(
    PretrainOptions Options, ModelConfig? Config, BlockRatios Ratios, BlockSchedule Schedule,
    int SeqLen, int MicroBatch, int Accumulation, WeightDecayPolicy DecayPolicy)
{
    /// <summary>The tokenizer the data's manifest records (null: data of your own, or shards without a manifest).</summary>
    public Data.TokenizerRecord? Tokenizer { get; init; }

    /// <summary>Whether each block gets its own LR (a blockwise optimizer).</summary>
    public bool Blockwise => OptimizerKinds.IsBlockwise(Options.Optimizer);

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
        if (!custom && o.ModelConfig is null && ModelConfigRules.TryNamed(o.Model) is { IsOk: false } unknown)
            throw Bad(nameof(o.Model), o.Model, unknown.Error);
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
        if (o.Ratios.IsAuto && o.AlphaWarmup && OptimizerKinds.IsBlockwise(o.Optimizer))
            throw Bad(nameof(o.AlphaWarmup), "true", "makes a block's warmup ratio x longer, but auto ratios change during the run; use a fixed warmup with auto ratios");
        // Plain AdamW and Adam-mini are the blockwise ones with one LR for every block; auto starts from uniform.
        var blockwise = OptimizerKinds.IsBlockwise(o.Optimizer);
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
        var decay = o.WeightDecayPolicy ?? (OptimizerKinds.Family(o.Optimizer) == OptimizerFamily.AdamMini
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
        if (!FlopsRules.PeakTflops.TryGetValue(peak.Trim().ToLowerInvariant(), out var entry))
            throw new InvalidOptionException(nameof(PretrainOptions.PeakTflops), peak,
                $"give TFLOP/s (a number > 0) or one of {string.Join(", ", FlopsRules.PeakTflops.Keys)}");
        var (bf16, tf32, fp32) = entry;
        return 1e12 * (precision == Precision.Bf16Mixed ? bf16 : precision == Precision.Tf32 ? tf32 : fp32);
    }
}
