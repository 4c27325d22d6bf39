using System.Globalization;
using System.Text.Json.Nodes;
using TorchSharp;

namespace BlockwiseLR.Training;

/// <summary>RUN/metrics.jsonl (a line per step), RUN/evals.csv and TensorBoard events, all from the
/// <see cref="StepReport"/> of each step. On resume the files are cut back to the checkpoint's step, so a resumed
/// run's files equal an uninterrupted run's.</summary>
sealed class MetricsWriter : IDisposable
{
    readonly StreamWriter steps;
    readonly StreamWriter evals;
    readonly TorchSharp.Modules.SummaryWriter? tensorboard;

    public MetricsWriter(string run, int resumeStep)
    {
        Path = System.IO.Path.Combine(run, "metrics.jsonl");
        var evalPath = System.IO.Path.Combine(run, "evals.csv");
        foreach (var (file, lines) in CutBack(run, resumeStep))
            File.WriteAllLines(file, lines);
        steps = new StreamWriter(Path, append: true) { AutoFlush = true };
        evals = new StreamWriter(evalPath, append: true) { AutoFlush = true };
        if (new FileInfo(evalPath).Length == 0)
            evals.WriteLine("step,val_loss");
        try
        {
            tensorboard = torch.utils.tensorboard.SummaryWriter(System.IO.Path.Combine(run, "tensorboard"));
        }
        catch (Exception)
        {
            tensorboard = null;
        } // metrics files remain the record
    }

    public string Path { get; }

    /// <summary>The lines metrics.jsonl and evals.csv keep when a run resumes after <paramref name="resumeStep"/>
    /// steps (files that do not exist left out); a file damaged before its last line is refused here, before the run
    /// folder is touched.</summary>
    internal static List<(string File, List<string> Lines)> CutBack(string run, int resumeStep)
    {
        var cut = new List<(string, List<string>)>();
        var metrics = System.IO.Path.Combine(run, "metrics.jsonl");
        if (File.Exists(metrics))
            cut.Add((metrics, Cut(metrics, StepOfMetricsLine, step => step < resumeStep, "metrics line", true)));
        // A CSV line cut inside its loss still reads as a number: one without its newline is never whole.
        var evals = System.IO.Path.Combine(run, "evals.csv");
        if (File.Exists(evals))
            cut.Add((evals, Cut(evals, StepOfEvalsLine, step => step <= resumeStep, "evals.csv line", false)));
        return cut;
    }

    /// <summary>The records of a run's metrics.jsonl, for readers (blr plot): a last line cut short is left out, as
    /// a resume cuts it; a damaged line before it is refused.</summary>
    internal static List<JsonNode> ReadMetrics(string path) =>
        [.. Cut(path, StepOfMetricsLine, _ => true, "metrics line", true).Select(l => JsonNode.Parse(l)!)];

    /// <summary>The (steps done, val loss) lines of a run's evals.csv, read as <see cref="ReadMetrics"/>
    /// reads.</summary>
    internal static List<(int Step, double Loss)> ReadEvals(string path) =>
        [
            .. Cut(path, StepOfEvalsLine, _ => true, "evals.csv line", false)
                .Where(l => l != "step,val_loss")
                .Select(l => l.Split(','))
                .Select(p =>
                    (
                        int.Parse(p[0], CultureInfo.InvariantCulture),
                        double.Parse(p[1], NumberStyles.Float, CultureInfo.InvariantCulture)
                    )
                ),
        ];

    /// <summary>A run's file cut back to the lines of the steps <paramref name="keep"/> keeps. Every line is written
    /// whole with its newline, so a last line without one was cut short (a power loss, a full disk, a kill mid-write):
    /// it is dropped, as a step after the checkpoint would be, unless it is whole all the same (a JSON object
    /// parses only whole: <paramref name="lastMayBeWhole"/>). A line that does not parse before the last one is damage
    /// no resume can explain: refused, naming the line.</summary>
    static List<string> Cut(
        string path,
        Func<string, int?> stepOf,
        Func<int, bool> keep,
        string what,
        bool lastMayBeWhole
    )
    {
        var text = File.ReadAllText(path);
        var lines = text.Split('\n');
        var kept = new List<string>();
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r');
            var last = i == lines.Length - 1; // after the last newline: empty, or a line cut short
            if (line.Length == 0)
                continue;
            if (line == "step,val_loss")
            {
                kept.Add(line);
                continue;
            }
            if (last && !lastMayBeWhole)
                continue;
            var step = stepOf(line);
            if (step is null && last)
                continue;
            if (step is null)
                throw new Data.DataInputException(
                    $"{path}: line {i + 1} is not a whole {what}, and more lines follow it (the file is damaged, "
                        + $"not cut short); remove that line, or train the run again from the start"
                );
            if (keep(step.Value))
                kept.Add(line);
        }
        return kept;
    }

    /// <summary>The step of a metrics.jsonl line (null: not a whole one).</summary>
    static int? StepOfMetricsLine(string line)
    {
        try
        {
            return JsonNode.Parse(line) is JsonObject o && o["step"] is JsonValue v && v.TryGetValue<int>(out var s)
                ? s
                : null;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>The step of an evals.csv line, "steps done,val loss" (null: not a whole one).</summary>
    static int? StepOfEvalsLine(string line)
    {
        var parts = line.Split(',');
        return
            parts.Length == 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var step)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out _)
            ? step
            : null;
    }

    /// <summary>The step's line in metrics.jsonl and, when it evaluated, its line in evals.csv (numbered by steps
    /// done, as checkpoints are).</summary>
    public void Write(StepReport report)
    {
        var line = new JsonObject
        {
            ["step"] = report.Step,
            ["loss"] = report.Loss,
            ["lr"] = Keyed(report.LearningRates),
            ["grad_norm"] = Keyed(report.GradientNorms),
            ["tokens_per_s"] = report.TokensPerSecond,
            ["ms"] = report.Milliseconds,
        };
        if (report.Mfu is { } mfu)
            line["mfu"] = mfu;
        if (report.CollectiveMilliseconds is { } comm)
            line["comm_ms"] = comm;
        if (report.DeviceMemoryBytes is { } memory)
            line["device_mem_mib"] = memory / 1048576.0;
        if (report.Ratios is { } ratios)
            line["ratio"] = Keyed(ratios);
        if (report.Sharpness is { } sharpness)
            line["sharpness"] = Keyed(sharpness);
        if (report.NoiseScale is { } noise)
        {
            var scales = new JsonObject { ["all"] = noise.Tokens };
            foreach (var (block, tokens) in noise.Blocks)
                scales[block.Key()] = tokens;
            line["noise_scale"] = scales;
        }
        steps.WriteLine(line.ToJsonString());
        tensorboard?.add_scalar("train/loss", (float)report.Loss, report.Step);
        if (report.ValLoss is { } valLoss)
        {
            var done = report.Step + 1;
            evals.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{done},{valLoss:R}"));
            tensorboard?.add_scalar("val/loss", (float)valLoss, done);
        }
    }

    static JsonObject Keyed(IReadOnlyDictionary<Block, double> values) =>
        new(values.Select(kv => KeyValuePair.Create(kv.Key.Key(), (JsonNode?)kv.Value)));

    public void Dispose()
    {
        steps.Dispose();
        evals.Dispose();
    }
}
