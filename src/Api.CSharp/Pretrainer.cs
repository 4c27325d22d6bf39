using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Distributed;
using BlockwiseLR.Models;
using BlockwiseLR.Optim;
using BlockwiseLR.Training;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR;

/// <summary>
/// Pre-trains a named model on a prepared dataset from <see cref="PretrainOptions"/> alone. For a model or
/// tokens of your own, or a per-step observer, use <see cref="Trainer"/>, which this calls.
/// </summary>
public static class Pretrainer
{
    /// <summary>The library's version (major.minor.patch), recorded in runs and checkpoints.</summary>
    public static string CodeVersion => typeof(Pretrainer).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>Trains as <paramref name="options"/> say and returns the result (also written to RUN/result.json).
    /// Throws <see cref="ArgumentNullException"/> for a null <paramref name="options"/>, and
    /// <see cref="OperationCanceledException"/> when <paramref name="cancel"/> is already cancelled (nothing is
    /// written); cancelling it during the run stops after the current step, checkpointed, and returns a result with
    /// <see cref="PretrainResult.Interrupted"/> set.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancel"/> was cancelled before the run
    /// began.</exception>
    /// <exception cref="InvalidOptionException">An option is out of range or contradicts another; the message names
    /// the property, the value and a fix.</exception>
    /// <exception cref="DataInputException">The data folder is missing or damaged, or its tokenizer changed since it
    /// was prepared.</exception>
    /// <exception cref="TorchUnavailableException">libtorch cannot load (or is older than 2.10).</exception>
    /// <exception cref="BlockPartitionException">A parameter of a model of your own matches no block rule.</exception>
    /// <exception cref="TrainingDivergedException">The loss or the gradients stopped being finite (RUN/result.json
    /// says so).</exception>
    public static PretrainResult Run(
        PretrainOptions options,
        IProgress<TrainProgress>? progress = null,
        CancellationToken cancel = default
    ) => new Trainer(options).WithProgress(progress).Run(cancel);

    /// <summary><see cref="Run(PretrainOptions, IProgress{TrainProgress}?, CancellationToken)"/> telling
    /// <paramref name="logger"/> its notes and progress (<see cref="Trainer.WithLogger"/>).</summary>
    public static PretrainResult Run(PretrainOptions options, ILogger logger, CancellationToken cancel = default) =>
        new Trainer(options).WithLogger(logger).Run(cancel);

    /// <summary><see cref="Run(PretrainOptions, IProgress{TrainProgress}?, CancellationToken)"/> on a thread of its
    /// own (<see cref="TaskCreationOptions.LongRunning"/>): training is CPU/GPU-bound libtorch work that would hold a
    /// thread-pool thread for the whole run, so it gets a dedicated thread; the task completes with the result or the
    /// exception that Run would throw.</summary>
    public static Task<PretrainResult> RunAsync(
        PretrainOptions options,
        IProgress<TrainProgress>? progress = null,
        CancellationToken cancel = default
    ) => new Trainer(options).WithProgress(progress).RunAsync(cancel);

    /// <summary><see cref="RunAsync(PretrainOptions, IProgress{TrainProgress}?, CancellationToken)"/> telling
    /// <paramref name="logger"/> its notes and progress (<see cref="Trainer.WithLogger"/>).</summary>
    public static Task<PretrainResult> RunAsync(
        PretrainOptions options,
        ILogger logger,
        CancellationToken cancel = default
    ) => new Trainer(options).WithLogger(logger).RunAsync(cancel);
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
public sealed class Trainer
{
    readonly PretrainOptions options;

    /// <summary>A trainer for <paramref name="options"/>; throws <see cref="ArgumentNullException"/> for null.
    /// </summary>
    public Trainer(PretrainOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        this.options = options;
    }

    nn.Module<Tensor, Tensor>? customModel;
    BlockRules rules = BlockRules.Default;
    AttentionShape? attention;
    ITokenSource? customTrain,
        customVal;
    IProgress<TrainProgress>? progress;
    readonly List<Action<StepReport>> observers = [];

