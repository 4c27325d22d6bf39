using BlockwiseLR.Core;
using BlockwiseLR.Data;

namespace BlockwiseLR.Training;

/// <summary>What a run has done so far: the train loss and time of every step, the evaluations and the last
/// checkpoint; from it come the checkpoint's state and the run's result.</summary>
sealed class RunHistory(RunSetup setup)
{
    readonly List<double> losses = setup.Resumed?.TrainLosses.Take(setup.StartStep).ToList() ?? [];
    readonly List<EvalPoint> evals = setup.Resumed?.Evals.Where(e => e.Step <= setup.StartStep).ToList() ?? [];
    readonly List<double> stepTimes = [];
    readonly List<StepReport> reports = EarlierReports(setup);

    /// <summary>A resumed run's reports of the steps before its checkpoint, from its metrics.jsonl (none when the
    /// file is gone).</summary>
    static List<StepReport> EarlierReports(RunSetup setup)
    {
        var metrics = Path.Combine(setup.RunDirectory, "metrics.jsonl");
        if (setup.Resumed is null || !File.Exists(metrics))
            return [];
        var evals = setup.Resumed.Evals.Where(e => e.Step <= setup.StartStep).ToList();
        return
        [
            .. MetricsWriter
                .ReadReports(metrics, setup.Options.Training.Steps, evals)
                .Where(r => r.Step <= setup.StartStep),
        ];
    }

    /// <summary>Records the report of a step this process ran.</summary>
    public void AddReport(StepReport report) => reports.Add(report);

    public string? LastCheckpoint { get; set; } = setup.ResumeFrom;

    public void Add(StepOutcome outcome)
    {
        losses.Add(outcome.Loss);
        stepTimes.Add(outcome.Milliseconds);
    }

    /// <summary>Records an evaluation after <paramref name="done"/> steps; returns its loss.</summary>
    public double AddEval(int done, double valLoss)
    {
        evals.Add(new EvalPoint(done, valLoss));
        return valLoss;
    }

    /// <summary>The checkpoint's state after <paramref name="done"/> steps.</summary>
    public TrainerState State(int done, BatchSampler sampler, AutoRatioTracker? auto, NoiseScaleMonitor? noise) =>
        new()
        {
            Step = done,
            SamplerEpoch = sampler.Position.Epoch,
            SamplerIndex = sampler.Position.Index,
            Seed = setup.Options.Training.Seed,
            Model = setup.Config,
            CodeVersion = Pretrainer.CodeVersion,
            TrainLosses = [.. losses],
            Evals = [.. evals],
            Options = setup.Options,
            Tokenizer = setup.Resolved.Tokenizer,
            MicroBatch = setup.Resolved.MicroBatch,
            Auto = auto?.Checkpoint(),
            NoiseScale = noise?.Checkpoint(),
        };

    /// <summary>The run's result. Speed is the steady state's: the first quarter of the steps pays for warm-up
    /// (allocations, JIT). What was not measured is null: the val losses of a run with no evaluation, the speed of
    /// a run that timed no step.</summary>
    public PretrainResult Result(bool interrupted, long optimizerStateBytes)
    {
        var steady = stepTimes.Count > 4 ? stepTimes.Skip(stepTimes.Count / 4).ToList() : stepTimes;
        double? msPerStep = steady.Count > 0 ? steady.Average() : EarlierMillisecondsPerStep();
        var run = setup.RunDirectory;
        return new PretrainResult(
            run,
            losses.Count,
            evals.Count > 0 ? evals[^1].ValLoss : null,
            evals.Count > 0 ? evals.Min(e => e.ValLoss) : null,
            evals,
            losses,
            setup.TokensPerStep * 1000 / msPerStep,
            msPerStep,
            optimizerStateBytes,
            LastCheckpoint,
            Path.Combine(run, "metrics.jsonl"),
            interrupted
        )
        {
            History = [.. reports],
        };
    }

    /// <summary>A resume that runs no step (the run was complete) measured nothing: the speed is the one the run's
    /// result.json holds from before, if it holds one (null: none).</summary>
    double? EarlierMillisecondsPerStep()
    {
        var path = Path.Combine(setup.RunDirectory, "result.json");
        if (setup.Resumed is null || !File.Exists(path))
            return null;
        try
        {
            return PretrainResult.FromJsonFile(path).MillisecondsPerStep;
        }
        catch (Exception e)
            when (e
                    is System.Text.Json.JsonException
                        or InvalidDataException
                        or IOException
                        or NotSupportedException
                        or OptionValueException
            )
        {
            return null;
        }
    }
}

/// <summary>Turns a step's outcome into its <see cref="StepReport"/>: each block's LR and gradient norm, speed,
/// MFU on CUDA, auto ratios, the proxy sharpness and the noise scale on the steps that log them, time in collectives
/// and device memory.</summary>
sealed class StepDiagnostics(
    RunSetup setup,
    IReadOnlyDictionary<Block, long> parametersPerBlock,
    Func<Block, int, double> learningRate,
    AutoRatioTracker? auto,
    NoiseScaleMonitor? noise
)
{
    readonly double? peakFlops =
        setup.Device.type == TorchSharp.DeviceType.CUDA && setup.Config is not null
            ? ResolvedOptions.PeakFlops(setup.Options.Debug.PeakTflops ?? "h100", setup.Options.Training.Precision)
            : null;
    readonly double flopsPerToken = setup.Config is null ? 0 : FlopsRules.PerToken(setup.Config, setup.Resolved.SeqLen);

    /// <summary>The report of the step run as <paramref name="step"/> (0-based, as the schedule counts); the report
    /// numbers it by steps done, <paramref name="step"/> + 1.</summary>
    public StepReport Report(int step, StepOutcome outcome, double? valLoss)
    {
        var o = setup.Options;
        var blocks = outcome.SquaredNorms.Keys;
        var tokensPerSecond = setup.TokensPerStep * 1000 / outcome.Milliseconds;
        var logsSharpness = o.Debug.SharpnessEvery > 0 && step % o.Debug.SharpnessEvery == 0;
        return new StepReport(
            step + 1,
            outcome.Loss,
            blocks.ToDictionary(b => b, b => learningRate(b, step)),
            outcome.SquaredNorms.ToDictionary(kv => kv.Key, kv => Math.Sqrt(kv.Value)),
            tokensPerSecond,
            outcome.Milliseconds,
            valLoss
        )
        {
            Steps = o.Training.Steps,
            Ratios = auto is null ? null : blocks.ToDictionary(b => b, auto.RatioOf),
            Sharpness = !logsSharpness
                ? null
                : outcome.SquaredNorms.ToDictionary(
                    kv => kv.Key,
                    kv => SharpnessRules.Proxy(o.Training.BatchSize, kv.Value, parametersPerBlock[kv.Key])
                ),
            NoiseScale = noise?.MeasuresAt(step) == true ? noise.Reading(blocks) : null,
            Mfu = peakFlops is { } peak ? tokensPerSecond * flopsPerToken / peak : null,
            CollectiveMilliseconds =
                setup.Group != Distributed.ProcessGroup.Single ? outcome.CollectiveMilliseconds : null,
            DeviceMemoryBytes = outcome.DeviceMemoryBytes,
        };
    }
}
