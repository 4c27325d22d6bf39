using System.Globalization;
using BlockwiseLR.Core;
using BlockwiseLR.Models;

namespace BlockwiseLR.Training;

/// <summary>The options checked and resolved against each other: every problem is found before anything is
/// written. Refusals are <see cref="InvalidOptionException"/>s naming the option by group and field
/// ("Schedule.Lr").</summary>
/// <param name="Options">The options as given.</param>
/// <param name="Config">The model's config (null: a model of your own).</param>
/// <param name="Ratios">The block ratios in force.</param>
/// <param name="Schedule">Every block's learning-rate schedule.</param>
/// <param name="SeqLen">Tokens per training sequence.</param>
/// <param name="MicroBatch">Sequences per forward/backward pass on each process.</param>
/// <param name="Accumulation">Micro-batches accumulated per optimizer step.</param>
/// <param name="DecayPolicy">Which parameters weight decay applies to.</param>
internal sealed record ResolvedOptions(
    PretrainOptions Options,
    ModelConfig? Config,
    BlockRatios Ratios,
    BlockSchedule Schedule,
    int SeqLen,
    int MicroBatch,
    int Accumulation,
    WeightDecayPolicy DecayPolicy
)
{
    /// <summary>The tokenizer the data's manifest records (null: data of your own, or shards without a
    /// manifest).</summary>
    public Data.TokenizerRecord? Tokenizer { get; init; }

    /// <summary>Whether each block gets its own LR (a blockwise optimizer).</summary>
    public bool Blockwise => OptimizerKinds.IsBlockwise(Options.Optimizer.Kind);

    /// <summary>Whether the ratios are set from measured sharpness during the run.</summary>
    public bool AutoRatios => Blockwise && Options.Optimizer.Ratios.IsAuto;

    /// <summary>The small batch of the gradient-noise measurement, in sequences: rank 0's first micro-batch when a
    /// step has several (accumulation or processes), otherwise the first half of the batch (the step then runs as
    /// two halves). 0: a batch of one sequence, which cannot be split.</summary>
    public int NoiseBatch => MicroBatch < Options.Training.BatchSize ? MicroBatch : Options.Training.BatchSize / 2;

    /// <summary>Whether a step that measures gradient noise splits its one micro-batch into two halves.</summary>
    internal bool SplitsForNoise => MicroBatch == Options.Training.BatchSize && NoiseBatch >= 1;

    /// <summary>Checks options for a named model (or <see cref="ModelOptions.Config"/>) on a prepared
    /// dataset.</summary>
    public static ResolvedOptions Resolve(PretrainOptions o) => Resolve(o, ownData: false);

    internal static ResolvedOptions Resolve(PretrainOptions o, bool ownData, int world = 1) =>
        Resolve(o, custom: false, customTied: true, ownData, world);

    /// <summary>For a model of your own: no config; the head is tied when no parameter is the head's.</summary>
    internal static ResolvedOptions ResolveCustom(PretrainOptions o, bool tiedHead, bool ownData, int world = 1) =>
        Resolve(o, custom: true, tiedHead, ownData, world);

    /// <summary><paramref name="world"/> processes split each global batch: each takes BatchSize / world windows,
    /// in micro-batches (default: one per process).</summary>
    static ResolvedOptions Resolve(PretrainOptions o, bool custom, bool customTied, bool ownData, int world)
    {
        RequireGroups(o);
        if (o.Model.Config is not null && !o.Model.Overrides.IsEmpty)
            throw Bad(
                "Model.Overrides",
                string.Join(",", o.Model.Overrides.ToKeyValues()),
                "give either Model.Config or Model.Overrides, not both (ModelConfigs.With applies overrides to a "
                    + "config)"
            );
        var config = custom ? null : ModelOf(o.Model);
        if (custom)
            RefuseForOwnModel(o);
        InRange("Schedule.Lr", "lr", o.Schedule.Lr);
        var (micro, seqLen) = CheckTraining(o.Training, o.Parallelism, config, world);
        Data.TokenizerRecord? tokenizer = null;
        if (!ownData)
            (config, tokenizer) = WithDataVocab(o.Data, o.Model, config);
        CheckRunAndDiagnostics(o);
        CheckNumerics(o);
        if (config is not null)
            CheckMemory(o, config, micro, seqLen);
        var tied = config?.Tied ?? customTied;
        var (ratios, schedule) = ScheduleOf(o, tied);
        var decay = o.Optimizer.WeightDecayPolicy
            ?? (
                OptimizerKinds.Family(o.Optimizer.Kind) == OptimizerFamily.AdamMini
                    ? BlockwiseLR.WeightDecayPolicy.AdamMiniNames
                    : BlockwiseLR.WeightDecayPolicy.AllParameters
            );
        var normalized = o.Model.Config is null && !custom ? o : o with { Model = o.Model with { Name = "custom" } };
        normalized = WithEffectiveRatios(normalized);
        return new ResolvedOptions(
            normalized,
            config,
            ratios,
            schedule,
            seqLen,
            micro,
            o.Training.BatchSize / micro,
            decay
        )
        {
            Tokenizer = tokenizer,
        };
    }

    static string Text(double x) => x.ToString("R", CultureInfo.InvariantCulture);

    static InvalidOptionException Bad(string option, object? value, string problem) =>
        new(option, value is double d ? Text(d) : value?.ToString(), problem);

    static void Finite(string option, double value, double min, bool inclusive)
    {
        if (!double.IsFinite(value) || (inclusive ? value < min : value <= min))
            throw Bad(option, value, $"must be a finite number {(inclusive ? ">=" : ">")} {Text(min)}");
    }

    /// <summary>Checks a value against its flag's range in the core's table (what <c>blr --help</c> shows).</summary>
    static void InRange(string option, string flag, double value)
    {
        if (RangeRules.Check(flag, value) is { } problem)
            throw Bad(option, value, problem);
    }

    static void RequireGroups(PretrainOptions o)
    {
        foreach (var (_, group) in OptionFields.Groups)
            if (group.GetValue(o) is null)
                throw Bad(group.Name, null, $"is required (new {group.PropertyType.Name}() for the defaults)");
        if (o.Optimizer.Ratios is null)
            throw Bad("Optimizer.Ratios", null, "is required (BlockRatios.Paper, Uniform, Of(...) or Auto())");
        if (o.Training.Device is null)
            throw Bad("Training.Device", null, "is required (ComputeDevice.Cpu or Cuda)");
    }

    /// <summary>The named model with its overrides, or the whole config given.</summary>
    static ModelConfig ModelOf(ModelOptions model)
    {
        string Overrides() => string.Join(",", model.Overrides.ToKeyValues());
        if (model.Config is null && ModelConfigRules.TryNamed(model.Name) is { IsOk: false } unknown)
            throw Bad("Model.Name", model.Name, unknown.Error);
        try
        {
            return model.Config is { } whole
                ? whole.With(ModelOverrides.None)
                : ModelConfigs.Create(model.Name, model.Overrides);
        }
        catch (ArgumentException e) when (e is not InvalidOptionException)
        {
            throw model.Config is not null ? Bad("Model.Config", ModelConfigs.Describe(model.Config), e.Reason())
            : model.Overrides.IsEmpty ? Bad("Model.Name", model.Name, e.Reason())
            : Bad("Model.Overrides", Overrides(), e.Reason());
        }
    }

    static void RefuseForOwnModel(PretrainOptions o)
    {
        if (o.Checkpoint.InitFrom is not null)
            throw Bad(
                "Checkpoint.InitFrom",
                o.Checkpoint.InitFrom,
                "starts a built-in model from saved weights; load them into your own model before training it"
            );
        if (o.Training.Precision == Precision.Bf16Mixed)
            throw Bad(
                "Training.Precision",
                "bf16-mixed",
                "is the built-in models' hand-written autocast; a model of your own computes in its own dtypes (use "
                    + "fp32 or tf32)"
            );
    }

    /// <summary>Checks steps, batches and parallelism; the micro-batch and the sequence length.</summary>
    static (int MicroBatch, int SeqLen) CheckTraining(
        TrainingOptions t,
        ParallelismOptions p,
        ModelConfig? config,
        int world
    )
    {
        InRange("Training.Steps", "steps", t.Steps);
        InRange("Training.BatchSize", "batch-size", t.BatchSize);
        if (t.MicroBatchSize is { } given)
            InRange("Training.MicroBatchSize", "micro-batch-size", given);
        if (world > 1 && t.BatchSize % world != 0)
            throw Bad(
                "Training.BatchSize",
                t.BatchSize,
                $"must be divisible by the number of processes ({world}); each takes an equal share of the batch"
            );
        var micro = t.MicroBatchSize ?? t.BatchSize / world;
        if (micro < 1 || t.BatchSize % micro != 0)
            throw Bad(
                "Training.MicroBatchSize",
                micro,
                $"must divide the batch size ({t.BatchSize}); pick a micro-batch that divides the batch"
            );
        if (world > 1 && (t.BatchSize / world) % micro != 0)
            throw Bad(
                "Training.MicroBatchSize",
                micro,
                $"must divide each process's share of the batch ({t.BatchSize} / {world} processes = "
                    + $"{t.BatchSize / world}); "
                    + "the batch must be divisible by processes x micro-batch"
            );
        InRange("Parallelism.Zero", "zero", p.Zero);
        InRange("Parallelism.BucketMb", "bucket-mb", p.BucketMb);
        var seqLen = t.SeqLen
            ?? config?.Context
            ?? throw Bad("Training.SeqLen", null, "is required for a model of your own (its context is not known)");
        InRange("Training.SeqLen", "seq-len", seqLen);
        if (seqLen < 1 || (config is not null && seqLen > config.Context))
            throw Bad(
                "Training.SeqLen",
                seqLen,
                config is null ? "must be >= 1" : $"must be in 1..{config.Context} (the model's context)"
            );
        return (micro, seqLen);
    }

    /// <summary>The model's vocabulary comes from the data's tokenizer (padded to a multiple of 64, as the named
    /// configs pad GPT-2's 50,257 to 50,304), unless given; one smaller than the tokenizer's is refused here.</summary>
    static (ModelConfig? Config, Data.TokenizerRecord? Tokenizer) WithDataVocab(
        DataOptions data,
        ModelOptions model,
        ModelConfig? config
    )
    {
        if (string.IsNullOrWhiteSpace(data.Path))
            throw Bad(
                "Data.Path",
                null,
                "is required: a folder of shards (ShardPreparer.Run or blr prepare writes one)"
            );
        if (!Directory.Exists(data.Path))
            throw Bad(
                "Data.Path",
                data.Path,
                "no such folder; prepare the data into it first (ShardPreparer.Run or blr prepare)"
            );
        var tokenizer = Data.TextTokenizers.OfDataset(data.Path);
        // The tokenizer files travel into every checkpoint: checked now, before anything is written, not at the
        // first checkpoint (missing) or never (changed: a model whose samples decode with the wrong pieces).
        if (tokenizer is not null)
            Data.TextTokenizers.Verify(tokenizer, data.Path, "manifest.json");
        if (config is null || tokenizer is null)
            return (config, tokenizer);
        var explicitVocab = model.Config is not null || model.Overrides.Vocab is not null;
        if (explicitVocab && config.Vocab < tokenizer.VocabSize)
            throw Bad(
                model.Config is not null ? "Model.Config" : "Model.Overrides",
                $"vocab={config.Vocab}",
                $"is smaller than the data's tokenizer ({tokenizer.Name}, {tokenizer.VocabSize} ids); leave vocab "
                    + $"out to "
                    + $"take it from the data, or give at least {tokenizer.VocabSize}"
            );
        if (!explicitVocab && config.Vocab != PaddedVocab(tokenizer.VocabSize))
            config = config.With(ModelOverrides.None with { Vocab = PaddedVocab(tokenizer.VocabSize) });
        return (config, tokenizer);
    }

    static void CheckRunAndDiagnostics(PretrainOptions o)
    {
        if (File.Exists(o.Run.Out))
            throw Bad("Run.Out", o.Run.Out, "is a file; give a folder for the run");
        if (o.Run.Overwrite && o.Checkpoint.Resume is not null)
            throw Bad(
                "Run.Overwrite",
                null,
                $"replaces the run that Checkpoint.Resume {o.Checkpoint.Resume} continues; give one of them (resume "
                    + "to go on from its checkpoint, overwrite to train it again from the start)"
            );
        InRange("Evaluation.Every", "eval-every", o.Evaluation.Every);
        InRange("Evaluation.Windows", "eval-windows", o.Evaluation.Windows);
        InRange("Checkpoint.Every", "checkpoint-every", o.Checkpoint.Every);
        InRange("Checkpoint.Keep", "keep-checkpoints", o.Checkpoint.Keep);
        InRange("Debug.SharpnessEvery", "sharpness-every", o.Debug.SharpnessEvery);
        InRange("Debug.NoiseScaleEvery", "noise-scale-every", o.Debug.NoiseScaleEvery);
        if (o.Debug.NoiseScaleEvery > 0 && o.Training.BatchSize < 2)
            throw Bad(
                "Debug.NoiseScaleEvery",
                o.Debug.NoiseScaleEvery,
                "needs a batch of at least 2 sequences (the noise scale compares part of the batch with the whole); "
                    + "raise Training.BatchSize or leave it at 0"
            );
    }

    /// <summary>Clipping, the optimizer's hyperparameters, the schedule's numbers, threads and the closed choices, in
    /// the order earlier versions checked them.</summary>
    static void CheckNumerics(PretrainOptions o)
    {
        var (opt, s, t) = (o.Optimizer, o.Schedule, o.Training);
        InRange("Training.GradClip", "grad-clip", t.GradClip);
        if (opt.WeightDecay is { } wd)
            InRange("Optimizer.WeightDecay", "weight-decay", wd);
        Finite("Optimizer.Eps", opt.Eps, 0, inclusive: false);
        if (opt.Beta1 is { } b1 && !(b1 >= 0 && b1 < 1))
            throw Bad("Optimizer.Beta1", b1, "must be in [0, 1)");
        if (opt.Beta2 is { } b2 && !(b2 >= 0 && b2 < 1))
            throw Bad("Optimizer.Beta2", b2, "must be in [0, 1)");
        if (!Enum.IsDefined(opt.NewtonSchulz))
            throw Bad(
                "Optimizer.NewtonSchulz",
                (int)opt.NewtonSchulz,
                $"is not one of {string.Join(", ", OptionNames.Known<NewtonSchulzPrecision>())}"
            );
        if (s.FloorLr is { } floor)
            InRange("Schedule.FloorLr", "floor", floor);
        if (s.WarmupSteps is { } warmup)
            InRange("Schedule.WarmupSteps", "warmup", warmup);
        if (t.Threads is { } threads)
            InRange("Training.Threads", "threads", threads);
        if (o.Debug.PeakTflops is { } peak)
            _ = PeakFlops(peak, o.Training.Precision);
        if (!Enum.IsDefined(opt.Kind))
            throw Bad(
                "Optimizer.Kind",
                (int)opt.Kind,
                $"is not one of {string.Join(", ", OptionNames.Known<OptimizerKind>())}"
            );
        if (!Enum.IsDefined(s.Kind))
            throw Bad(
                "Schedule.Kind",
                (int)s.Kind,
                $"is not one of {string.Join(", ", OptionNames.Known<LrSchedule>())}"
            );
        if (!Enum.IsDefined(t.Precision))
            throw Bad(
                "Training.Precision",
                (int)t.Precision,
                $"is not one of {string.Join(", ", OptionNames.Known<Precision>())}"
            );
        CheckRatiosForKind(opt);
        if (opt.Ratios.IsAuto && s.AlphaWarmup && OptimizerKinds.IsBlockwise(opt.Kind))
            throw Bad(
                "Schedule.AlphaWarmup",
                "true",
                "makes a block's warmup ratio x longer, but auto ratios change during the run; use a fixed warmup "
                    + "with auto ratios"
            );
    }

    /// <summary>Ratios that a plain optimizer would drop (it gives every block the base LR): any but uniform and the
    /// default auto, which <see cref="OptimizerOptions.Ratios"/> holds when none were given.</summary>
    static void CheckRatiosForKind(OptimizerOptions opt)
    {
        if (!OptimizerKinds.IsBlockwise(opt.Kind) && !IsNoOpForPlain(opt.Ratios))
            throw RatiosNeedBlockwise("Optimizer.Ratios", opt.Ratios.ToString(), opt.Kind);
    }

    static bool IsNoOpForPlain(BlockRatios ratios) =>
        ratios.Equals(BlockRatios.Uniform) || ratios.Equals(BlockRatios.Auto());

    /// <summary>The refusal of ratios (or an auto-ratio setting, <paramref name="option"/>) given with a plain
    /// optimizer.</summary>
    internal static InvalidOptionException RatiosNeedBlockwise(string option, string? value, OptimizerKind kind) =>
        new(
            option,
            value,
            $"applies only to the blockwise optimizers; {OptionNames.Format(kind)} gives every block the base LR "
                + $"(choose Optimizer.Kind blockwise-{OptionNames.Format(kind)}, or leave {option} out)"
        );

    /// <summary>The options as a run uses them: a plain optimizer's ratios are uniform (options.json says so, and a
    /// resume compares them so).</summary>
    internal static PretrainOptions WithEffectiveRatios(PretrainOptions o) =>
        OptimizerKinds.IsBlockwise(o.Optimizer.Kind) || o.Optimizer.Ratios is null
            ? o
            : o with
            {
                Optimizer = o.Optimizer with { Ratios = BlockRatios.Uniform },
            };

    /// <summary>The ratios the schedule starts from and the schedule. Plain AdamW, Adam-mini, Lion and Muon are the
    /// blockwise ones with one LR for every block; auto starts from uniform. A refusal names the field the schedule
    /// names.</summary>
    static (BlockRatios Ratios, BlockSchedule Schedule) ScheduleOf(PretrainOptions o, bool tied)
    {
        var (opt, s, steps) = (o.Optimizer, o.Schedule, o.Training.Steps);
        var ratios = OptimizerKinds.IsBlockwise(opt.Kind) && !opt.Ratios.IsAuto ? opt.Ratios : BlockRatios.Uniform;
        try
        {
            ratios.Validate(tied);
        }
        catch (ArgumentException e)
        {
            throw Bad("Optimizer.Ratios", opt.Ratios, e.Message);
        }
        try
        {
            return (
                ratios,
                BlockSchedule.Create(s.Kind, s.Lr, s.WarmupSteps, steps, ratios, tied, s.FloorLr, s.AlphaWarmup)
            );
        }
        catch (ScheduleException e)
        {
            throw e.Field switch
            {
                ScheduleField.WarmupSteps => Bad(
                    "Schedule.WarmupSteps",
                    s.WarmupSteps ?? BlockSchedule.DefaultWarmup(steps),
                    e.Message
                ),
                ScheduleField.FloorLr => Bad(
                    "Schedule.FloorLr",
                    s.FloorLr ?? BlockSchedule.DefaultFloor(s.Lr),
                    e.Message
                ),
                ScheduleField.BaseLr => Bad("Schedule.Lr", s.Lr, e.Message),
                ScheduleField.TotalSteps => Bad("Training.Steps", steps, e.Message),
                _ => Bad("Schedule.Kind", OptionNames.Format(s.Kind), e.Message),
            };
        }
    }

    /// <summary>Refuses a run whose model and step need more memory than the machine has available, as
    /// <c>blr inspect</c> estimates it (weights, gradients, optimizer state and one micro-batch's activations), before
    /// anything is allocated. The CPU only: a GPU's memory is not known before libtorch is loaded.</summary>
    static void CheckMemory(PretrainOptions o, ModelConfig config, int micro, int seqLen)
    {
        if (o.Training.Device.IsCuda)
            return;
        var estimate = MemoryRules.Estimate(
            config,
            OptimizerKinds.Family(o.Optimizer.Kind),
            o.Training.Precision,
            micro,
            seqLen,
            mathAttention: true
        );
        if (!estimate.IsOk)
            return;
        var e = estimate.Value;
        var available = AvailableMemory();
        if (e.TotalBytes <= available)
            return;
        static string Gib(long bytes) => (bytes / 1073741824.0).ToString("0.0", CultureInfo.InvariantCulture) + " GiB";
        var needs =
            $"needs about {Gib(e.TotalBytes)} to train (weights {Gib(e.WeightBytes)}, gradients "
            + $"{Gib(e.GradientBytes)}, optimizer state {Gib(e.OptimizerStateBytes)}, activations of a micro-batch "
            + $"{Gib(e.ActivationBytes)}, as blr inspect estimates) and this machine has {Gib(available)} available";
        if (e.ActivationBytes > e.TotalBytes - e.ActivationBytes)
        {
            var option = o.Training.MicroBatchSize is null ? "Training.BatchSize" : "Training.MicroBatchSize";
            throw Bad(
                option,
                micro,
                $"a step {needs}; lower Training.MicroBatchSize (gradients accumulate up to the batch) or "
                    + "Training.SeqLen"
            );
        }
        throw o.Model.Config is not null
            ? Bad(
                "Model.Config",
                ModelConfigs.Describe(o.Model.Config),
                $"the model {needs}; choose a smaller model (blr inspect shows what a model needs)"
            )
        : o.Model.Overrides.IsEmpty
            ? Bad(
                "Model.Name",
                o.Model.Name,
                $"the model {needs}; choose a smaller model (blr inspect shows what a model needs)"
            )
        : Bad(
            "Model.Overrides",
            string.Join(",", o.Model.Overrides.ToKeyValues()),
            $"the model {needs}; choose a smaller model (blr inspect shows what a model needs)"
        );
    }

    /// <summary>The memory this process may still allocate: /proc/meminfo's MemAvailable where there is one, else
    /// what the runtime knows (the machine's or the container's limit).</summary>
    internal static long AvailableMemory()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                {
                    var kib = long.Parse(
                        line["MemAvailable:".Length..].Replace("kB", "").Trim(),
                        CultureInfo.InvariantCulture
                    );
                    return Math.Min(kib * 1024, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
                }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            // fall through to the runtime's figure
        }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    /// <summary>A vocabulary rounded up to a multiple of 64 (50,257 -> 50,304; 100,277 -> 100,288).</summary>
    public static int PaddedVocab(int vocab) => (vocab + 63) / 64 * 64;

    /// <summary>Peak FLOP/s: a number of TFLOP/s, or a GPU name from the core's table (by precision).</summary>
    internal static double PeakFlops(string peak, Precision precision)
    {
        if (
            double.TryParse(peak, NumberStyles.Float, CultureInfo.InvariantCulture, out var tflops)
            && double.IsFinite(tflops)
            && tflops > 0
        )
            return tflops * 1e12;
        if (!FlopsRules.PeakTflops.TryGetValue(peak.Trim().ToLowerInvariant(), out var entry))
            throw new InvalidOptionException(
                "Debug.PeakTflops",
                peak,
                $"give TFLOP/s (a number > 0) or one of {string.Join(", ", FlopsRules.PeakTflops.Keys)}"
            );
        var (bf16, tf32, fp32) = entry;
        return 1e12
            * (
                precision == Precision.Bf16Mixed ? bf16
                : precision == Precision.Tf32 ? tf32
                : fp32
            );
    }
}
