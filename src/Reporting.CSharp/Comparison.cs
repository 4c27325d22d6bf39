using System.Globalization;
using System.Text;
using System.Text.Json;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Models;
using BlockwiseLR.Training;
using static System.Globalization.CultureInfo;

namespace BlockwiseLR.Reporting;

/// <summary>What `blr compare` runs: <see cref="Common"/> gives model, data, N (Steps), batch, LR and the run
/// folder.</summary>
public sealed record CompareOptions
{
    public required PretrainOptions Common { get; init; }

    /// <summary>The optimizers compared (default: the Adam family, plain and blockwise; Lion and Muon on
    /// request).</summary>
    public IReadOnlyList<OptimizerKind> Optimizers { get; init; } =
    [OptimizerKind.AdamW, OptimizerKind.BlockwiseAdamW, OptimizerKind.AdamMini, OptimizerKind.BlockwiseAdamMini];
    public IReadOnlyList<ulong> Seeds { get; init; } = [1337];

    /// <summary>Base LRs for the AdamW(2N) baseline; the best is used for every optimizer, times its family's
    /// <see cref="OptimizerRecipe.LrScale"/> (Lion a tenth). Empty: Common.Lr.</summary>
    public IReadOnlyList<double> LrSweep { get; init; } = [];
}

/// <summary>One optimizer (or the baseline) over all seeds.</summary>
public sealed record CompareRow(
    string Label,
    OptimizerKind Optimizer,
    int Steps,
    double Lr,
    IReadOnlyList<PretrainResult> Runs
)
{
    /// <summary>The final val loss of every seed's run (null: a run has none, it was stopped before its
    /// evaluation).</summary>
    IReadOnlyList<double>? Finals =>
        Runs.All(r => r.FinalValLoss is not null) ? [.. Runs.Select(r => r.FinalValLoss!.Value)] : null;

    /// <summary>The mean over seeds of the final val loss (null: a run has no evaluation).</summary>
    public double? MeanFinal => Finals?.Average();

    /// <summary>The lowest final val loss over seeds (null: a run has no evaluation).</summary>
    public double? MinFinal => Finals?.Min();

    /// <summary>The highest final val loss over seeds (null: a run has no evaluation).</summary>
    public double? MaxFinal => Finals?.Max();

    /// <summary>Val loss per eval step, averaged over seeds.</summary>
    public IReadOnlyList<EvalPoint> MeanCurve =>
        Runs.SelectMany(r => r.Evals)
            .GroupBy(e => e.Step)
            .OrderBy(g => g.Key)
            .Where(g => g.Count() == Runs.Count)
            .Select(g => new EvalPoint(g.Key, g.Average(e => e.ValLoss)))
            .ToList();
}

