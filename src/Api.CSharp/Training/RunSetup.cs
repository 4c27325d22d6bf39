using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Distributed;
using BlockwiseLR.Models;
using BlockwiseLR.Optim;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

/// <summary>
/// The set-up of a run, in the order a refusal must come: the options resolved against each other and the data,
/// the checkpoint a resume continues (or the weights an init starts from), the process group, the device and its
/// precision; then the data, the model and the optimizer; and only when every input has been read, the run
/// folder (rank 0 alone). Nothing here trains.
/// </summary>
sealed class RunSetup
{
    RunSetup(ResolvedOptions resolved, string runDirectory, string? resumeFrom, TrainerState? resumed, string? initFrom)
    {
        (Resolved, RunDirectory, ResumeFrom, Resumed, InitFrom) = (
            resolved,
            runDirectory,
            resumeFrom,
            resumed,
            initFrom
        );
    }

    public ResolvedOptions Resolved { get; }
    public PretrainOptions Options => Resolved.Options;
    public ModelConfig? Config => Resolved.Config;
    public string RunDirectory { get; }

    /// <summary>The checkpoint a resume continues (null: a new run).</summary>
    public string? ResumeFrom { get; }
    public TrainerState? Resumed { get; }

    /// <summary>Whether the run folder holds a run that stopped before its first checkpoint, which this one
    /// replaces.</summary>
    bool ReplacesUncheckpointed { get; init; }

    /// <summary>The weights a new run starts from (null: initialized from the seed).</summary>
    public string? InitFrom { get; }
    public ProcessGroup Group { get; private set; } = ProcessGroup.Single;
    public Device Device { get; private set; } = CPU;

    /// <summary>The first step this process runs.</summary>
    public int StartStep => Resumed?.Step ?? 0;
    public long TokensPerStep => (long)Options.Training.BatchSize * Resolved.SeqLen;

    /// <summary>Resolves and checks everything that can be refused before anything is written, joins the process
    /// group (<paramref name="group"/>, or the launcher's world) and picks the device.</summary>
    public static RunSetup Prepare(
        PretrainOptions options,
        nn.Module<Tensor, Tensor>? customModel,
        BlockRules rules,
        bool ownData,
        ProcessGroup? group
    )
    {
        var launch = group is null ? LaunchInfo.FromEnvironment() : null;
        var world = group?.WorldSize ?? launch!.WorldSize;
        var resolved = customModel is null
            ? ResolvedOptions.Resolve(options, ownData, world)
            : ResolvedOptions.ResolveCustom(options, tiedHead: !HasOwnHead(customModel, rules), ownData, world);
        var (o, config) = (resolved.Options, resolved.Config);
        var run = Path.GetFullPath(o.Run.Out);
        var resumeFrom = o.Checkpoint.Resume is { } resume ? Checkpoints.Locate(run, resume) : null;
        var resumed = resumeFrom is null ? null : Checkpoints.ReadState(resumeFrom, config);
        string? microBatchNote = null;
        if (resumed is not null)
        {
            // The micro-batch the checkpoint ran stands for an unset one on either side (the default depends on the
            // number of processes), so the same number given explicitly is no change.
            var kept = resumed.MicroBatch;
            PretrainOptions Effective(PretrainOptions x) =>
                kept is null || x.Training.MicroBatchSize is not null
                    ? x
                    : x with
                    {
                        Training = x.Training with { MicroBatchSize = kept },
                    };
            RunFolder.RefuseChangedTrajectory(
                Effective(resumed.Options),
                Effective(o),
                o.Checkpoint.Resume!,
                resumeFrom!
            );
            RefuseOldAutoRatios(resumed, o.Checkpoint.Resume!, resumeFrom!);
            MetricsWriter.CutBack(run, resumed.Step); // a damaged metrics file is refused before the folder is touched
            (resolved, microBatchNote) = KeepMicroBatch(resolved, kept, world);
        }
        // A run that stopped before its first checkpoint has nothing to resume: running it again replaces it, as a
        // torchtitan job with an empty checkpoint folder starts over. A run with a checkpoint is kept.
        var replaces = resumeFrom is null && !o.Run.Overwrite && RunFolder.StoppedBeforeFirstCheckpoint(run);
        if (resumeFrom is null && RunFolder.HoldsRun(run) && !o.Run.Overwrite && !replaces)
            throw new InvalidOptionException(
                "Run.Out",
                o.Run.Out,
                "already holds a run; resume it (Checkpoint.Resume latest) or replace it (Run.Overwrite)"
            );
        var initFrom = o.Checkpoint.InitFrom is { } init && resumeFrom is null ? ModelLocator.Resolve(init) : null;
        if (initFrom is not null && HfFormat.ReadConfig(initFrom) is var initConfig && !initConfig.Equals(config))
            throw new InvalidOptionException(
                "Checkpoint.InitFrom",
                initFrom,
                $"holds another model ({ModelConfigs.Describe(initConfig)}), not "
                    + $"{(config is null ? "the model given" : ModelConfigs.Describe(config))}; use the same model "
                    + $"and overrides"
            );
        var (vocab, context) = customModel is null ? (config?.Vocab, config?.Context) : TableRows(customModel, rules);
        if (context is { } rows && resolved.SeqLen > rows)
            throw new InvalidOptionException(
                "Training.SeqLen",
                resolved.SeqLen.ToString(System.Globalization.CultureInfo.InvariantCulture),
                $"must be in 1..{rows} (the model's position table has {rows} rows)"
            );
        var setup = new RunSetup(resolved, run, resumeFrom, resumed, initFrom)
        {
            ReplacesUncheckpointed = replaces,
            MicroBatchNote = microBatchNote,
            Vocab = vocab,
        };
        setup.Join(launch, group, customModel);
        return setup;
    }

