using System.Globalization;
using System.Text.Json.Nodes;
using TorchSharp;

namespace BlockwiseLR.Training;

/// <summary>RUN/metrics.jsonl (a line per step), RUN/evals.csv and TensorBoard events, all from the
/// <see cref="StepReport"/> of each step. On resume the files are cut back to the checkpoint's step, so a resumed
/// run's files equal an uninterrupted run's.
/// <para>Every file numbers a step by steps done (1-based, as checkpoint names do). Lines of metrics.jsonl carry
/// "step_base": 1; lines without it were written by earlier versions, which numbered them from 0, and are read
/// as their step + 1 (<see cref="StepOf"/>), so old runs still resume and plot.</para></summary>
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
            cut.Add((metrics, Cut(metrics, StepOfMetricsLine, step => step <= resumeStep, "metrics line", true)));
        // A CSV line cut inside its loss still reads as a number: one without its newline is never whole.
        var evals = System.IO.Path.Combine(run, "evals.csv");
        if (File.Exists(evals))
            cut.Add((evals, Cut(evals, StepOfEvalsLine, step => step <= resumeStep, "evals.csv line", false)));
        return cut;
    }

    /// <summary>The records of a run's metrics.jsonl, for readers (blr plot): a last line cut short is left out, as
    /// a resume cuts it; a damaged line before it is refused.
    /// Every record's "step" is steps done, whichever version wrote it.</summary>
    internal static List<JsonNode> ReadMetrics(string path) =>
        [
            .. Cut(path, StepOfMetricsLine, _ => true, "metrics line", true)
                .Select(l =>
                {
                    var node = JsonNode.Parse(l)!;
                    node["step"] = JsonNode.Parse(StepOf(node.AsObject()).ToString(CultureInfo.InvariantCulture));
                    node["step_base"] = 1;
                    return node;
                }),
        ];

    /// <summary>The <see cref="StepReport"/> of every line of a run's metrics.jsonl (read as
    /// <see cref="ReadMetrics"/> reads), with the val loss of <paramref name="evals"/> at the steps that
    /// evaluated.</summary>
    internal static List<StepReport> ReadReports(string path, int steps, IReadOnlyList<EvalPoint> evals)
    {
        var valLoss = evals.GroupBy(e => e.Step).ToDictionary(g => g.Key, g => g.Last().ValLoss);
        return
        [
            .. ReadMetrics(path)
                .Select(n => n.AsObject())
                .Select(o => new StepReport(
                    o["step"]!.GetValue<int>(),
                    o["loss"]!.GetValue<double>(),
                    ByBlock(o["lr"]) ?? [],
                    ByBlock(o["grad_norm"]) ?? [],
                    o["tokens_per_s"]!.GetValue<double>(),
                    o["ms"]!.GetValue<double>(),
                    valLoss.TryGetValue(o["step"]!.GetValue<int>(), out var v) ? v : null
                )
                {
                    Steps = steps,
                    Ratios = ByBlock(o["ratio"]),
                    Sharpness = ByBlock(o["sharpness"]),
                    NoiseScale = o["noise_scale"] is JsonObject noise
                        ? new NoiseScaleReading(
                            noise["all"]?.GetValue<double>(),
                            noise
                                .Where(kv => kv.Key != "all")
                                .ToDictionary(kv => BlockOf(kv.Key), kv => kv.Value?.GetValue<double>())
                        )
                        : null,
                    Mfu = o["mfu"]?.GetValue<double>(),
                    CollectiveMilliseconds = o["comm_ms"]?.GetValue<double>(),
                    DeviceMemoryBytes = o["device_mem_mib"] is { } mib
                        ? (long)Math.Round(mib.GetValue<double>() * 1048576.0)
                        : null,
                }),
        ];
    }

    static Dictionary<Block, double>? ByBlock(JsonNode? node) =>
        node is JsonObject o ? o.ToDictionary(kv => BlockOf(kv.Key), kv => kv.Value!.GetValue<double>()) : null;

    static readonly Dictionary<string, Block> BlocksByKey = Enum.GetValues<Block>().ToDictionary(b => b.Key());

    static Block BlockOf(string key) =>
        BlocksByKey.TryGetValue(key, out var block)
            ? block
            : throw new InvalidDataException($"metrics.jsonl: unknown block key '{key}'");

    /// <summary>The steps done of a metrics.jsonl record: its "step", + 1 when it has no "step_base" (written
    /// 0-based by an earlier version).</summary>
    internal static int StepOf(JsonObject line) =>
        line["step"]!.GetValue<int>()
        + (line["step_base"] is JsonValue b && b.TryGetValue<int>(out var stepBase) ? 1 - stepBase : 1);

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
                throw new DataInputException(
                    $"{path}: line {i + 1} is not a whole {what}, and more lines follow it (the file is damaged, "
                        + $"not cut short); remove that line, or train the run again from the start"
                );
            if (keep(step.Value))
                kept.Add(line);
        }
        return kept;
    }

    /// <summary>The numbers every version writes on every metrics.jsonl line, beside "step".</summary>
    static readonly string[] Measured = ["loss", "tokens_per_s", "ms"];

    /// <summary>The steps done of a metrics.jsonl line (null: not a whole one, which every version's line is: its
    /// step and the numbers of <see cref="Measured"/>).</summary>
    static int? StepOfMetricsLine(string line)
    {
        try
        {
            return
                JsonNode.Parse(line) is JsonObject o
                && o["step"] is JsonValue v
                && v.TryGetValue<int>(out _)
                && Measured.All(key => o[key] is JsonValue n && n.TryGetValue<double>(out _))
                ? StepOf(o)
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

    /// <summary>The step's line in metrics.jsonl and, when it evaluated, its line in evals.csv (both numbered by
    /// steps done, as checkpoints are).</summary>
    public void Write(StepReport report)
    {
        var line = new JsonObject
        {
            ["step"] = report.Step,
            ["step_base"] = 1,
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
            evals.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{report.Step},{valLoss:R}"));
            tensorboard?.add_scalar("val/loss", (float)valLoss, report.Step);
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