public sealed record CompareReport(
    CompareRow Baseline,
    IReadOnlyList<CompareRow> Sweep,
    IReadOnlyList<CompareRow> Rows,
    int N,
    string Markdown,
    string Png,
    string Json
)
{
    /// <summary>The paper's speedup of a row against AdamW(2N) (docs/method.md section 4), on seed-mean
    /// curves.</summary>
    public double? Speedup(CompareRow row)
    {
        return SharpnessRules.Speedup(
            Baseline.MeanCurve.Select(e => KeyValuePair.Create(e.Step, e.ValLoss)),
            row.MeanCurve.Select(e => KeyValuePair.Create(e.Step, e.ValLoss)),
            N
        );
    }

    public string Table()
    {
        var text = new StringBuilder();
        text.AppendLine(
            "| optimizer | steps | base LR | val loss at the end (mean, min..max over seeds) | speedup vs AdamW(2N) "
                + "| optimizer state | ms/step | tokens/s |"
        );
        text.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var row in Rows.Prepend(Baseline))
        {
            var speedup =
                row == Baseline ? "1 (baseline)"
                : Speedup(row) is { } x ? x.ToString("F2", CultureInfo.InvariantCulture) + "x"
                : "n/a";
            text.AppendLine(
                string.Create(
                    CultureInfo.InvariantCulture,
                    $"| {row.Label} | {row.Steps} | {row.Lr:G3} | {Cells.Measured(row.MeanFinal, "F4")} "
                        + $"({Cells.Measured(row.MinFinal, "F4")}..{Cells.Measured(row.MaxFinal, "F4")}) | {speedup} | "
                        + $"{row.Runs[0].OptimizerStateBytes / 1048576.0:F1} MiB | "
                        + $"{Cells.Measured(row.Runs.Average(r => r.MillisecondsPerStep), "F1")} | "
                        + $"{Cells.Measured(row.Runs.Average(r => r.TokensPerSecond), "N0")} |"
                )
            );
        }
        return text.ToString();
    }

    public string ToMarkdown(PretrainOptions common)
    {
        var text = new StringBuilder();
        text.AppendLine(
            $"# Comparison: {common.Model.Name}, N = {N} steps of {common.Training.BatchSize} x "
                + $"{common.Training.SeqLen} tokens"
        );
        text.AppendLine();
        var sweep = string.Join(", ", Sweep.Select(s => s.Lr.ToString("G3", InvariantCulture)));
        text.AppendLine(
            $"Data {common.Data.Path}; seeds "
                + $"{string.Join(", ", Rows[0].Runs.Select(r => Path.GetFileName(r.RunDirectory)))}; AdamW at 2N = "
                + $"{2 * N} steps is the baseline"
                + (Sweep.Count > 1 ? $" (best base LR of {sweep})" : "")
                + $"; speedup as docs/method.md section 4; BlockwiseLR {Pretrainer.CodeVersion}."
        );
        text.AppendLine();
        text.Append(Table());
        text.AppendLine();
        text.AppendLine("Mean val loss at equal steps:");
        text.AppendLine();
        var rows = Rows.Prepend(Baseline).ToList();
        text.AppendLine("| step | " + string.Join(" | ", rows.Select(r => r.Label)) + " |");
        text.AppendLine("|---|" + string.Concat(rows.Select(_ => "---|")));
        foreach (var step in Baseline.MeanCurve.Select(e => e.Step))
            text.AppendLine(
                $"| {step} | "
                    + string.Join(
                        " | ",
                        rows.Select(r =>
                            r.MeanCurve.FirstOrDefault(e => e.Step == step)
                                ?.ValLoss.ToString("F4", CultureInfo.InvariantCulture)
                            ?? ""
                        )
                    )
                    + " |"
            );
        text.AppendLine();
        text.AppendLine("![mean val loss](curves.png)");
        return text.ToString();
    }
}

/// <summary>One optimizer's run in a comparison.</summary>
/// <summary>One arm of a comparison: its label (and run folder), optimizer and ratios (null: the options'
/// own).</summary>
public sealed record ComparisonArm(string Label, OptimizerKind Optimizer, BlockRatios? Ratios = null)
{
    public static ComparisonArm Of(OptimizerKind optimizer) => new(OptionNames.Format(optimizer), optimizer);

    /// <summary>The main job's arms: AdamW, Blockwise AdamW with the paper's ratios, and with ratios set from the
    /// measured sharpness (auto).</summary>
    public static IReadOnlyList<ComparisonArm> Demo { get; } =
    [
        Of(OptimizerKind.AdamW),
        new("blockwise-adamw-paper", OptimizerKind.BlockwiseAdamW, BlockRatios.Paper),
        new("blockwise-adamw-auto", OptimizerKind.BlockwiseAdamW, BlockRatios.Auto()),
    ];
}