    /// <summary>Trains <paramref name="model"/> (left on its device, fp32 parameters) instead of a named config.
    /// <paramref name="rules"/> place its parameters in blocks (errors list the unmatched names);
    /// <paramref name="attention"/> is needed by Adam-mini to cut Q and K into heads. The caller keeps
    /// ownership.</summary>
    public Trainer WithModel(
        nn.Module<Tensor, Tensor> model,
        BlockRules? rules = null,
        AttentionShape? attention = null
    )
    {
        ArgumentNullException.ThrowIfNull(model);
        customModel = model;
        this.rules = rules ?? BlockRules.Default;
        this.attention = attention;
        return this;
    }

    /// <summary>Trains on <paramref name="train"/> and evaluates on <paramref name="validation"/> instead of the
    /// dataset in <see cref="PretrainOptions.Data"/>.</summary>
    public Trainer WithData(ITokenSource train, ITokenSource validation)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(validation);
        (customTrain, customVal) = (train, validation);
        return this;
    }

    /// <summary>Called after every optimizer step and its evaluation, before its checkpoint (on the training
    /// thread); cancelling the run's token from here stops the run after this step, checkpointed. Each call adds an
    /// observer; all are called, in the order added.</summary>
    public Trainer OnStep(Action<StepReport> observer)
    {
        ArgumentNullException.ThrowIfNull(observer);
        observers.Add(observer);
        return this;
    }

    /// <summary>Hears what the trainer did on its own that a user should know (e.g. it removed a half-written
    /// checkpoint of a process that died). Each call adds a listener, as <see cref="OnStep"/> adds observers; all
    /// hear every note, in the order added.</summary>
    public Trainer OnNote(Action<string> note)
    {
        ArgumentNullException.ThrowIfNull(note);
        this.note += note;
        return this;
    }

    Action<string>? note;
    ProcessGroup? processGroup;
    ILogger? logger;
    int logEvery;

    /// <summary>Tells <paramref name="logger"/> what the trainer has to say (Microsoft.Extensions.Logging): the
    /// notes <see cref="OnNote"/> hears, the run's start and end, and progress at Information every
    /// <paramref name="every"/> steps (0: about 20 lines a run), at every evaluation and at the last step. Notes
    /// still reach <see cref="OnNote"/> too.</summary>
    public Trainer WithLogger(ILogger logger, int every = 0)
    {
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentOutOfRangeException.ThrowIfNegative(every);
        (this.logger, logEvery) = (logger, every);
        return this;
    }

    /// <summary>A note to <see cref="OnNote"/>'s observer and the logger.</summary>
    void Note(string text)
    {
        note?.Invoke(text);
        if (logger is not null)
            TrainingLog.Note(logger, text);
    }

    /// <summary>Trains data-parallel over <paramref name="group"/> instead of the world this process was launched
    /// in (mpirun's or a torchrun-style launcher's, read from the environment; a process started by hand trains
    /// alone). Every rank runs the same options; rank 0 writes the run folder.</summary>
    public Trainer WithProcessGroup(ProcessGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        processGroup = group;
        return this;
    }

    /// <summary>Reports <see cref="TrainProgress"/> to <paramref name="progress"/> as training goes; null for
    /// none.</summary>
    /// <returns>This trainer.</returns>
    public Trainer WithProgress(IProgress<TrainProgress>? progress)
    {
        this.progress = progress;
        return this;
    }

