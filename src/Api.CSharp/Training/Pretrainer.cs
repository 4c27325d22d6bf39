using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Distributed;
using BlockwiseLR.Models;
using BlockwiseLR.Optim;
using Microsoft.FSharp.Collections;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

/// <summary>One finished optimizer step, as an observer sees it (<see cref="Trainer.OnStep"/>).</summary>
public sealed record StepReport(
    int Step, double Loss, IReadOnlyDictionary<Block, double> LearningRates, IReadOnlyDictionary<Block, double> GradientNorms,
    double TokensPerSecond, double Milliseconds, double? ValLoss);

/// <summary>
/// Pre-trains a named model on a prepared dataset from <see cref="PretrainOptions"/> alone. For a model or
/// tokens of your own, or a per-step observer, use <see cref="Trainer"/>, which this calls.
/// </summary>
public static class Pretrainer
{
    public static string CodeVersion => typeof(Pretrainer).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    public static PretrainResult Run(PretrainOptions options, IProgress<TrainProgress>? progress = null, CancellationToken cancel = default) =>
        new Trainer(options).WithProgress(progress).Run(cancel);
}

/// <summary>
/// The training loop: micro-batches with gradient accumulation up to the global batch, global-norm clipping,
/// each block's LR from the schedule, evaluation on the fixed validation windows, a NaN/Inf guard, atomic
/// checkpoints with exact resume, and metrics (RUN/metrics.jsonl a line per step, RUN/evals.csv, TensorBoard
/// events in RUN/tensorboard). Cancelling the token writes a checkpoint and returns.
/// <para>By default it builds the named model of the options and reads the prepared dataset in
/// <see cref="PretrainOptions.Data"/>. <see cref="WithModel"/> trains any TorchSharp module that maps (B, T)
/// token ids to (B, T, vocab) logits, its parameters placed in blocks by <see cref="BlockRules"/>;
/// <see cref="WithData"/> trains on any <see cref="ITokenSource"/>.</para>
/// </summary>
public sealed class Trainer(PretrainOptions options)
{
    nn.Module<Tensor, Tensor>? customModel;
    BlockRules rules = BlockRules.Default;
    AttentionShape? attention;
    ITokenSource? customTrain, customVal;
    IProgress<TrainProgress>? progress;
    readonly List<Action<StepReport>> observers = [];

    /// <summary>Trains <paramref name="model"/> (left on its device, fp32 parameters) instead of a named config.
    /// <paramref name="rules"/> place its parameters in blocks (errors list the unmatched names);
    /// <paramref name="attention"/> is needed by Adam-mini to cut Q and K into heads. The caller keeps ownership.</summary>
    public Trainer WithModel(nn.Module<Tensor, Tensor> model, BlockRules? rules = null, AttentionShape? attention = null)
    {
        customModel = model;
        this.rules = rules ?? BlockRules.Default;
        this.attention = attention;
        return this;
    }

    /// <summary>Trains on <paramref name="train"/> and evaluates on <paramref name="validation"/> instead of the
    /// dataset in <see cref="PretrainOptions.Data"/>.</summary>
    public Trainer WithData(ITokenSource train, ITokenSource validation)
    {
        (customTrain, customVal) = (train, validation);
        return this;
    }

    /// <summary>Called after every optimizer step and its evaluation, before its checkpoint (on the training
    /// thread); cancelling the run's token from here stops the run after this step, checkpointed.</summary>
    public Trainer OnStep(Action<StepReport> observer)
    {
        observers.Add(observer);
        return this;
    }

    /// <summary>Hears what the trainer did on its own that a user should know (e.g. it removed a half-written
    /// checkpoint of a process that died).</summary>
    public Trainer OnNote(Action<string> note)
    {
        this.note = note;
        return this;
    }

    Action<string>? note;
    ProcessGroup? processGroup;

    /// <summary>Trains data-parallel over <paramref name="group"/> instead of the world this process was launched
    /// in (mpirun's or a torchrun-style launcher's, read from the environment; a process started by hand trains
    /// alone). Every rank runs the same options; rank 0 writes the run folder.</summary>
    public Trainer WithProcessGroup(ProcessGroup group)
    {
        processGroup = group;
        return this;
    }