/// <summary>One finished arm: its result and the ratios it trained with (auto's as reached at the end).</summary>
public sealed record ComparisonRun(string Label, OptimizerKind Optimizer, PretrainResult Result, string Ratios)
{
    /// <summary>The ratios in words: auto's final ones from the last checkpoint, the fixed ones as given.</summary>
    public static string RatiosOf(PretrainOptions options, PretrainResult result)
    {
        if (!OptimizerKinds.IsBlockwise(options.Optimizer.Kind))
            return "one LR";
        if (!options.Optimizer.Ratios.IsAuto || result.LastCheckpoint is not { } last)
            return options.Optimizer.Ratios.ToString();
        var final = Checkpoints.ReadState(last, ResolvedOptions.Resolve(options).Config).Auto?.Ratios ?? [];
        return "auto, at the end: "
            + string.Join(
                ", ",
                final
                    .OrderBy(kv => kv.Key, StringComparer.Ordinal)
                    .Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:F2}"))
            );
    }
}

/// <summary>The outcome of a comparison and the files written for it.</summary>
public sealed record ComparisonReport(IReadOnlyList<ComparisonRun> Runs, string Markdown, string Png, string Json)
{
    /// <summary>The table: one row per optimizer.</summary>
    public string Table()
    {
        var text = new StringBuilder();
        text.AppendLine(
            "| run | val loss (final) | val loss (best) | train tokens/s | ms/step | optimizer state | ratios |"
        );
        text.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var run in Runs)
        {
            var r = run.Result;
            text.AppendLine(
                string.Create(
                    CultureInfo.InvariantCulture,
                    $"| {run.Label} | {Cells.Measured(r.FinalValLoss, "F4")} | "
                        + $"{Cells.Measured(r.BestValLoss, "F4")} | {Cells.Measured(r.TokensPerSecond, "N0")} | "
                        + $"{Cells.Measured(r.MillisecondsPerStep, "F1")} | "
                        + $"{r.OptimizerStateBytes / 1048576.0:F1} MiB | {run.Ratios} |"
                )
            );
        }
        return text.ToString();
    }
}

/// <summary>
/// The main job: the same model, data, seed and steps trained with several arms (<see cref="ComparisonArm.Demo"/>:
/// AdamW, Blockwise AdamW with the paper's ratios and with auto ratios, on gpt2-tiny over the built-in Gutenberg
/// corpus), then a table, a loss-curve PNG and a Markdown report. Each run is an ordinary <see cref="Pretrainer"/>
/// run in OUT/&lt;arm label&gt;.
/// </summary>
public static class Comparison
{
    /// <summary>The main job's options: three runs of 300 steps of 8 x 128 tokens on the built-in corpus tokenized with
    /// <see cref="DemoTokenizer"/>, about 4 minutes on 2 cores; --quick is 40 steps of 4 x 64.</summary>
    public static PretrainOptions DemoOptions(string output, bool quick) =>
        new()
        {
            Model = new() { Name = "gpt2-tiny" },
            Data = new() { Path = Path.Combine(output, "data") },
            Schedule = new() { Lr = 1e-3, WarmupSteps = quick ? 4 : 30 },
            Training = new()
            {
                Steps = quick ? 40 : 300,
                BatchSize = quick ? 4 : 8,
                SeqLen = quick ? 64 : 128,
                Seed = 1337,
            },
            Evaluation = new() { Every = quick ? 10 : 25, Windows = quick ? 16 : 32 },
            Run = new() { Out = output },
        };

    /// <summary>The tokenizer the main job prepares the built-in corpus with: the built-in 4,000-piece SentencePiece
    /// BPE. With GPT-2's 50,257 tokens gpt2-tiny is 89% embedding and its output layer takes most of each step; with
    /// 4,032 rows the Transformer blocks are 59% of the model (GPT-2 small: 68%) and a step costs a fifth.</summary>
    public const string DemoTokenizer = TextTokenizers.BuiltinSmall;

