using BlockwiseLR.Training;

namespace BlockwiseLR;

/// <summary>One finished optimizer step: the one record that metrics.jsonl, observers
/// (<see cref="Trainer.OnStep"/>) and progress (<see cref="TrainProgress"/>) are written from, and that
/// <see cref="PretrainResult.History"/> and <see cref="TrainingRun.History"/> give back.</summary>
/// <param name="Step">Optimizer steps done after this one: the first step is 1, the last of a run of N steps is N.
/// Every surface numbers steps this way: metrics.jsonl, <see cref="TrainProgress.Step"/>,
/// <see cref="EvalPoint.Step"/>, evals.csv and checkpoint names (step_0000002 is the state after 2 steps).</param>
/// <param name="Loss">The mean train loss over the step's global batch.</param>
/// <param name="LearningRates">Each block's learning rate during the step.</param>
/// <param name="GradientNorms">Each block's gradient norm (after the reduction across processes, before
/// clipping).</param>
/// <param name="TokensPerSecond">Training speed of the step, in tokens per second over all processes.</param>
/// <param name="Milliseconds">Wall time of the step (evaluation and checkpoint not included).</param>
/// <param name="ValLoss">The validation loss after the step, when it evaluated (null otherwise).</param>
public sealed record StepReport(
    int Step,
    double Loss,
    IReadOnlyDictionary<Block, double> LearningRates,
    IReadOnlyDictionary<Block, double> GradientNorms,
    double TokensPerSecond,
    double Milliseconds,
    double? ValLoss
)
{
    /// <summary>The run's length in steps.</summary>
    public int Steps { get; init; }

    /// <summary>Each block's ratio under auto ratios (null: fixed ratios).</summary>
    public IReadOnlyDictionary<Block, double>? Ratios { get; init; }

    /// <summary>Each block's proxy sharpness B ||grad_b||^2 / #params(b) on the steps
    /// <see cref="DebugOptions.SharpnessEvery"/> picks (null on the others).</summary>
    public IReadOnlyDictionary<Block, double>? Sharpness { get; init; }

    /// <summary>The gradient-noise scale in tokens on the steps <see cref="DebugOptions.NoiseScaleEvery"/> picks
    /// (null on the others).</summary>
    public NoiseScaleReading? NoiseScale { get; init; }

    /// <summary>Model FLOP utilization on CUDA for a built-in model (null elsewhere).</summary>
    public double? Mfu { get; init; }

    /// <summary>Milliseconds of the step spent in collectives (null for one process).</summary>
    public double? CollectiveMilliseconds { get; init; }

    /// <summary>Device memory in use after the step, before its evaluation, on CUDA (null elsewhere).</summary>
    public long? DeviceMemoryBytes { get; init; }

    /// <summary>The step as progress displays see it (steps done of the run).</summary>
    public TrainProgress Progress() => new(Step, Steps, Loss, ValLoss, TokensPerSecond);
}