    public Trainer WithProgress(IProgress<TrainProgress>? progress)
    {
        this.progress = progress;
        return this;
    }

    public PretrainResult Run(CancellationToken cancel = default)
    {
        var launch = processGroup is null ? LaunchInfo.FromEnvironment() : null;
        var world = processGroup?.WorldSize ?? launch!.WorldSize;
        var resolved = customModel is null
            ? ResolvedOptions.Resolve(options, ownData: customTrain is not null, world)
            : ResolvedOptions.ResolveCustom(options, rules.CountByBlock(customModel.named_parameters().Select(p => new ParameterShape(p.name, p.parameter.shape))).ContainsKey(Block.OutputHead) is false,
                ownData: customTrain is not null, world);
        var (o, config) = (resolved.Options, resolved.Config);
        var run = Path.GetFullPath(o.Out);
        // Everything that can be refused is checked before the run folder is touched.
        var resumeFrom = o.Resume is { } resume ? Checkpoints.Locate(run, resume) : null;
        var resumed = resumeFrom is null ? null : Checkpoints.ReadState(resumeFrom, config);
        if (resumed is not null) RunFolder.RefuseChangedTrajectory(resumed.Options, o, o.Resume!, resumeFrom!);
        if (resumeFrom is null && RunFolder.HoldsRun(run) && !o.Overwrite)
            throw new InvalidOptionException(nameof(o.Out), o.Out, "already holds a run; resume it (Resume latest) or replace it (Overwrite)");
        var initFrom = o.InitFrom is { } init && resumeFrom is null ? ModelLocator.Resolve(init) : null;
        if (initFrom is not null && HfFormat.ReadConfig(initFrom) is var initConfig && !initConfig.Equals(config))
            throw new InvalidOptionException(nameof(o.InitFrom), initFrom,
                $"holds another model ({ModelConfigs.Describe(initConfig)}), not {(config is null ? "the model given" : ModelConfigs.Describe(config))}; use the same model and overrides");
        var resolvedDevice = o.Device.Use();
        if (o.Deterministic) TorchRuntime.UseDeterministicAlgorithms(true);
        var group = processGroup ?? ProcessGroup.Join(launch!, o.Device.IsCuda);
        var (rank, main) = (group.Rank, group.IsMain);
        // Each rank takes its share of the machine's cores unless told otherwise.
        if (o.Threads is { } threads) set_num_threads(threads);
        else if (group.LocalWorldSize > 1) set_num_threads(Math.Max(1, Environment.ProcessorCount / group.LocalWorldSize));
        var device = customModel is not null ? customModel.parameters().First().device
            : group.WorldSize > 1 && o.Device.IsCuda ? group.CollectiveDevice : resolvedDevice;
        if (group.WorldSize > 1) Agreement.Require(group, "options", Agreement.OptionsFingerprint(o));
        Precisions.Apply(o.Precision, device);
        using var dataset = customTrain is null ? TokenDataset.Open(o.Data, "train", config?.Vocab) : null;
        using var valDataset = customVal is null ? TokenDataset.Open(o.Data, "val", config?.Vocab) : null;
        ITokenSource train = customTrain ?? dataset!, val = customVal ?? valDataset!;
        var sampler = new BatchSampler(train, resolved.SeqLen, o.Seed,
            resumed is null ? null : new SamplerPosition(resumed.SamplerEpoch, resumed.SamplerIndex));
        _ = new BatchSampler(val, resolved.SeqLen, o.Seed);   // refuses a val split too short for seq_len

        FaultInjection.Bug("bug-before-training");
        using var owned = customModel is null ? LanguageModel.Create(config!, device, (long)o.Seed) : null;
        var model = customModel ?? owned!;
        if (owned is not null) owned.Precision = o.Precision;
        var settings = new AdamSettings { Beta1 = o.Beta1, Beta2 = o.Beta2, Eps = o.Eps, WeightDecay = o.WeightDecay, DecayPolicy = resolved.DecayPolicy };
        using var optimizer = BlockOptimizer.Create(o.Optimizer, model.named_parameters().Select(p => (p.name, p.parameter)), settings,
            attention ?? (config is null ? null : ModelConfigModule.attention(config)), rules, reference: o.ReferenceOptimizer,
            parallel: new DataParallel(group, o.Zero, (long)Math.Round(o.BucketMb * 1024 * 1024)));
        if (resumeFrom is not null) Checkpoints.Load(resumeFrom, model, optimizer);
        else if (initFrom is not null) Checkpoints.LoadWeights(initFrom, model);
        if (group.WorldSize > 1) Agreement.Require(group, "initial parameters", Agreement.ParametersFingerprint(model));
        // Only now, with every input read, is the run folder touched (by rank 0 alone).
        if (main)
        {
            if (resumeFrom is null && o.Overwrite) RunFolder.Clear(run);
            Directory.CreateDirectory(run);
            foreach (var stale in Checkpoints.RemoveStaleTemporaries(run)) note?.Invoke($"removed {stale}, a checkpoint a process died writing");
            File.WriteAllText(Path.Combine(run, "options.json"), o.ToJson());
        }

        var start = resumed?.Step ?? 0;
        var losses = resumed?.TrainLosses.Take(start).ToList() ?? [];
        var evals = resumed?.Evals.Where(e => e.Step <= start).ToList() ?? [];
        using var metrics = main ? new MetricsWriter(run, start) : null;
        string? lastCheckpoint = resumeFrom;
        var tokensPerStep = (long)o.BatchSize * resolved.SeqLen;
        var peak = device.type == DeviceType.CUDA && config is not null ? ResolvedOptions.PeakFlops(o.PeakTflops ?? "h100", o.Precision) : (double?)null;
        var flopsPerToken = config is null ? 0 : Flops.perToken(config, resolved.SeqLen);
        var stepTimes = new List<double>();
        var interrupted = false;

        // Auto ratios: the smoothed proxy sharpness per block and the ratios it sets (saved in checkpoints).
        var autoSettings = resolved.AutoRatios ? o.Ratios.AutoSettings! : null;
        var auto = autoSettings is null ? null : resumed?.AutoSmoothed is { } saved
            ? new AutoRatioState(resumed.AutoSteps, MapOf(saved), MapOf(resumed.AutoRatios ?? []), MapOf(resumed.AutoSmallSquared ?? []), MapOf(resumed.AutoBigSquared ?? []))
            : AutoRatios.start;
        // With micro-batches, auto ratios also measure each block's gradient-noise scale: the squared norms of the
        // first micro-batch's gradient (rank 0's, read from the accumulation buffer before the next backward, sent
        // with the step's one transfer) against the whole batch's.
        var measureNoise = auto is not null && resolved.MicroBatch < o.BatchSize;
        var parametersPerBlock = optimizer.Parameters.GroupBy(p => p.Block).ToDictionary(g => g.Key, g => g.Sum(p => p.Numel));
        var blockOrder = parametersPerBlock.Keys.ToList();
        double LearningRate(Block block, int step) => auto is null
            ? resolved.Schedule.LrAt(block, step)
            : AutoRatios.scaleAboveFloor(AutoRatios.ratioOf(auto, block.ToCore()), resolved.Schedule.FloorLr, resolved.Schedule.LrAt(block, step));

        TrainerState State(int step) => new(step, sampler.Position.Epoch, sampler.Position.Index, o.Seed, config, Pretrainer.CodeVersion,
            [.. losses], [.. evals], o, auto?.Steps ?? 0, auto is null ? null : DictionaryOf(auto.Smoothed), auto is null ? null : DictionaryOf(auto.Ratios),
            resolved.Tokenizer, auto is null ? null : DictionaryOf(auto.SmallSquared), auto is null ? null : DictionaryOf(auto.BigSquared));

        // Rank r trains on its share of each global batch, drawn from the one permutation every rank walks.
        var share = o.BatchSize / group.WorldSize;
        for (var step = start; step < o.Steps; step++)
        {
            FaultInjection.Bug("bug-at-step", step);
            var clock = Stopwatch.StartNew();
            var collectiveBefore = optimizer.CollectiveMilliseconds;
            double loss;
            IReadOnlyDictionary<Block, double> gradientNorms;
            IReadOnlyDictionary<Block, double>? sharpness = null;
            using (var scope = NewDisposeScope())
            {
                model.train();
                optimizer.ZeroGrad();
                var lossSum = zeros(1, dtype: float64, device: device);
                var windows = sampler.NextWindows(o.BatchSize);
                var smallSquared = measureNoise ? zeros(blockOrder.Count, dtype: float64, device: device) : null;
                for (var first = rank * share; first < (rank + 1) * share; first += resolved.MicroBatch)
                {
                    using var microScope = NewDisposeScope();
                    var (inputs, targets) = sampler.Batch(windows[first..(first + resolved.MicroBatch)], device);
                    // Scaled before backward, so summed gradients are the mean over the global batch.
                    var microLoss = LanguageModel.Loss(model.forward(inputs), targets) / resolved.Accumulation;
                    microLoss.backward();
                    lossSum.add_(microLoss.detach().to(float64));
                    // The buffer holds the first micro-batch's gradient / accumulation steps.
                    if (measureNoise && first == 0)
                        smallSquared!.copy_(optimizer.LocalSquaredNorms(blockOrder).mul_((double)resolved.Accumulation * resolved.Accumulation));
                }
                optimizer.ReduceGradients();
                // One small transfer: the loss (summed over ranks) and every block's squared gradient norm.
                var (squared, values) = optimizer.NormsAnd(smallSquared is null ? lossSum : cat([lossSum, smallSquared], 0));
                loss = values[0];
                if (o.SharpnessEvery > 0 && step % o.SharpnessEvery == 0)
                    sharpness = squared.ToDictionary(kv => kv.Key, kv => Sharpness.proxy(o.BatchSize, kv.Value, parametersPerBlock[kv.Key]));
                gradientNorms = squared.ToDictionary(kv => kv.Key, kv => Math.Sqrt(kv.Value));
                var total = Math.Sqrt(squared.Values.Sum());
                if (!double.IsFinite(loss) || !double.IsFinite(total))
                    throw new TrainingDivergedException(
                        $"step {step}: the {(double.IsFinite(loss) ? "gradient norm" : "loss")} is {(double.IsFinite(loss) ? total : loss)}; training stopped before the update" +
                        (lastCheckpoint is null ? "" : $"; the last good checkpoint is {lastCheckpoint}") +
                        "; lower the LR or the ratios" + (o.Precision == Precision.Fp32 ? "" : ", or train in fp32"));
                if (auto is not null)
                    auto = AutoRatios.observeWithNoise(autoSettings!.Smoothing, autoSettings.Alpha, autoSettings.MaxRatio, autoSettings.Every,
                        resolved.MicroBatch, o.BatchSize,
                        ListModule.OfSeq(squared.Select(kv => Tuple.Create(kv.Key.ToCore(), Sharpness.proxy(o.BatchSize, kv.Value, parametersPerBlock[kv.Key])))),
                        ListModule.OfSeq(measureNoise ? blockOrder.Select((block, i) => Tuple.Create(block.ToCore(), values[1 + i], squared[block])) : []), auto);
                if (o.GradClip > 0 && total > o.GradClip) optimizer.ScaleGradients(o.GradClip / (total + 1e-6));
                var current = step;
                optimizer.Step(block => LearningRate(block, current));
                if (device.type == DeviceType.CUDA) cuda.synchronize();
            }
            var milliseconds = clock.Elapsed.TotalMilliseconds;
            stepTimes.Add(milliseconds);
            losses.Add(loss);
            var tokensPerSecond = tokensPerStep * 1000 / milliseconds;
            metrics?.Step(step, loss, block => LearningRate(block, step), gradientNorms, tokensPerSecond, milliseconds,
                peak is { } p ? tokensPerSecond * flopsPerToken / p : null,
                auto is null ? null : block => AutoRatios.ratioOf(auto, block.ToCore()), sharpness,
                group != ProcessGroup.Single ? optimizer.CollectiveMilliseconds - collectiveBefore : null, DeviceMemory.UsedBytes(device));

            var done = step + 1;
            double? valLoss = null;
            if (done == o.Steps || (o.EvalEvery > 0 && done % o.EvalEvery == 0))
            {
                valLoss = Evaluate(model, val, resolved, device, group);
                evals.Add(new EvalPoint(done, valLoss.Value));
                metrics?.Eval(done, valLoss.Value);
            }
            if (observers.Count > 0)
            {
                var report = new StepReport(step, loss, gradientNorms.Keys.ToDictionary(b => b, b => LearningRate(b, step)), gradientNorms,
                    tokensPerSecond, milliseconds, valLoss);
                foreach (var observer in observers) observer(report);
            }
            interrupted = cancel.IsCancellationRequested;   // an observer may have cancelled: stop after this step
            // Ranks stop at the same step: any rank's request (a signal reaches each at its own time) stops all.
            if (group.WorldSize > 1) interrupted = group.AllReduce([interrupted ? 1.0 : 0.0])[0] > 0;
            if (done == o.Steps || interrupted || (o.CheckpointEvery > 0 && done % o.CheckpointEvery == 0))
                lastCheckpoint = Checkpoint(run, model, optimizer, State(done), o.KeepCheckpoints, group);
            progress?.Report(new TrainProgress(done, o.Steps, loss, valLoss, tokensPerSecond));
            if (interrupted) break;
        }

        // Steady-state speed: the first steps pay for warm-up (allocations, JIT).
        var steady = stepTimes.Count > 4 ? stepTimes.Skip(stepTimes.Count / 4).ToList() : stepTimes;
        var msPerStep = steady.Count > 0 ? steady.Average() : double.NaN;
        var result = new PretrainResult(run, losses.Count, evals.LastOrDefault()?.ValLoss ?? double.NaN,
            evals.Count > 0 ? evals.Min(e => e.ValLoss) : double.NaN, evals, losses, tokensPerStep * 1000 / msPerStep, msPerStep,
            optimizer.StateBytes.Values.Sum(), lastCheckpoint, Path.Combine(run, "metrics.jsonl"), interrupted);
        if (main) File.WriteAllText(Path.Combine(run, "result.json"), result.ToJson());
        return result;
    }

