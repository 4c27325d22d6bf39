using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Reporting;
using BlockwiseLR.Training;

namespace BlockwiseLR.Benchmarks;

/// <summary>
/// `--study CELL...` and `--study report`: the auto-ratio study of the sharpness issue, one cell at a time, each
/// cell's raw results written as JSON into docs/study/cells/ after every run (a cell stopped half-way resumes from
/// it; delete the file to run the cell afresh), the report (docs/study/report.md) rebuilt from the finished cells.
/// A cell is a model shape, tokens per step and corpus. In each: AdamW at three base LRs (seed 1), widened by factors
/// of 2 while the best is at an edge (at most two more); the best final val loss is the baseline LR, tuned as the
/// paper tuned its; then at seeds 1-3 and that LR: AdamW, Blockwise AdamW with the paper's ratios and with auto
/// ratios, Adam-mini, and Adam-mini with the paper's and with auto ratios; 150 steps, cosine to LR/20 after 15
/// warmup steps, val loss on 32 windows every 25 steps. Every cell uses the built-in 4,000-piece SentencePiece BPE
/// (gutenberg-bpe4k, LLaMA-2 options, trained on the built-in corpus): with GPT-2's 50,257 tokens a tiny model is
/// nearly all embedding (89% of gpt2-tiny's parameters) and its output layer costs most of each step.
/// </summary>
static class Study
{
    public sealed record Cell(string Name, string Model, string Corpus, int BatchSize, int SeqLen);

    /// <summary>Two shapes x two tokens-per-step values a factor 4 apart on the built-in corpus, and two of those
    /// cells on Debian's manual pages (troff sources from the manpages packages: text of another kind).</summary>
    public static IReadOnlyList<Cell> Cells { get; } =
    [
        new("gpt2-256", "gpt2-tiny", "gutenberg", 4, 64),
        new("gpt2-1024", "gpt2-tiny", "gutenberg", 16, 64),
        new("llama-256", "llama-tiny", "gutenberg", 4, 64),
        new("llama-1024", "llama-tiny", "gutenberg", 16, 64),
        new("man-gpt2-256", "gpt2-tiny", "manpages", 4, 64),
        new("man-llama-1024", "llama-tiny", "manpages", 16, 64),
    ];

    static readonly double[] Lrs = [1e-3, 2e-3, 4e-3];
    const int MoreLrs = 2;
    static readonly ulong[] Seeds = [1, 2, 3];
    const int Steps = 150;

    static readonly (string Arm, OptimizerKind Optimizer, string Ratios)[] Arms =
    [
        ("adamw", OptimizerKind.AdamW, "uniform"),
        ("adamw+paper", OptimizerKind.BlockwiseAdamW, "paper"),
        ("adamw+auto", OptimizerKind.BlockwiseAdamW, "auto"),
        ("adam-mini", OptimizerKind.AdamMini, "uniform"),
        ("adam-mini+paper", OptimizerKind.BlockwiseAdamMini, "paper"),
        ("adam-mini+auto", OptimizerKind.BlockwiseAdamMini, "auto"),
        // Auto with two micro-batches per step: the gradient-noise correction of the rule applies.
        ("adamw+auto-micro", OptimizerKind.BlockwiseAdamW, "auto+micro"),
        ("adam-mini+auto-micro", OptimizerKind.BlockwiseAdamMini, "auto+micro"),
        // Auto as version 0.3 runs it by default: one micro-batch split in halves for the noise correction, the
        // regime factor B / (B + B_noise), and the LR rule of fixed ratios (r gives the LR fixed ratios at r give).
        ("adamw+auto-0.3", OptimizerKind.BlockwiseAdamW, "auto-0.3"),
        ("adam-mini+auto-0.3", OptimizerKind.BlockwiseAdamMini, "auto-0.3"),
    ];