    /// <summary>A demo or comparison replaces what it wrote itself (its runs, data and report), and refuses a
    /// folder that holds anything else.</summary>
    static void RefuseForeignFolder(string output, string command, Func<string, bool> own)
    {
        if (!Directory.Exists(output))
            return;
        var foreign = Directory
            .EnumerateFileSystemEntries(output)
            .Select(Path.GetFileName)
            .Where(n => !own(n!))
            .Order(StringComparer.Ordinal)
            .ToList();
        if (foreign.Count > 0)
            throw new ArgumentException(
                $"--out {output}: holds files {command} did not write "
                    + $"({string.Join(", ", foreign.Take(3))}{(foreign.Count > 3 ? ", ..." : "")}); "
                    + "choose another --out or empty it"
            );
    }

    /// <summary>Prepares the built-in corpus into OUT/data (once) and runs each arm.</summary>
    public static ComparisonReport Run(
        PretrainOptions common,
        IReadOnlyList<ComparisonArm> arms,
        Action<string>? starting = null,
        IProgress<TrainProgress>? progress = null,
        CancellationToken cancel = default
    )
    {
        PretrainOptions OptionsOf(ComparisonArm arm) =>
            common with
            {
                Optimizer = common.Optimizer with
                {
                    Kind = arm.Optimizer,
                    Ratios = arm.Ratios ?? common.Optimizer.Ratios,
                },
            };
        RefuseForeignFolder(common.Run.Out, "blr demo", name =>
            name is "data" or "report.md" or "report.json" or "loss.png" or "map.png" // map.png: the sweep's map
            || arms.Any(a => a.Label == name)
        );
        // Every option is checked before the corpus is prepared (the data folder is the demo's own to make).
        foreach (var arm in arms)
            ResolvedOptions.Resolve(OptionsOf(arm), ownData: true);
        // The data folder is the demo's own: one prepared with another tokenizer (an older demo's) is made again.
        // (SentencePiece tokenizers hold nothing to dispose.)
        if (
            !Equals(
                TextTokenizers.OfDataset(common.Data.Path),
                TokenizerRecord.Of(TextTokenizers.Create(DemoTokenizer))
            )
        )
            ShardPreparer.Run(
                new PrepareOptions
                {
                    Builtin = "gutenberg",
                    Tokenizer = DemoTokenizer,
                    OutputDirectory = common.Data.Path,
                    Overwrite = true,
                }
            );
        var runs = new List<ComparisonRun>();
        foreach (var arm in arms)
        {
            starting?.Invoke(arm.Label);
            // Each arm's run folder is the comparison's own: a new comparison replaces it.
            var options = OptionsOf(arm) with
            {
                Run = new() { Out = Path.Combine(common.Run.Out, arm.Label), Overwrite = true },
            };
            var result = Pretrainer.Run(options, progress, cancel);
            runs.Add(new ComparisonRun(arm.Label, arm.Optimizer, result, ComparisonRun.RatiosOf(options, result)));
            if (cancel.IsCancellationRequested)
                break;
        }
        return Write(common, runs);
    }