    /// <summary>Every rank takes the optimizer state (a gather when it is sharded); rank 0 writes the checkpoint,
    /// the same files as one process's; no rank goes on before it is complete.</summary>
    static string Checkpoint(string run, nn.Module<Tensor, Tensor> model, BlockOptimizer optimizer, TrainerState state, int keep, ProcessGroup group)
    {
        if (group.WorldSize == 1) return Checkpoints.Write(run, model, optimizer, state, keep);
        using var scope = NewDisposeScope();
        var optimizerState = optimizer.StateDict();
        var path = group.IsMain
            ? Checkpoints.Write(run, model, file => BlockOptimizer.Save(file, optimizerState), state, keep)
            : Checkpoints.PathOf(run, state.Step);
        group.Barrier();
        return path;
    }

    static FSharpMap<BlockKind, double> MapOf(Dictionary<string, double> values) =>
        MapModule.OfSeq(values.Select(kv => Tuple.Create(BlockKindModule.tryParse(kv.Key).Value, kv.Value)));

    static Dictionary<string, double> DictionaryOf(FSharpMap<BlockKind, double> map) =>
        map.ToDictionary(kv => BlockKindModule.key(kv.Key), kv => kv.Value);

    /// <summary>The mean val loss; at world N each rank evaluates every N-th batch and the sums are reduced.</summary>
    static double Evaluate(nn.Module<Tensor, Tensor> model, ITokenSource val, ResolvedOptions resolved, Device device, ProcessGroup group)
    {
        var (sum, windows) = Evaluation.LossSum(model, val, resolved.SeqLen, resolved.MicroBatch, resolved.Options.EvalWindows, device, group.Rank, group.WorldSize);
        model.train();
        if (group.WorldSize == 1) return sum / windows;
        var total = group.AllReduce([sum, windows]);
        return total[0] / total[1];
    }
}