    internal static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Hybrid.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException("no Hybrid.sln above the benchmark");
    }

    static string Docs() => Path.Combine(Root(), "docs", "study");

    public static void Run(IReadOnlyList<string> names)
    {
        if (names.Count == 1 && names[0] == "report")
        {
            Report();
            return;
        }
        var cells = ResultFile.Chosen(names, Cells, c => c.Name, "cell");
        Directory.CreateDirectory(Path.Combine(Docs(), "cells"));
        foreach (var cell in cells)
            RunCell(cell);
        Report();
    }

    /// <summary>`--adam-mini-horizon`: <see cref="Benchmarks.AdamMiniHorizon"/> on the study's built-in
    /// corpus.</summary>
    public static void AdamMiniHorizon(int steps) => Benchmarks.AdamMiniHorizon.Run(steps, Data("gutenberg"), Docs());

    internal static string Data(string corpus)
    {
        var folder = Path.Combine(Path.GetTempPath(), $"blr-study-{corpus}-spm4000");
        if (File.Exists(Path.Combine(folder, "manifest.json")))
            return folder;
        const string tokenizer = TextTokenizers.BuiltinSmall;
        if (corpus == "gutenberg")
            ShardPreparer.Run(
                new PrepareOptions
                {
                    Builtin = "gutenberg",
                    Tokenizer = tokenizer,
                    OutputDirectory = folder,
                    Overwrite = true,
                }
            );
        else
        {
            // Sections 1, 5 and 8 of the installed manual pages (the manpages and manpages-dev packages and whatever
            // else is installed), gzipped troff, each page a document.
            var pages = new[] { "man1", "man5", "man8" }
                .Select(s => Path.Combine("/usr/share/man", s))
                .Where(Directory.Exists)
                .ToArray();
            if (pages.Length == 0)
                throw new DirectoryNotFoundException("no /usr/share/man: install Debian's manpages package");
            ShardPreparer.Run(
                new PrepareOptions
                {
                    Inputs = pages,
                    Corpus = new CorpusOptions { Glob = "*.gz", ReplaceInvalidUtf8 = true },
                    Tokenizer = tokenizer,
                    OutputDirectory = folder,
                    Overwrite = true,
                }
            );
        }
        return folder;
    }

    /// <summary>One run of the study's benchmarks (this one's and <see cref="Benchmarks.AdamMiniHorizon"/>'s) in a
    /// temporary folder, removed afterwards: its record (optimizer, ratios as named, LR, seed, seconds, code, date,
    /// final val loss or null when it diverged, evals) and its result (null when it diverged).
    /// <paramref name="whileThere"/> adds to the record what needs the run folder.</summary>
    internal static (JsonObject Entry, PretrainResult? Result) Record(
        PretrainOptions options,
        string ratios,
        Action<PretrainResult, JsonObject>? whileThere = null
    )
    {
        var run = Directory.CreateTempSubdirectory("blr-study-").FullName;
        var clock = Stopwatch.StartNew();
        try
        {
            PretrainResult? result = null;
            try
            {
                result = Pretrainer.Run(options with { Run = options.Run with { Out = run } });
            }
            catch (TrainingDivergedException) { }
            var entry = new JsonObject
            {
                ["optimizer"] = OptionNames.Format(options.Optimizer.Kind),
                ["ratios"] = ratios,
                ["lr"] = options.Schedule.Lr,
                ["seed"] = options.Training.Seed,
                ["seconds"] = clock.Elapsed.TotalSeconds,
                ["code"] = Pretrainer.CodeVersion,
                ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                ["final"] = result?.FinalValLoss,
                ["evals"] = new JsonArray(
                    (result?.Evals ?? []).Select(e => (JsonNode)new JsonArray(e.Step, e.ValLoss)).ToArray()
                ),
            };
            if (result is not null)
                whileThere?.Invoke(result, entry);
            return (entry, result);
        }
        finally
        {
            Directory.Delete(run, true);
        }
    }

    static JsonObject Train(Cell cell, string data, OptimizerKind optimizer, string ratios, double lr, ulong seed)
    {
        var options = new PretrainOptions
        {
            Model = new() { Name = cell.Model },
            Data = new() { Path = data },
            Optimizer = new()
            {
                Kind = optimizer,
                Ratios = ratios.StartsWith("auto") ? BlockRatios.Auto() : BlockRatios.Parse(ratios),
            },
            Schedule = new() { Lr = lr, WarmupSteps = Steps / 10 },
            Training = new()
            {
                Steps = Steps,
                BatchSize = cell.BatchSize,
                SeqLen = cell.SeqLen,
                MicroBatchSize = ratios.EndsWith("+micro") ? cell.BatchSize / 2 : null,
                Seed = seed,
            },
            Evaluation = new() { Every = 25, Windows = 32 },
        };
        return Record(options, ratios, (result, entry) =>
        {
            if (ratios.StartsWith("auto") && result.LastCheckpoint is { } last)
                entry["auto_end"] = new JsonObject(
                    (
                        Checkpoints.ReadState(last, ResolvedOptions.Resolve(options).Config).Auto?.Ratios
                        ?? new Dictionary<string, double>()
                    )
                        .OrderBy(kv => kv.Key, StringComparer.Ordinal)
                        .Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Math.Round(kv.Value, 3)))
                );
        }).Entry;
    }

    internal static double Final(JsonNode run) =>
        run["final"] is { } f ? f.GetValue<double>() : double.PositiveInfinity;

    static double LrOf(JsonNode run) => run["lr"]!.GetValue<double>();

    /// <summary>An LR sweep at one seed, as the study, the batch-size sweep and the bases comparison run it: the runs
    /// at <paramref name="start"/> (in increasing order), widened by a factor of 2 below the lowest or above the
    /// highest, at most <paramref name="more"/> times, while the best is at an edge. The runs in LR order and the
    /// best LR.</summary>
    internal static (List<JsonObject> Runs, double Best) SweepLr(
        IEnumerable<double> start,
        int more,
        Func<double, JsonObject> run
    )
    {
        var sweep = start.Select(run).ToList();
        for (var i = 0; i < more; i++)
        {
            var bestAt = sweep.IndexOf(sweep.MinBy(Final)!);
            if (bestAt != 0 && bestAt != sweep.Count - 1)
                break;
            var lr = bestAt == 0 ? LrOf(sweep[0]) / 2 : LrOf(sweep[^1]) * 2;
            sweep.Insert(bestAt == 0 ? 0 : sweep.Count, run(lr));
        }
        return (sweep, LrOf(sweep.MinBy(Final)!));
    }

    /// <summary>A sweep's runs as "lr X -> final", for the console.</summary>
    internal static string Describe(IEnumerable<JsonNode> sweep) =>
        string.Join(", ", sweep.Select(r => FormattableString.Invariant($"lr {r["lr"]} -> {Final(r):F4}")));

    static void RunCell(Cell cell)
    {
        var data = Data(cell.Corpus);
        var file = Path.Combine(Docs(), "cells", $"{cell.Name}.json");
        var setup = new JsonObject
        {
            ["model"] = cell.Model,
            ["corpus"] = cell.Corpus,
            ["tokenizer"] = TextTokenizers.BuiltinSmall,
            ["batch_size"] = cell.BatchSize,
            ["seq_len"] = cell.SeqLen,
            ["tokens_per_step"] = cell.BatchSize * cell.SeqLen,
            ["steps"] = Steps,
        };
        var results = new ResultFile(file, new JsonObject { ["cell"] = cell.Name }, setup);
        JsonObject Get(OptimizerKind optimizer, string ratios, double lr, ulong seed, double? baseline) =>
            results.Get(optimizer, ratios, lr, seed, baseline, () => Train(cell, data, optimizer, ratios, lr, seed));

        Console.WriteLine(
            $"cell {cell.Name}: {cell.Model}, {cell.BatchSize} x {cell.SeqLen} tokens per step, {cell.Corpus}"
        );
        var (sweep, best) = SweepLr(Lrs, MoreLrs, lr => Get(OptimizerKind.AdamW, "uniform", lr, Seeds[0], null));
        Console.WriteLine($"  AdamW sweep: {Describe(sweep)}; baseline LR {best}");
        foreach (var (arm, optimizer, ratios) in Arms)
        {
            var finals = Seeds.Select(seed => Final(Get(optimizer, ratios, best, seed, best))).ToList();
            Console.WriteLine(
                $"  {arm, -16} {string.Join("  ", finals.Select(f => f.ToString("F4", CultureInfo.InvariantCulture)))}"
            );
        }
        results.Save(best, true);
    }

    /// <summary>docs/study/report.md (and one PNG per cell) from the finished cells' JSON: final val loss as mean
    /// (min..max) over seeds per arm; for each base whether auto and the paper ratios end below or above their plain
    /// base beyond the seed spread; the paper's speedup (the run's steps over the steps the arm needs to reach the
    /// plain base's final loss, on the seed-mean val curves); and the goal for auto per base.</summary>
    static void Report()
    {
        var folder = Path.Combine(Docs(), "cells");
        var cells = (Directory.Exists(folder) ? Directory.GetFiles(folder, "*.json") : [])
            .Select(f => JsonNode.Parse(File.ReadAllText(f))!)
            .Where(c => c["complete"]?.GetValue<bool>() == true)
            .OrderBy(c => Cells.ToList().FindIndex(k => k.Name == c["cell"]!.GetValue<string>()))
            .ToList();
        var text = new StringBuilder();
        text.AppendLine("# Auto ratios against AdamW and Adam-mini, cell by cell");
        text.AppendLine();
        text.AppendLine(
            $"Rebuilt by `dotnet benchmarks/bin/Release/net10.0/Benchmarks.dll --study report` from {cells.Count} of {Cells.Count} cells in"
        );
        text.AppendLine(
            "`docs/study/cells/` (a cell runs with `--study CELL`, all with `--study`). Every cell: 150 steps, 15 warmup, cosine to LR/20,"
        );
        text.AppendLine(
            $"the built-in 4,000-piece SentencePiece BPE `{TextTokenizers.BuiltinSmall}` (vocab padded to 4,032), sequences of 64 tokens,"
        );
        text.AppendLine(
            "val loss on 32 windows every 25 steps. AdamW's LR is swept at seed 1 over 1e-3, 2e-3, 4e-3, widened by a factor of 2 (at most"
        );
        text.AppendLine(
            $"{MoreLrs} times) while the best is at an edge; the best is every arm's base LR. Final val loss, mean (min..max) over seeds 1-3. A difference counts only"
        );
        text.AppendLine(
            "when the seed ranges do not overlap. A CPU cannot reach the paper's 0.3-0.5M tokens per step: these cells have 256 and 1,024."
        );
        text.AppendLine(
            "The auto arms train with one micro-batch per step (the sharpness rule alone); the auto-micro arms with two (the rule's"
        );
        text.AppendLine("gradient-noise correction applies).");
        text.AppendLine();
        text.AppendLine(
            "| cell | model | corpus | tokens/step | LR | " + string.Join(" | ", Arms.Select(a => a.Arm)) + " | cost |"
        );
        text.AppendLine("|---|---|---|---|---|" + string.Concat(Arms.Select(_ => "---|")) + "---|");
        var verdicts = new StringBuilder();
        var goals = Arms.Where(a => a.Ratios.StartsWith("auto")).ToDictionary(a => a.Arm, _ => new List<string>());
        foreach (var cell in cells)
        {
            var setup = cell["setup"]!;
            var lr = cell["baseline_lr"]!.GetValue<double>();
            var runs = cell["runs"]!.AsArray().Select(r => r!).ToList();
            var swept = runs.Where(r =>
                    r["optimizer"]!.GetValue<string>() == "adamw" && r["seed"]!.GetValue<ulong>() == Seeds[0]
                )
                .Select(r => r["lr"]!.GetValue<double>())
                .Order()
                .ToList();
            if (lr == swept[0] || lr == swept[^1])
                verdicts.AppendLine(
                    FormattableString.Invariant(
                        $"- {cell["cell"]}: AdamW's best LR {lr} is still at an edge of the sweep ({string.Join(", ", swept)}) after {MoreLrs} widenings: the baseline may be under-tuned"
                    )
                );
            List<JsonNode> Of(string arm)
            {
                var (_, optimizer, ratios) = Arms.First(a => a.Arm == arm);
                return ResultFile.RunsOf(cell, OptionNames.Format(optimizer), ratios, lr);
            }
            var finals = Arms.ToDictionary(a => a.Arm, a => Of(a.Arm).Select(Final).ToList());
            string Summary(List<double> f) =>
                f.Any(double.IsInfinity)
                    ? $"diverged at {f.Count(double.IsInfinity)} seed(s)"
                    : FormattableString.Invariant($"{f.Average():F3} ({f.Min():F3}..{f.Max():F3})");
            var seconds = runs.Sum(r => r["seconds"]!.GetValue<double>());
            text.AppendLine(
                FormattableString.Invariant(
                    $"| {cell["cell"]} | {setup["model"]} | {setup["corpus"]} | {setup["tokens_per_step"]} | {lr} | "
                )
                    + string.Join(" | ", Arms.Select(a => Summary(finals[a.Arm])))
                    + FormattableString.Invariant($" | {seconds / 60:F0} min |")
            );

            foreach (var plain in Arms.Where(a => a.Ratios == "uniform").Select(a => a.Arm))
            {
                var basis = finals[plain];
                string Compare(string arm)
                {
                    var f = finals[arm];
                    var delta = f.Average() - basis.Average();
                    var verdict =
                        f.Max() < basis.Min() ? "below (counts)"
                        : f.Min() > basis.Max() ? "above (counts)"
                        : "within the spread";
                    var speed = Speedup(Of(arm), basis.Average(), cell["setup"]!["steps"]!.GetValue<int>());
                    return FormattableString.Invariant($"{arm} {delta:+0.000;-0.000}, {verdict}{speed}");
                }
                var autos = goals.Keys.Where(k => k.StartsWith(plain + "+")).ToList();
                verdicts.AppendLine(
                    $"- {cell["cell"]}, against {plain}: {Compare(plain + "+paper")}; {string.Join("; ", autos.Select(Compare))}"
                );
                var paper = finals[plain + "+paper"];
                foreach (var name in autos)
                {
                    var auto = finals[name];
                    if (auto.Any(double.IsInfinity))
                        goals[name].Add($"{cell["cell"]}: diverged at {auto.Count(double.IsInfinity)} seed(s)");
                    else if (auto.Min() > basis.Max())
                        goals[name].Add($"{cell["cell"]}: its range is entirely above {plain}'s");
                    if (
                        paper.Max() < basis.Min()
                        && basis.Average() - auto.Average() < (basis.Average() - paper.Average()) / 2
                    )
                        goals[name]
                            .Add(
                                FormattableString.Invariant(
                                    $"{cell["cell"]}: the paper ratios gain {basis.Average() - paper.Average():F3}, it keeps {basis.Average() - auto.Average():F3} (under half)"
                                )
                            );
                }
            }
            Plots.Save(
                Path.Combine(Docs(), $"{cell["cell"]}.png"),
                FormattableString.Invariant($"{cell["cell"]}: val loss, mean of seeds 1-3 (LR {lr})"),
                Arms.Select(a =>
                        MeanCurve(Of(a.Arm)) is var (steps, losses) ? new Plots.Curve(a.Arm, steps, losses) : null!
                    )
                    .Where(c => c.Steps.Length > 0),
                "val loss"
            );
        }
        text.AppendLine();
        text.AppendLine(
            "Each arm against its plain base (mean to mean; \"counts\" when the seed ranges do not overlap; the speedup is the paper's measure,"
        );
        text.AppendLine(
            "the run's steps over the steps the arm's seed-mean val curve needs to reach the plain base's final mean, where it ends below it):"
        );
        text.AppendLine();
        text.Append(verdicts);
        text.AppendLine();
        text.AppendLine(
            "Goal for auto, per base: in no cell is auto's seed range entirely above its plain base's, and in every cell where the paper"
        );
        text.AppendLine(
            "ratios' range is entirely below the plain base's, auto keeps at least half of that gain (mean to mean)."
        );
        text.AppendLine();
        foreach (var (auto, misses) in goals)
            text.AppendLine(
                cells.Count == 0 ? $"- {auto}: no cell yet"
                : misses.Count == 0 ? $"- {auto}: **met** in all {cells.Count} cells"
                : $"- {auto}: **not met**: {string.Join("; ", misses)}"
            );
        Directory.CreateDirectory(Docs());
        File.WriteAllText(Path.Combine(Docs(), "report.md"), text.ToString());
        Console.WriteLine(text);
    }

    /// <summary>The seed-mean val curve of runs evaluated at the same steps.</summary>
    internal static (double[] Steps, double[] Losses) MeanCurve(IReadOnlyList<JsonNode> runs)
    {
        var curves = runs.Select(r =>
                r["evals"]!
                    .AsArray()
                    .Select(e => (Step: e![0]!.GetValue<double>(), Loss: e[1]!.GetValue<double>()))
                    .ToList()
            )
            .Where(c => c.Count > 0)
            .ToList();
        if (curves.Count == 0 || curves.Count < runs.Count)
            return ([], []);
        var steps = curves[0].Select(p => p.Step).ToArray();
        return (steps, steps.Select((_, i) => curves.Average(c => c[i].Loss)).ToArray());
    }

    /// <summary>", speedup S x": the run's steps over the steps the arm's seed-mean val curve needs to reach the plain
    /// base's final mean (linear between evaluations), when the arm ends below it; empty otherwise.</summary>
    internal static string Speedup(IReadOnlyList<JsonNode> arm, double target, int steps)
    {
        var (at, losses) = MeanCurve(arm);
        if (at.Length == 0 || losses[^1] >= target)
            return "";
        for (var i = 0; i < at.Length; i++)
            if (losses[i] <= target)
            {
                if (i == 0)
                    return FormattableString.Invariant(
                        $", speedup >= {steps / at[0]:F2}x (reached by the first evaluation)"
                    );
                var reached = at[i - 1] + (at[i] - at[i - 1]) * (losses[i - 1] - target) / (losses[i - 1] - losses[i]);
                return FormattableString.Invariant($", speedup {steps / reached:F2}x");
            }
        return "";
    }
}
