using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Models;
using BlockwiseLR.Reporting;
using BlockwiseLR.Training;

namespace BlockwiseLR.Benchmarks;

/// <summary>
/// `--sweep POINT...` and `--sweep report`: the batch-size sweep of the noise-scale issue (docs/sweep). One model (a
/// GPT-2 of 2 layers, width 64, 2 heads: every block of gpt2-tiny at a quarter of its cost) on the built-in corpus
/// with the study's 4,000-piece tokenizer, 64-token sequences, 150 steps at every point, tokens per step a factor of
/// 4 apart. At each point: AdamW at three LRs (seed 1) centred on the previous point's best times sqrt(4), widened
/// by factors of 2 (at most twice) while the best is at an edge; then at seeds 1-3 and that LR, AdamW, the paper
/// ratios and auto ratios (the default, noise-aware), and at the smallest and the largest point Adam-mini with and
/// without the paper ratios. Every run logs the gradient-noise scale every step (the measured batch runs in two
/// halves in every arm alike). A point's raw results are written to docs/sweep/points/NAME.json after every run
/// (a stopped point resumes); the report (docs/sweep/report.md, sweep.png, map.json) is rebuilt from them.
/// </summary>
static class Sweep
{
    public sealed record Point(string Name, int BatchSize);

    public static IReadOnlyList<Point> Points { get; } =
    [new("tok1k", 16), new("tok4k", 64), new("tok16k", 256), new("tok64k", 1024)];

    public const string Model = "gpt2-tiny";
    public static readonly ModelOverrides Overrides = new()
    {
        Layers = 2,
        Width = 64,
        Heads = 2,
    };
    public const int SeqLen = 64;
    public const int Steps = 150;
    static readonly double[] FirstLrs = [2e-3, 4e-3, 8e-3];
    const int MoreLrs = 2;
    static readonly ulong[] Seeds = [1, 2, 3];

    public static readonly (string Arm, OptimizerKind Optimizer, string Ratios, bool EndsOnly)[] Arms =
    [
        ("adamw", OptimizerKind.AdamW, "uniform", false),
        ("adamw+paper", OptimizerKind.BlockwiseAdamW, "paper", false),
        // Auto as version 0.3 runs it by default (noise-aware, with the regime factor).
        ("adamw+auto", OptimizerKind.BlockwiseAdamW, "auto-0.3", false),
        ("adam-mini", OptimizerKind.AdamMini, "uniform", true),
        ("adam-mini+paper", OptimizerKind.BlockwiseAdamMini, "paper", true),
    ];

    static string Docs() => Path.Combine(Study.Root(), "docs", "sweep");

    static string FileOf(Point point) => Path.Combine(Docs(), "points", $"{point.Name}.json");

    public static void Run(IReadOnlyList<string> names)
    {
        if (names.Count == 1 && names[0] == "report")
        {
            SweepReport.Write(Docs());
            return;
        }
        var points = ResultFile.Chosen(names, Points, p => p.Name, "point");
        Directory.CreateDirectory(Path.Combine(Docs(), "points"));
        foreach (var point in points)
            RunPoint(point);
        SweepReport.Write(Docs());
    }

    internal static JsonObject Train(
        Point point,
        string data,
        OptimizerKind optimizer,
        string ratios,
        double lr,
        ulong seed
    )
    {
        var options = new PretrainOptions
        {
            Model = new() { Name = Model, Overrides = Overrides },
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
                BatchSize = point.BatchSize,
                SeqLen = SeqLen,
                Seed = seed,
            },
            Evaluation = new() { Every = 25, Windows = 32 },
            Debug = new() { NoiseScaleEvery = 1 },
        };
        return Study
            .Record(options, ratios, (result, entry) =>
            {
                // The whole model's noise scale (tokens) every 5 steps, and auto's ratios at the end.
                // Steps done (ReadMetrics reads files numbered from 0 by earlier versions as steps done too).
                var noise = MetricsWriter
                    .ReadMetrics(result.MetricsPath)
                    .Where(n => n["step"]!.GetValue<int>() % 5 == 0 && n["noise_scale"] is JsonObject)
                    .Select(n =>
                        (JsonNode)new JsonArray(n["step"]!.GetValue<int>(), n["noise_scale"]!["all"]?.DeepClone())
                    );
                entry["noise_scale"] = new JsonArray(noise.ToArray());
                var last = File.ReadLines(result.MetricsPath).Last();
                if (JsonNode.Parse(last)!["ratio"] is JsonObject ratio)
                    entry["auto_end"] = ratio.DeepClone();
            })
            .Entry;
    }

    static void RunPoint(Point point)
    {
        var data = Study.Data("gutenberg");
        var file = FileOf(point);
        var index = Points.ToList().IndexOf(point);
        var setup = new JsonObject
        {
            ["model"] = Model,
            ["overrides"] = "layers=2,width=64,heads=2",
            ["corpus"] = "gutenberg",
            ["tokenizer"] = TextTokenizers.BuiltinSmall,
            ["batch_size"] = point.BatchSize,
            ["seq_len"] = SeqLen,
            ["tokens_per_step"] = point.BatchSize * SeqLen,
            ["steps"] = Steps,
        };
        var results = new ResultFile(file, new JsonObject { ["point"] = point.Name }, setup);
        JsonObject Get(OptimizerKind optimizer, string ratios, double lr, ulong seed, double? baseline) =>
            results.Get(optimizer, ratios, lr, seed, baseline, () => Train(point, data, optimizer, ratios, lr, seed));

        // The LR sweep starts from the previous point's best times sqrt(4) (the square-root rule for Adam below the
        // critical batch), the first point from the study's range for a model this size.
        var previous =
            index > 0 && File.Exists(FileOf(Points[index - 1]))
                ? JsonNode.Parse(File.ReadAllText(FileOf(Points[index - 1])))!["baseline_lr"]?.GetValue<double>()
                : null;
        if (index > 0 && previous is null)
            throw new InvalidOperationException(
                $"run point {Points[index - 1].Name} first: its best LR starts this one's sweep"
            );
        var centre = previous is { } p
            ? p * Math.Sqrt((double)point.BatchSize / Points[index - 1].BatchSize)
            : FirstLrs[1];
        Console.WriteLine($"point {point.Name}: {point.BatchSize} x {SeqLen} tokens per step");
        var (sweep, best) = Study.SweepLr([centre / 2, centre, centre * 2], MoreLrs, lr =>
            Get(OptimizerKind.AdamW, "uniform", lr, Seeds[0], null)
        );
        Console.WriteLine($"  AdamW sweep: {Study.Describe(sweep)}; best {best}");
        var ends = index == 0 || index == Points.Count - 1;
        foreach (var (arm, optimizer, ratios, endsOnly) in Arms)
        {
            if (endsOnly && !ends)
                continue;
            var finals = Seeds.Select(seed => Study.Final(Get(optimizer, ratios, best, seed, best))).ToList();
            Console.WriteLine(
                $"  {arm, -16} {string.Join("  ", finals.Select(f => f.ToString("F4", CultureInfo.InvariantCulture)))}"
            );
        }
        results.Save(best, true);
    }
}