/// <summary>RUN/metrics.jsonl (a line per step), RUN/evals.csv and TensorBoard events. On resume the files are
/// cut back to the checkpoint's step, so a resumed run's files equal an uninterrupted run's.</summary>
sealed class MetricsWriter : IDisposable
{
    readonly StreamWriter steps;
    readonly StreamWriter evals;
    readonly TorchSharp.Modules.SummaryWriter? tensorboard;

    public MetricsWriter(string run, int resumeStep)
    {
        Path = System.IO.Path.Combine(run, "metrics.jsonl");
        var evalPath = System.IO.Path.Combine(run, "evals.csv");
        Truncate(Path, line => JsonNode.Parse(line)!["step"]!.GetValue<int>() < resumeStep);
        Truncate(evalPath, line => line.StartsWith("step") || int.Parse(line.Split(',')[0], CultureInfo.InvariantCulture) <= resumeStep);
        steps = new StreamWriter(Path, append: true) { AutoFlush = true };
        evals = new StreamWriter(evalPath, append: true) { AutoFlush = true };
        if (new FileInfo(evalPath).Length == 0) evals.WriteLine("step,val_loss");
        try { tensorboard = torch.utils.tensorboard.SummaryWriter(System.IO.Path.Combine(run, "tensorboard")); }
        catch (Exception) { tensorboard = null; }   // metrics files remain the record
    }