    /// <summary>What the resume chose for the micro-batch, said once the run folder is open (null: nothing to
    /// say).</summary>
    string? MicroBatchNote { get; init; }

    /// <summary>A resume whose options leave the micro-batch unset keeps the one the checkpoint ran (per process), so
    /// that a run saved at N processes resumes at M bit for bit: the default, the batch over the processes, would
    /// change with M. When that micro-batch does not divide a process's share at M, the default is taken, and
    /// said.</summary>
    static (ResolvedOptions, string?) KeepMicroBatch(ResolvedOptions resolved, int? kept, int world)
    {
        var t = resolved.Options.Training;
        if (t.MicroBatchSize is not null || kept is not { } micro || micro == resolved.MicroBatch)
            return (resolved, null);
        var share = t.BatchSize / world;
        var processes = world == 1 ? "1 process" : $"{world} processes";
        if (micro < 1 || share % micro != 0)
            return (
                resolved,
                $"the checkpoint ran micro-batches of {Sequences(micro)} per process, which do not divide a process's "
                    + $"share of the batch ({share}) at {processes}: resuming with micro-batches of "
                    + $"{Sequences(resolved.MicroBatch)}, which sums the gradients in another order (not bit for bit)"
            );
        return (
            resolved with
            {
                MicroBatch = micro,
                Accumulation = t.BatchSize / micro,
            },
            $"resuming with the checkpoint's micro-batches of {Sequences(micro)} per process ({share / micro} a "
                + $"step at {processes}), as it was trained, not the default {resolved.MicroBatch}; "
                + "the run goes on bit "
                + "for bit"
        );
    }

    static string Sequences(int n) => n == 1 ? "1 sequence" : $"{n} sequences";

