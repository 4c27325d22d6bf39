using System.Text.Json;

namespace BlockwiseLR.Training;

/// <summary>One evaluation.</summary>
public sealed record EvalPoint(int Step, double ValLoss);

/// <summary>What a run produced.</summary>
public sealed record PretrainResult(
    string RunDirectory,
    int Steps,
    double FinalValLoss,
    double BestValLoss,
    IReadOnlyList<EvalPoint> Evals,
    IReadOnlyList<double> TrainLosses,
    double TokensPerSecond,
    double MillisecondsPerStep,
    long OptimizerStateBytes,
    string? LastCheckpoint,
    string MetricsPath,
    bool Interrupted
)
{
    /// <summary>Reads a run's result.json (null numbers read as NaN).</summary>
    public static PretrainResult FromJsonFile(string path) =>
        JsonSerializer.Deserialize<PretrainResult>(File.ReadAllText(path), OptionsJson.Results)
        ?? throw new InvalidDataException($"{path}: empty result");

    /// <summary>The result as JSON (what result.json holds): a number that does not exist (no evaluation, no
    /// timed step) is null.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, OptionsJson.Results);
}

/// <summary>Training stopped because the loss or gradients stopped being finite.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
