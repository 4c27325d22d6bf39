using System.Text.Json;
using System.Text.Json.Serialization;
using BlockwiseLR.Training;

namespace BlockwiseLR;

/// <summary>One evaluation.</summary>
/// <param name="Step">Optimizer steps done when it evaluated (1-based, as <see cref="StepReport.Step"/>, evals.csv
/// and checkpoint names number them).</param>
/// <param name="ValLoss">The mean validation loss.</param>
public sealed record EvalPoint(int Step, double ValLoss);

/// <summary>What a run produced. A value that was not measured is null (no evaluation, no timed step); a value
/// that was measured is never null, even when it is not finite (an evaluation whose loss is NaN gives a NaN
/// <see cref="FinalValLoss"/>, not null).</summary>
/// <param name="RunDirectory">The run folder.</param>
/// <param name="Steps">Optimizer steps done in all (a resumed run's earlier steps included).</param>
/// <param name="FinalValLoss">The last evaluation's validation loss (null: the run has no evaluation, e.g. it was
/// cancelled before its first).</param>
/// <param name="BestValLoss">The lowest validation loss of the run (null: no evaluation; NaN when an evaluation
/// measured NaN).</param>
/// <param name="Evals">Every evaluation, in order.</param>
/// <param name="TrainLosses">The train loss of every step done, in order.</param>
/// <param name="TokensPerSecond">Training tokens per second in the steady state (the first quarter of the steps left
/// out as warm-up; null: no step was timed, as when a resume of a complete run trains nothing and the earlier
/// result.json holds no speed).</param>
/// <param name="MillisecondsPerStep">Milliseconds per optimizer step in the steady state (null: no step was
/// timed).</param>
/// <param name="OptimizerStateBytes">Bytes of optimizer state (moments) the run kept.</param>
/// <param name="LastCheckpoint">The folder of the last checkpoint written (null: none).</param>
/// <param name="MetricsPath">The run's metrics.jsonl (one line per step).</param>
/// <param name="Interrupted">True when the run stopped early (cancelled) rather than after its last step.</param>
public sealed record PretrainResult(
    string RunDirectory,
    int Steps,
    double? FinalValLoss,
    double? BestValLoss,
    IReadOnlyList<EvalPoint> Evals,
    IReadOnlyList<double> TrainLosses,
    double? TokensPerSecond,
    double? MillisecondsPerStep,
    long OptimizerStateBytes,
    string? LastCheckpoint,
    string MetricsPath,
    bool Interrupted
)
{
    /// <summary>The <see cref="StepReport"/> of every step of the run, in order (steps done 1 to
    /// <see cref="Steps"/>; a resumed run's earlier steps read back from its metrics.jsonl). Not in result.json: read
    /// a run folder's with <see cref="TrainingRun.Open"/>.</summary>
    [JsonIgnore]
    public IReadOnlyList<StepReport> History { get; init; } = [];

    /// <summary>Each block's learning rate at the last step (empty: no step).</summary>
    [JsonIgnore]
    public IReadOnlyDictionary<Block, double> FinalLearningRates =>
        History.Count > 0 ? History[^1].LearningRates : new Dictionary<Block, double>();

    /// <summary>Each block's ratio at the last step under auto ratios (null: fixed ratios, or no step).</summary>
    [JsonIgnore]
    public IReadOnlyDictionary<Block, double>? FinalRatios => History.Count > 0 ? History[^1].Ratios : null;

    /// <summary>Reads a run's result.json: null is a value that was not measured (null here too), "NaN" or
    /// "Infinity" a measured one that is not finite. A result.json of an earlier version reads too: it wrote null for
    /// a measured NaN as well, so a null where a value is always measured (an evaluation's loss, a train loss) reads
    /// as NaN.</summary>
    public static PretrainResult FromJsonFile(string path) =>
        JsonSerializer.Deserialize<PretrainResult>(File.ReadAllText(path), OptionsJson.Results)
        ?? throw new InvalidDataException($"{path}: empty result");

    /// <summary>The result as JSON (what result.json holds): a number that was not measured (no evaluation, no
    /// timed step) is null; a measured number that is not finite is written "NaN", "Infinity" or
    /// "-Infinity".</summary>
    public string ToJson() => JsonSerializer.Serialize(this, OptionsJson.Results);
}

/// <summary>Training stopped because the loss or gradients stopped being finite.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