    /// <summary>Trains and returns the result (also written to RUN/result.json). A <paramref name="cancel"/> already
    /// cancelled throws <see cref="OperationCanceledException"/> before anything is read or written; cancelling it
    /// during the run stops after the current step, writes a checkpoint and returns a result with
    /// <see cref="PretrainResult.Interrupted"/> set (what Ctrl-C does in the CLI). A task from
    /// <see cref="RunAsync"/> therefore ends as cancelled only when the token was cancelled before the run
    /// began.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancel"/> was cancelled before the run
    /// began.</exception>
    /// <exception cref="InvalidOptionException">An option is out of range or contradicts another; the message names
    /// the property, the value and a fix.</exception>
    /// <exception cref="DataInputException">The data folder is missing or damaged, or its tokenizer changed since it
    /// was prepared.</exception>
    /// <exception cref="TorchUnavailableException">libtorch cannot load (or is older than 2.10).</exception>
    /// <exception cref="BlockPartitionException">A parameter of a model of your own matches no block rule.</exception>
    /// <exception cref="TrainingDivergedException">The loss or the gradients stopped being finite (RUN/result.json
    /// says so).</exception>
    public PretrainResult Run(CancellationToken cancel = default)
    {
        cancel.ThrowIfCancellationRequested();
        // Set up: every input is read and every refusal made before the run folder is touched.
        var setup = RunSetup.Prepare(options, customModel, rules, ownData: customTrain is not null, processGroup);
        var (o, group) = (setup.Options, setup.Group);
        using var data = new TrainingData(setup, customTrain, customVal);
        FaultInjection.Bug("bug-before-training");
        using var owned = customModel is null ? setup.CreateModel() : null;
        var model = customModel ?? owned!;
        using var optimizer = setup.CreateOptimizer(model, rules, attention);
        setup.LoadStart(model, optimizer);
        setup.OpenRunFolder(note is null && logger is null ? null : Note);
        var every = logEvery > 0 ? logEvery : TrainingLog.DefaultEvery(o.Training.Steps);
        if (logger is not null && group.IsMain)
            TrainingLog.Start(logger, o.Training.Steps, setup.StartStep, setup.RunDirectory);

        // The LR of every block at every step: the schedule's, or auto ratios' from what they measured so far.
        var parametersPerBlock = optimizer
            .Parameters.GroupBy(p => p.Block)
            .ToDictionary(g => g.Key, g => g.Sum(p => p.Numel));
        var auto = AutoRatioTracker.For(setup.Resolved, parametersPerBlock, setup.Resumed?.Auto);
        Func<Block, int, double> learningRate = auto is null ? setup.Resolved.Schedule.LrAt : auto.LrAt;
        var noise = NoiseScaleMonitor.For(setup.Resolved, setup.Resumed?.NoiseScale);
        var blocks = parametersPerBlock.Keys.ToList();
        var step = new TrainingStep(model, optimizer, data.Sampler, setup, auto, noise, blocks, learningRate);
        var history = new RunHistory(setup);
        using var metrics = group.IsMain ? new MetricsWriter(setup.RunDirectory, setup.StartStep) : null;
        var diagnostics = new StepDiagnostics(setup, parametersPerBlock, learningRate, auto, noise);

        var interrupted = false;
        for (var t = setup.StartStep; t < o.Training.Steps && !interrupted; t++)
        {
            FaultInjection.Bug("bug-at-step", t);
            StepOutcome outcome;
            try
            {
                outcome = step.Run(t, history.LastCheckpoint) with
                {
                    DeviceMemoryBytes = DeviceMemory.UsedBytes(setup.Device),
                };
            }
            catch (TrainingDivergedException e) when (group.IsMain)
            {
                // Every run writes result.json: a diverged one records where and why it stopped.
                var json = System.Text.Json.Nodes.JsonNode.Parse(
                    history.Result(interrupted: false, optimizer.StateBytes.Values.Sum()).ToJson()
                )!;
                json["diverged"] = e.Message;
                File.WriteAllText(
                    Path.Combine(setup.RunDirectory, "result.json"),
                    json.ToJsonString(OptionsJson.Results)
                );
                throw;
            }
            history.Add(outcome);

            // Everything that follows now is just diagnostics: evaluation, the step's one report (metrics.jsonl,
            // observers, progress), and a checkpoint when one is due or the run stops.
            var done = t + 1;
            double? valLoss =
                done == o.Training.Steps || (o.Evaluation.Every > 0 && done % o.Evaluation.Every == 0)
                    ? history.AddEval(done, Evaluate(model, data, setup))
                    : null;
            var report = diagnostics.Report(t, outcome, valLoss);
            history.AddReport(report);
            metrics?.Write(report);
            foreach (var observer in observers)
                observer(report);
            interrupted = StopRequested(cancel, group);
            if (done == o.Training.Steps || interrupted || (o.Checkpoint.Every > 0 && done % o.Checkpoint.Every == 0))
                history.LastCheckpoint = Checkpoint(
                    setup,
                    model,
                    optimizer,
                    history.State(done, data.Sampler, auto, noise)
                );
            progress?.Report(report.Progress());
            if (logger is not null && group.IsMain && (done % every == 0 || valLoss is not null || interrupted))
            {
                var p = report.Progress();
                TrainingLog.Progress(logger, p.Step, p.Steps, p.Loss, p.ValLoss, p.TokensPerSecond);
            }
        }
        var result = history.Result(interrupted, optimizer.StateBytes.Values.Sum());
        if (logger is not null && group.IsMain)
            TrainingLog.End(logger, result.Steps, interrupted, result.FinalValLoss, result.BestValLoss);
        if (group.IsMain)
            File.WriteAllText(Path.Combine(setup.RunDirectory, "result.json"), result.ToJson());
        return result;
    }

