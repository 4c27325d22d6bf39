using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Training;

namespace BlockwiseLR.Benchmarks;

/// <summary>
/// `--study CELL...` and `--study report`: the auto-ratio study of the sharpness issue, one cell at a time, each
/// cell's raw results written as JSON into docs/study/cells/, the report (docs/study/report.md) rebuilt from
/// whatever cells are there. A cell is a model shape, tokens per step and corpus. In each: AdamW at three base LRs
/// (seed 1; the best final val loss is the baseline LR, tuned as the paper tuned its), then at seeds 1-3 and that LR:
/// AdamW, Blockwise AdamW with the paper's ratios and with auto ratios, Adam-mini, and Adam-mini with the paper's
/// and with auto ratios; 150 steps, cosine to LR/20 after 15 warmup steps, val loss on 32 windows every 25 steps.
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

    static readonly double[] Lrs = [5e-4, 1e-3, 2e-3];
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
    ];

    static string Docs()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Hybrid.sln"))) return Path.Combine(dir.FullName, "docs", "study");
        throw new DirectoryNotFoundException("no Hybrid.sln above the benchmark");
    }

    public static void Run(IReadOnlyList<string> names)
    {
        if (names.Count == 1 && names[0] == "report") { Report(); return; }
        var cells = names.Count == 0 ? Cells : names.Select(n => Cells.FirstOrDefault(c => c.Name == n)
            ?? throw new ArgumentException($"unknown cell {n} (known: {string.Join(", ", Cells.Select(c => c.Name))}, or report)")).ToList();
        Directory.CreateDirectory(Path.Combine(Docs(), "cells"));
        foreach (var cell in cells) RunCell(cell);
        Report();
    }

    static string Data(string corpus)
    {
        var folder = Path.Combine(Path.GetTempPath(), $"blr-study-{corpus}");
        if (File.Exists(Path.Combine(folder, "manifest.json"))) return folder;
        if (corpus == "gutenberg") ShardPreparer.Run(new PrepareOptions { Builtin = "gutenberg", OutputDirectory = folder, Overwrite = true });
        else
        {
            // Sections 1, 5 and 8 of the installed manual pages (the manpages and manpages-dev packages and whatever
            // else is installed), gzipped troff, each page a document.
            var pages = new[] { "man1", "man5", "man8" }.Select(s => Path.Combine("/usr/share/man", s)).Where(Directory.Exists).ToArray();
            if (pages.Length == 0) throw new DirectoryNotFoundException("no /usr/share/man: install Debian's manpages package");
            ShardPreparer.Run(new PrepareOptions { Inputs = pages, Corpus = new CorpusOptions { Glob = "*.gz", ReplaceInvalidUtf8 = true }, OutputDirectory = folder, Overwrite = true });
        }
        return folder;
    }

    static JsonObject Train(Cell cell, string data, OptimizerKind optimizer, string ratios, double lr, ulong seed)
    {
        var run = Directory.CreateTempSubdirectory("blr-study-").FullName;
        var clock = Stopwatch.StartNew();
        var result = Pretrainer.Run(new PretrainOptions
        {
            Data = data, Model = cell.Model, Optimizer = optimizer, Ratios = ratios == "auto" ? BlockRatios.Auto() : BlockRatios.Parse(ratios),
            Lr = lr, Steps = Steps, WarmupSteps = Steps / 10, BatchSize = cell.BatchSize, SeqLen = cell.SeqLen,
            EvalEvery = 25, EvalWindows = 32, Seed = seed, Out = run,
        });
        Directory.Delete(run, true);
        return new JsonObject
        {
            ["optimizer"] = OptionNames.Format(optimizer), ["ratios"] = ratios, ["lr"] = lr, ["seed"] = seed, ["seconds"] = clock.Elapsed.TotalSeconds,
            ["final"] = result.FinalValLoss,
            ["evals"] = new JsonArray(result.Evals.Select(e => (JsonNode)new JsonArray(e.Step, e.ValLoss)).ToArray()),
        };
    }

    static void RunCell(Cell cell)
    {
        var data = Data(cell.Corpus);
        Console.WriteLine($"cell {cell.Name}: {cell.Model}, {cell.BatchSize} x {cell.SeqLen} tokens per step, {cell.Corpus}");
        var sweep = Lrs.Select(lr => Train(cell, data, OptimizerKind.AdamW, "uniform", lr, Seeds[0])).ToList();
        var best = sweep.MinBy(r => r["final"]!.GetValue<double>())!["lr"]!.GetValue<double>();
        Console.WriteLine($"  AdamW sweep: {string.Join(", ", sweep.Select(r => FormattableString.Invariant($"lr {r["lr"]} -> {r["final"]!.GetValue<double>():F4}")))}; baseline LR {best}");
        var arms = new JsonObject();
        foreach (var (arm, optimizer, ratios) in Arms)
        {
            var runs = Seeds.Select(seed => arm == "adamw" && seed == Seeds[0] ? sweep.First(r => r["lr"]!.GetValue<double>() == best).DeepClone().AsObject()
                : Train(cell, data, optimizer, ratios, best, seed)).ToList();
            arms[arm] = new JsonArray(runs.Cast<JsonNode>().ToArray());
            Console.WriteLine($"  {arm,-16} {string.Join("  ", runs.Select(r => r["final"]!.GetValue<double>().ToString("F4", CultureInfo.InvariantCulture)))}");
        }
        var json = new JsonObject
        {
            ["cell"] = cell.Name, ["model"] = cell.Model, ["corpus"] = cell.Corpus, ["batch_size"] = cell.BatchSize, ["seq_len"] = cell.SeqLen,
            ["tokens_per_step"] = cell.BatchSize * cell.SeqLen, ["steps"] = Steps, ["baseline_lr"] = best,
            ["machine"] = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
            ["code"] = Pretrainer.CodeVersion, ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            ["sweep"] = new JsonArray(sweep.Cast<JsonNode>().ToArray()), ["arms"] = arms,
        };
        File.WriteAllText(Path.Combine(Docs(), "cells", $"{cell.Name}.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>docs/study/report.md from the cells' JSON: final val loss as mean (min..max) over seeds per arm, and
    /// for each base whether auto and the paper ratios are above or below their plain base beyond the seed spread.</summary>
    static void Report()
    {
        var files = Directory.Exists(Path.Combine(Docs(), "cells")) ? Directory.GetFiles(Path.Combine(Docs(), "cells"), "*.json").Order(StringComparer.Ordinal).ToList() : [];
        var text = new StringBuilder();
        text.AppendLine("# Auto ratios against AdamW and Adam-mini, cell by cell");
        text.AppendLine();
        text.AppendLine($"Rebuilt by `dotnet benchmarks/bin/Release/net10.0/Benchmarks.dll --study report` from {files.Count} of {Cells.Count} cells in `docs/study/cells/`;");
        text.AppendLine("a cell runs with `--study CELL`. Final val loss after 150 steps, mean (min..max) over seeds 1-3 at the cell's best AdamW LR.");
        text.AppendLine("A difference counts only when the seed ranges do not overlap. A CPU cannot reach the paper's 0.3-0.5M tokens per step: these cells are 256 and 1,024.");
        text.AppendLine();
        text.AppendLine("| cell | tokens/step | LR | " + string.Join(" | ", Arms.Select(a => a.Arm)) + " | cost |");
        text.AppendLine("|---|---|---|" + string.Concat(Arms.Select(_ => "---|")) + "---|");
        foreach (var file in files)
        {
            var cell = JsonNode.Parse(File.ReadAllText(file))!;
            var arms = cell["arms"]!.AsObject();
            string Summary(string arm)
            {
                var finals = arms[arm]!.AsArray().Select(r => r!["final"]!.GetValue<double>()).ToList();
                return FormattableString.Invariant($"{finals.Average():F3} ({finals.Min():F3}..{finals.Max():F3})");
            }
            var seconds = cell["sweep"]!.AsArray().Concat(arms.SelectMany(a => a.Value!.AsArray())).Sum(r => r!["seconds"]!.GetValue<double>());
            text.AppendLine(FormattableString.Invariant($"| {cell["cell"]} | {cell["tokens_per_step"]} | {cell["baseline_lr"]} | ") +
                string.Join(" | ", Arms.Select(a => Summary(a.Arm))) + FormattableString.Invariant($" | {seconds / 60:F0} min |"));
        }
        Directory.CreateDirectory(Docs());
        File.WriteAllText(Path.Combine(Docs(), "report.md"), text.ToString());
        Console.WriteLine(text);
    }
}