    /// <summary>Auto ratios of a checkpoint written before 0.3.0 followed another rule (before 0.2.0 they scaled the
    /// AdamW schedule's excess over the floor; before 0.3.0 they had no regime factor); resuming under today's rule
    /// would change the run part-way.</summary>
    static void RefuseOldAutoRatios(TrainerState resumed, string resume, string checkpoint)
    {
        if (
            resumed.Auto is null
            || !Version.TryParse(resumed.CodeVersion, out var version)
            || version >= new Version(0, 3, 0)
        )
            return;
        throw new InvalidOptionException(
            "Checkpoint.Resume",
            resume,
            $"{checkpoint} was trained with auto ratios by BlockwiseLR {resumed.CodeVersion}, whose ratios set the LR "
                + "by another rule; resume it with that version or start a new run"
        );
    }

    /// <summary>The vocabulary (token ids) and context (positions) of the model: the rows of its embedding table
    /// and of its learned position table, where it has one of each (a RoPE model's context is not in its
    /// parameters).</summary>
    public int? Vocab { get; private init; }

    /// <summary>The rows of a model's own embedding and position tables (null where it has none, or several).</summary>
    static (int? Vocab, int? Context) TableRows(nn.Module<Tensor, Tensor> model, BlockRules rules)
    {
        var shapes = model.named_parameters().Select(p => new ParameterShape(p.name, p.parameter.shape)).ToList();
        var placed = rules.Partition(shapes);
        int? Rows(Block block) =>
            placed.Where(p => p.WholeBlock == block && p.Shape.Length == 2).ToList() is [var only]
                ? (int)only.Shape[0]
                : null;
        return (Rows(Block.Embedding), Rows(Block.PositionEmbedding));
    }

    static bool HasOwnHead(nn.Module<Tensor, Tensor> model, BlockRules rules) =>
        rules
            .CountByBlock(model.named_parameters().Select(p => new ParameterShape(p.name, p.parameter.shape)))
            .ContainsKey(Block.OutputHead);

    /// <summary>The process group, the threads, the device and its precision.</summary>
    void Join(LaunchInfo? launch, ProcessGroup? group, nn.Module<Tensor, Tensor>? customModel)
    {
        var o = Options;
        var resolvedDevice = o.Training.Device.Use();
        if (o.Debug.Deterministic)
            TorchRuntime.UseDeterministicAlgorithms(true);
        Group = group ?? ProcessGroup.Join(launch!, o.Training.Device.IsCuda);
        // Each rank takes its share of the machine's cores unless told otherwise.
        if (o.Training.Threads is { } threads)
            set_num_threads(threads);
        else if (Group.LocalWorldSize > 1)
            set_num_threads(Math.Max(1, Environment.ProcessorCount / Group.LocalWorldSize));
        Device =
            customModel is not null ? customModel.parameters().First().device
            : Group.WorldSize > 1 && o.Training.Device.IsCuda ? Group.CollectiveDevice
            : resolvedDevice;
        if (Group.WorldSize > 1)
            Agreement.Require(Group, "options", Agreement.OptionsFingerprint(o));
        Precisions.Apply(o.Training.Precision, Device);
    }

    /// <summary>The named model of the options, initialized from the seed, in the run's precision.</summary>
    public LanguageModel CreateModel()
    {
        var model = LanguageModel.Create(Config!, Device, (long)Options.Training.Seed);
        model.Precision = Options.Training.Precision;
        return model;
    }

    /// <summary>The optimizer of the options over <paramref name="model"/>'s parameters, data-parallel over the
    /// group.</summary>
    public BlockOptimizer CreateOptimizer(nn.Module<Tensor, Tensor> model, BlockRules rules, AttentionShape? attention)
    {
        var o = Options;
        var optimizer = o.Optimizer.WithRecipe();
        var settings = new AdamSettings
        {
            Beta1 = optimizer.Beta1!.Value,
            Beta2 = optimizer.Beta2!.Value,
            Eps = optimizer.Eps,
            WeightDecay = optimizer.WeightDecay!.Value,
            DecayPolicy = Resolved.DecayPolicy,
            NewtonSchulz = optimizer.NewtonSchulz,
        };
        var parallel = new DataParallel(
            Group,
            o.Parallelism.Zero,
            (long)Math.Round(o.Parallelism.BucketMb * 1024 * 1024)
        );
        return BlockOptimizer.Create(
            o.Optimizer.Kind,
            model.named_parameters().Select(p => (p.name, p.parameter)),
            settings,
            attention ?? Config?.Attention(),
            rules,
            reference: o.Debug.ReferenceOptimizer,
            parallel: parallel
        );
    }