    static ComparisonReport Write(PretrainOptions common, List<ComparisonRun> runs)
    {
        Directory.CreateDirectory(common.Run.Out);
        var png = Plots.Save(
            Path.Combine(common.Run.Out, "loss.png"),
            $"{common.Model.Name}, {common.Training.Steps} steps of {common.Training.BatchSize} x "
                + $"{common.Training.SeqLen} tokens: loss by step",
            runs.SelectMany(
                (run, i) =>
                    new[]
                    {
                        new Plots.Curve(
                            $"{run.Label} train (10-step mean)",
                            Enumerable.Range(1, run.Result.TrainLosses.Count).Select(x => (double)x).ToArray(),
                            Plots.Smooth(run.Result.TrainLosses, 10),
                            Thin: true
                        ),
                        new Plots.Curve(
                            $"{run.Label} val",
                            run.Result.Evals.Select(e => (double)e.Step).ToArray(),
                            run.Result.Evals.Select(e => e.ValLoss).ToArray(),
                            ColorOf: 2 * i
                        ),
                    }
            )
        );
        var report = new ComparisonReport(
            runs,
            Path.Combine(common.Run.Out, "report.md"),
            png,
            Path.Combine(common.Run.Out, "report.json")
        );
        var markdown = new StringBuilder();
        markdown.AppendLine($"# {common.Model.Name}: {string.Join(" vs ", runs.Select(r => r.Label))}");
        markdown.AppendLine();
        markdown.AppendLine(
            string.Create(
                CultureInfo.InvariantCulture,
                $"Same data ({common.Data.Path}), seed {common.Training.Seed}, {common.Training.Steps} steps of "
                    + $"{common.Training.BatchSize} x {common.Training.SeqLen} tokens, base LR {common.Schedule.Lr}, "
                    + $"{OptionNames.Format(common.Schedule.Kind)} to LR/20 after "
                    + $"{common.Schedule.WarmupSteps ?? BlockSchedule.DefaultWarmup(common.Training.Steps)} warmup "
                    + $"steps; BlockwiseLR {Pretrainer.CodeVersion}, {Environment.ProcessorCount} CPU threads."
            )
        );
        markdown.AppendLine();
        markdown.Append(report.Table());
        markdown.AppendLine();
        markdown.AppendLine("Val loss at equal steps:");
        markdown.AppendLine();
        markdown.AppendLine("| step | " + string.Join(" | ", runs.Select(r => r.Label)) + " |");
        markdown.AppendLine("|---|" + string.Concat(runs.Select(_ => "---|")));
        foreach (var step in runs[0].Result.Evals.Select(e => e.Step))
            markdown.AppendLine(
                $"| {step} | "
                    + string.Join(
                        " | ",
                        runs.Select(r =>
                            r.Result.Evals.FirstOrDefault(e => e.Step == step)
                                ?.ValLoss.ToString("F4", CultureInfo.InvariantCulture)
                            ?? ""
                        )
                    )
                    + " |"
            );
        markdown.AppendLine();
        markdown.AppendLine("![loss curves](loss.png)");
        File.WriteAllText(report.Markdown, markdown.ToString());
        File.WriteAllText(report.Json, JsonSerializer.Serialize(runs, OptionsJson.Options));
        return report;
    }

    /// <summary>`blr compare`: AdamW at 2N steps (over <see cref="CompareOptions.LrSweep"/> when given; the best
    /// base LR by mean final val loss wins) and each optimizer at N steps with that base LR, each over every seed;
    /// val loss at equal steps (mean and spread over seeds), the paper's speedup against AdamW(2N), optimizer
    /// state bytes, ms/step and tokens/s; report.md, curves.png and report.json in Common.Out.</summary>
    public static CompareReport Compare(
        CompareOptions options,
        Action<string>? starting = null,
        IProgress<TrainProgress>? progress = null,
        CancellationToken cancel = default
    )
    {
        var common = options.Common;
        if (options.Optimizers.Count == 0 || options.Seeds.Count == 0)
            throw new ArgumentException("give at least one optimizer and one seed");
        RefuseForeignFolder(common.Run.Out, "blr compare", name =>
            name is "report.md" or "report.json" or "curves.png"
            || name.StartsWith("adamw-2N", StringComparison.Ordinal)
            || options.Optimizers.Any(o => OptionNames.Format(o) == name)
        );
        var n = common.Training.Steps;
        var lrs = options.LrSweep.Count > 0 ? options.LrSweep : [common.Schedule.Lr];
        // Every problem before any run.
        foreach (var optimizer in options.Optimizers)
            ResolvedOptions.Resolve(common with { Optimizer = ArmOptimizer(common.Optimizer, optimizer) });
        ResolvedOptions.Resolve(common with { Training = common.Training with { Steps = 2 * n } });

        CompareRow RunRow(string label, OptimizerKind optimizer, int steps, double lr) =>
            RunSeeds(options, label, optimizer, steps, lr, starting, progress, cancel);

        var baselines = lrs.Select(lr =>
                RunRow(
                    lrs.Count > 1 ? $"adamw-2N-lr{lr.ToString("G3", CultureInfo.InvariantCulture)}" : "adamw-2N",
                    OptimizerKind.AdamW,
                    2 * n,
                    lr
                )
            )
            .ToList();
        var baseline = baselines.MinBy(b => b.MeanFinal)!;
        var rows = options
            .Optimizers.Select(o =>
                RunRow(
                    OptionNames.Format(o),
                    o,
                    n,
                    baseline.Lr * OptimizerKinds.Recipe(OptimizerKinds.Family(o)).LrScale
                )
            )
            .ToList();
        var report = new CompareReport(
            baseline,
            baselines,
            rows,
            n,
            Path.Combine(common.Run.Out, "report.md"),
            Path.Combine(common.Run.Out, "curves.png"),
            Path.Combine(common.Run.Out, "report.json")
        );

        WriteFiles(report, options);
        return report;
    }