    public string Path { get; }

    static void Truncate(string path, Func<string, bool> keep)
    {
        if (!File.Exists(path)) return;
        var lines = File.ReadAllLines(path).Where(l => l.Length > 0).Where(keep).ToList();
        File.WriteAllLines(path, lines);
    }

    public void Step(int step, double loss, Func<Block, double> lr, IReadOnlyDictionary<Block, double> gradientNorms, double tokensPerSecond,
        double milliseconds, double? mfu, Func<Block, double>? ratio = null, IReadOnlyDictionary<Block, double>? sharpness = null, double? collectiveMs = null,
        long? deviceMemoryBytes = null)
    {
        var line = new JsonObject
        {
            ["step"] = step,
            ["loss"] = loss,
            ["lr"] = new JsonObject(gradientNorms.Keys.Select(b => KeyValuePair.Create(b.Key(), (JsonNode?)lr(b)))),
            ["grad_norm"] = new JsonObject(gradientNorms.Select(kv => KeyValuePair.Create(kv.Key.Key(), (JsonNode?)kv.Value))),
            ["tokens_per_s"] = tokensPerSecond,
            ["ms"] = milliseconds,
        };
        if (mfu is { } value) line["mfu"] = value;
        if (collectiveMs is { } comm) line["comm_ms"] = comm;
        if (deviceMemoryBytes is { } memory) line["device_mem_mib"] = memory / 1048576.0;
        if (ratio is not null) line["ratio"] = new JsonObject(gradientNorms.Keys.Select(b => KeyValuePair.Create(b.Key(), (JsonNode?)ratio(b))));
        if (sharpness is not null) line["sharpness"] = new JsonObject(sharpness.Select(kv => KeyValuePair.Create(kv.Key.Key(), (JsonNode?)kv.Value)));
        steps.WriteLine(line.ToJsonString());
        tensorboard?.add_scalar("train/loss", (float)loss, step);
    }

    public void Eval(int step, double valLoss)
    {
        evals.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{step},{valLoss:R}"));
        tensorboard?.add_scalar("val/loss", (float)valLoss, step);
    }

    public void Dispose()
    {
        steps.Dispose();
        evals.Dispose();
    }
}