    /// <summary><see cref="Run"/> on a thread of its own (<see cref="TaskCreationOptions.LongRunning"/>): training is
    /// CPU/GPU-bound libtorch work that would hold a thread-pool thread for the whole run, so it gets a dedicated
    /// thread. The task completes with the result, or faults with the exception <see cref="Run"/> would throw (a
    /// token already cancelled gives a cancelled task).</summary>
    public Task<PretrainResult> RunAsync(CancellationToken cancel = default) =>
        cancel.IsCancellationRequested
            ? Task.FromCanceled<PretrainResult>(cancel)
            : Task.Factory.StartNew(
                () => Run(cancel),
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default
            );

    /// <summary>Whether to stop after this step: the token was cancelled (an observer may have cancelled it). Ranks
    /// stop at the same step: any rank's request (a signal reaches each at its own time) stops all.</summary>
    static bool StopRequested(CancellationToken cancel, ProcessGroup group)
    {
        var interrupted = cancel.IsCancellationRequested;
        return group.WorldSize > 1 ? group.AllReduce([interrupted ? 1.0 : 0.0])[0] > 0 : interrupted;
    }

    /// <summary>Every rank takes the optimizer state (a gather when it is sharded); rank 0 writes the checkpoint,
    /// the same files as one process's; no rank goes on before it is complete.</summary>
    static string Checkpoint(
        RunSetup setup,
        nn.Module<Tensor, Tensor> model,
        BlockOptimizer optimizer,
        TrainerState state
    )
    {
        var (run, keep, group) = (setup.RunDirectory, setup.Options.Checkpoint.Keep, setup.Group);
        if (group.WorldSize == 1)
            return Checkpoints.Write(run, model, optimizer, state, keep);
        using var scope = NewDisposeScope();
        var optimizerState = optimizer.StateDict();
        var path = group.IsMain
            ? Checkpoints.Write(run, model, file => BlockOptimizer.Save(file, optimizerState), state, keep)
            : Checkpoints.PathOf(run, state.Step);
        group.Barrier();
        return path;
    }

    /// <summary>The mean val loss; at world N each rank evaluates every N-th batch and the sums are reduced.</summary>
    static double Evaluate(nn.Module<Tensor, Tensor> model, TrainingData data, RunSetup setup)
    {
        var (resolved, group) = (setup.Resolved, setup.Group);
        var (sum, windows) = Evaluation.LossSum(
            model,
            data.Val,
            resolved.SeqLen,
            resolved.MicroBatch,
            resolved.Options.Evaluation.Windows,
            setup.Device,
            group.Rank,
            group.WorldSize,
            data.ValVocab
        );
        model.train();
        if (group.WorldSize == 1)
            return sum / windows;
        var total = group.AllReduce([sum, windows]);
        return total[0] / total[1];
    }
}
