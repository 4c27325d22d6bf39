using System.Text.Json.Nodes;
using BlockwiseLR.Training;

namespace BlockwiseLR;

/// <summary>A run folder read back as typed objects, without building its model: the options it ran with, the
/// <see cref="StepReport"/> of every step (from metrics.jsonl, with the evaluations of evals.csv), its result
/// (result.json, once it ended) and the trainer state of its checkpoints. Steps are numbered by steps done, as
/// everywhere; metrics.jsonl files of earlier versions (numbered from 0) read the same.</summary>
/// <example><code>
/// var run = TrainingRun.Open("runs/tiny");
/// foreach (var step in run.History)
///     Console.WriteLine($"{step.Step}: {step.Loss:F3}, qk LR {step.LearningRates[Block.AttentionQK]:E2}");
/// var state = run.LatestState; // the last checkpoint's trainer.json
/// </code></example>
public sealed class TrainingRun
{
    TrainingRun(
        string directory,
        PretrainOptions options,
        IReadOnlyList<StepReport> history,
        IReadOnlyList<EvalPoint> evaluations,
        PretrainResult? result,
        IReadOnlyList<string> checkpoints,
        string? latestCheckpoint
    )
    {
        (Directory, Options, History, Evaluations, Result, Checkpoints, LatestCheckpoint) = (
            directory,
            options,
            history,
            evaluations,
            result,
            checkpoints,
            latestCheckpoint
        );
    }

    /// <summary>The run folder (a full path).</summary>
    public string Directory { get; }

    /// <summary>The options the run ran with (its options.json).</summary>
    public PretrainOptions Options { get; }

    /// <summary>Every step the run logged, in order, numbered by steps done (1 to the steps run); a step that
    /// evaluated has its <see cref="StepReport.ValLoss"/>.</summary>
    public IReadOnlyList<StepReport> History { get; }

    /// <summary>The run's evaluations (evals.csv), numbered by steps done.</summary>
    public IReadOnlyList<EvalPoint> Evaluations { get; }

    /// <summary>The run's result (result.json; null while it runs or when it stopped before its first
    /// checkpoint).</summary>
    public PretrainResult? Result { get; }

    /// <summary>The checkpoint folders the run keeps, oldest first (each named step_NNNNNNN by steps done).</summary>
    public IReadOnlyList<string> Checkpoints { get; }

    /// <summary>The checkpoint RUN/checkpoints/latest points at (null: none yet).</summary>
    public string? LatestCheckpoint { get; }

    /// <summary>The trainer state of the latest checkpoint (null: none yet), read without the model.</summary>
    public TrainerState? LatestState => LatestCheckpoint is null ? null : ReadState(LatestCheckpoint);

    /// <summary>The trainer state (trainer.json) of a checkpoint, read without the model and whatever model it
    /// holds.</summary>
    /// <param name="checkpoint">A checkpoint folder, e.g. one of <see cref="Checkpoints"/>.</param>
    /// <exception cref="InvalidDataException">trainer.json is not a trainer state.</exception>
    public static TrainerState ReadState(string checkpoint) => Training.Checkpoints.ReadStateOf(checkpoint);

    /// <summary>Reads a run folder written by <see cref="Pretrainer"/>, <see cref="Trainer"/> or `blr train`.</summary>
    /// <param name="directory">The run folder (<see cref="RunOptions.Out"/>).</param>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist or holds no options.json.</exception>
    /// <exception cref="DataInputException">metrics.jsonl or evals.csv is damaged before its last line (a line
    /// that does not parse, or a metrics line without its step, loss, tokens_per_s or ms, which every version
    /// writes).</exception>
    public static TrainingRun Open(string directory)
    {
        var run = Path.GetFullPath(directory);
        var optionsPath = Path.Combine(run, "options.json");
        if (!File.Exists(optionsPath))
            throw new DirectoryNotFoundException($"{run}: not a run folder (no options.json)");
        var options = PretrainOptions.FromJsonFile(optionsPath);
        var evalsPath = Path.Combine(run, "evals.csv");
        List<EvalPoint> evals = File.Exists(evalsPath)
            ? [.. MetricsWriter.ReadEvals(evalsPath).Select(e => new EvalPoint(e.Step, e.Loss))]
            : [];
        var metricsPath = Path.Combine(run, "metrics.jsonl");
        var history = File.Exists(metricsPath)
            ? MetricsWriter.ReadReports(metricsPath, options.Training.Steps, evals)
            : [];
        var resultPath = Path.Combine(run, "result.json");
        var result = File.Exists(resultPath)
            ? PretrainResult.FromJsonFile(resultPath) with
            {
                History = history,
            }
            : null;
        var folder = Training.Checkpoints.Folder(run);
        List<string> checkpoints = System.IO.Directory.Exists(folder)
            ? [.. System.IO.Directory.GetDirectories(folder, "step_*").Order(StringComparer.Ordinal)]
            : [];
        var pointer = Path.Combine(folder, Training.Checkpoints.LatestFile);
        var latest = File.Exists(pointer) ? Path.Combine(folder, File.ReadAllText(pointer).Trim()) : null;
        return new TrainingRun(run, options, history, evals, result, checkpoints, latest);
    }
}