    /// <summary>The weights and optimizer state a resume continues, or the weights an init starts from; every rank
    /// then agrees on the parameters.</summary>
    public void LoadStart(nn.Module<Tensor, Tensor> model, BlockOptimizer optimizer)
    {
        if (ResumeFrom is not null)
            Checkpoints.Load(ResumeFrom, model, optimizer);
        else if (InitFrom is not null)
            Checkpoints.LoadWeights(InitFrom, model);
        if (Group.WorldSize > 1)
            Agreement.Require(Group, "initial parameters", Agreement.ParametersFingerprint(model));
    }

    /// <summary>Only now, with every input read, is the run folder touched (by rank 0 alone): cleared when
    /// overwritten, stale checkpoint temporaries removed, options.json written.</summary>
    public void OpenRunFolder(Action<string>? note)
    {
        if (!Group.IsMain)
            return;
        if (MicroBatchNote is not null)
            note?.Invoke(MicroBatchNote);
        if (ResumeFrom is null && Options.Run.Overwrite)
            RunFolder.Clear(RunDirectory);
        else if (ReplacesUncheckpointed)
        {
            RunFolder.Clear(RunDirectory);
            note?.Invoke(
                $"replaced the run in {RunDirectory}: it stopped before its first checkpoint, so there was nothing to "
                    + "resume"
            );
        }
        Directory.CreateDirectory(RunDirectory);
        foreach (var stale in Checkpoints.RemoveStaleTemporaries(RunDirectory))
            note?.Invoke($"removed {stale}, a checkpoint a process died writing");
        File.WriteAllText(Path.Combine(RunDirectory, "options.json"), Options.ToJson());
    }
}

/// <summary>The train and val token sources of a run (the prepared dataset's, or the caller's) and the sampler
/// that walks the train split from the resumed position.</summary>
sealed class TrainingData : IDisposable
{
    readonly TokenDataset? ownTrain,
        ownVal;

    public TrainingData(RunSetup setup, ITokenSource? customTrain, ITokenSource? customVal)
    {
        var (o, vocab) = (setup.Options, setup.Vocab);
        ownTrain = customTrain is null ? TokenDataset.Open(o.Data.Path, "train", vocab) : null;
        try
        {
            ownVal = customVal is null ? TokenDataset.Open(o.Data.Path, "val", vocab) : null;
            (Train, Val) = (customTrain ?? ownTrain!, customVal ?? ownVal!);
            var position = setup.Resumed is { } r ? new SamplerPosition(r.SamplerEpoch, r.SamplerIndex) : null;
            Sampler = new BatchSampler(Train, setup.Resolved.SeqLen, o.Training.Seed, position)
            {
                Vocab = customTrain is null ? null : setup.Vocab,
            };
            // Tokens of one's own are checked against the model's vocabulary batch by batch.
            ValVocab = customVal is null ? null : setup.Vocab;
            // Refuses a val split too short for seq_len.
            _ = new BatchSampler(Val, setup.Resolved.SeqLen, o.Training.Seed);
        }
        catch
        {
            // A refused set-up leaves no shard mapped.
            Dispose();
            throw;
        }
    }

    public ITokenSource Train { get; }
    public ITokenSource Val { get; }

    /// <summary>The vocabulary evaluation checks the val split's ids against (null: a prepared dataset, whose ids
    /// were checked when it was opened).</summary>
    public long? ValVocab { get; }
    public BatchSampler Sampler { get; }

    public void Dispose()
    {
        ownTrain?.Dispose();
        ownVal?.Dispose();
    }
}