    /// <summary>The common optimizer options for one compared optimizer: the ratios are the blockwise ones'; a plain
    /// optimizer gives every block the base LR.</summary>
    static OptimizerOptions ArmOptimizer(OptimizerOptions common, OptimizerKind kind) =>
        common with
        {
            Kind = kind,
            Ratios = OptimizerKinds.IsBlockwise(kind) ? common.Ratios : BlockRatios.Uniform,
        };

    /// <summary>One row of a comparison: an optimizer at a base LR for <paramref name="steps"/> steps, once per seed,
    /// each run in COMMON.OUT/LABEL/seed-S.</summary>
    static CompareRow RunSeeds(
        CompareOptions options,
        string label,
        OptimizerKind optimizer,
        int steps,
        double lr,
        Action<string>? starting,
        IProgress<TrainProgress>? progress,
        CancellationToken cancel
    )
    {
        var common = options.Common;
        var runs = new List<PretrainResult>();
        foreach (var seed in options.Seeds)
        {
            starting?.Invoke($"{label} seed {seed}");
            var folder = Path.Combine(common.Run.Out, label, $"seed-{seed}");
            var warmup = common.Schedule.WarmupSteps ?? BlockSchedule.DefaultWarmup(common.Training.Steps);
            var arm = common with
            {
                Optimizer = ArmOptimizer(common.Optimizer, optimizer),
                Schedule = common.Schedule with { Lr = lr, WarmupSteps = warmup },
                Training = common.Training with { Steps = steps, Seed = seed },
                Run = new() { Out = folder, Overwrite = true },
            };
            runs.Add(Pretrainer.Run(arm, progress, cancel));
        }
        return new CompareRow(label, optimizer, steps, lr, runs);
    }

    /// <summary>The comparison's curves.png, report.md and report.json.</summary>
    static void WriteFiles(CompareReport report, CompareOptions options)
    {
        var (common, rows, baseline) = (options.Common, report.Rows, report.Baseline);
        Plots.Save(
            report.Png,
            $"{common.Model.Name}: mean val loss over {options.Seeds.Count} seed(s)",
            rows.Prepend(baseline)
                .Select(row => new Plots.Curve(
                    row.Label,
                    row.MeanCurve.Select(c => (double)c.Step).ToArray(),
                    row.MeanCurve.Select(c => c.ValLoss).ToArray()
                ))
        );
        File.WriteAllText(report.Markdown, report.ToMarkdown(common));
        File.WriteAllText(report.Json, JsonSerializer.Serialize(report, OptionsJson.Options));
    }
}

/// <summary>How the tables show a number: "n/a" for one the run did not measure (no evaluation, no timed
/// step).</summary>
static class Cells
{
    public static string Measured(double? value, string format) =>
        value?.ToString(format, CultureInfo.InvariantCulture) ?? "n/a";
}
