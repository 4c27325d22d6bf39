using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;

namespace BlockwiseLR.Benchmarks;

/// <summary>
/// `--bases POINT...` and `--bases report`: do per-block ratios help Lion and Muon as they do (or do not) AdamW, on
/// cells of the batch-size sweep (docs/bases). The runs are the sweep's (same model, data, 150 steps, noise
/// measured every step in every arm alike), so the sweep's AdamW rows at a point are this comparison's AdamW rows. Per
/// point and base: the plain optimizer's LR swept on its own (seed 1; Lion from a tenth of AdamW's best, Muon from
/// AdamW's best, x0.5/x1/x2, widened by factors of 2 while the best is at an edge, up to six times), then at that LR the plain
/// optimizer, the paper ratios and auto ratios at seeds 1-3. At the first point also which ratios Muon wants against
/// AdamW: one block at a time (emb, qk, vo, ffn) at 2, 4 and 8, the others at 1, seeds 1-3. Raw results go to
/// docs/bases/points/NAME.json after every run (a stopped point resumes); the report to docs/bases/report.md.
/// </summary>
static class Bases
{
    public static readonly (string Base, OptimizerKind Plain, OptimizerKind Blockwise, double LrFromAdamW)[] Families =
    [
        ("lion", OptimizerKind.Lion, OptimizerKind.BlockwiseLion, 0.1),
        ("muon", OptimizerKind.Muon, OptimizerKind.BlockwiseMuon, 1.0),
    ];

    static readonly ulong[] Seeds = [1, 2, 3];

    // Lion and Muon's best LRs sit far from where a tenth of AdamW's or AdamW's own put them (both were still at the
    // top edge after two widenings at the first point), so the sweep widens until the best is inside.
    const int MoreLrs = 6;
    static readonly string[] ScanBlocks = ["emb", "qk", "vo", "ffn"];
    static readonly double[] ScanRatios = [2, 4, 8];

    /// <summary>The points run here (the sweep's cheapest two: its runs take seconds and a minute).</summary>
    static readonly string[] PointNames = ["tok1k", "tok4k"];

    static string Docs() => Path.Combine(Study.Root(), "docs", "bases");

    static string FileOf(string point) => Path.Combine(Docs(), "points", $"{point}.json");

    static string SweepFileOf(string point) => Path.Combine(Study.Root(), "docs", "sweep", "points", $"{point}.json");

    static IReadOnlyList<Sweep.Point> Points => Sweep.Points.Where(p => PointNames.Contains(p.Name)).ToList();

    static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    public static void Run(IReadOnlyList<string> names)
    {
        if (names.Count == 1 && names[0] == "report")
        {
            Report();
            return;
        }
        Directory.CreateDirectory(Path.Combine(Docs(), "points"));
        foreach (var point in ResultFile.Chosen(names, Points, p => p.Name, "point"))
            RunPoint(point);
        Report();
    }

    static JsonNode SweepPoint(string point) =>
        File.Exists(SweepFileOf(point))
        && JsonNode.Parse(File.ReadAllText(SweepFileOf(point))) is { } json
        && json["complete"]?.GetValue<bool>() == true
            ? json
            : throw new InvalidOperationException(
                $"run `--sweep {point}` first: its AdamW rows and best LR are this comparison's"
            );

    static void RunPoint(Sweep.Point point)
    {
        var adamw = SweepPoint(point.Name);
        var adamwLr = adamw["baseline_lr"]!.GetValue<double>();
        var data = Study.Data("gutenberg");
        var results = new ResultFile(
            FileOf(point.Name),
            new JsonObject { ["point"] = point.Name },
            adamw["setup"]!.DeepClone().AsObject()
        );
        JsonObject Get(OptimizerKind optimizer, string ratios, double lr, ulong seed) =>
            results.Get(optimizer, ratios, lr, seed, adamwLr, () =>
                Sweep.Train(point, data, optimizer, ratios, lr, seed)
            );

        Console.WriteLine($"point {point.Name}: AdamW's best LR {adamwLr} (from the sweep)");
        var best = new JsonObject { ["adamw"] = adamwLr };
        foreach (var (name, plain, blockwise, scale) in Families)
        {
            var centre = adamwLr * scale;
            var (sweep, lrBest) = Study.SweepLr([centre / 2, centre, centre * 2], MoreLrs, lr =>
                Get(plain, "uniform", lr, Seeds[0])
            );
            best[name] = lrBest;
            Console.WriteLine($"  {name} sweep: {Study.Describe(sweep)}; best {lrBest}");
            foreach (var (arm, kind, ratios) in Arms(plain, blockwise))
            {
                var finals = Seeds.Select(seed => Study.Final(Get(kind, ratios, lrBest, seed))).ToList();
                Console.WriteLine(F($"  {name + arm, -14} {string.Join("  ", finals.Select(f => f.ToString("F4")))}"));
            }
        }
        if (point.Name == PointNames[0])
            foreach (
                var (name, kind, lr) in new[]
                {
                    ("adamw", OptimizerKind.BlockwiseAdamW, adamwLr),
                    ("muon", OptimizerKind.BlockwiseMuon, best["muon"]!.GetValue<double>()),
                }
            )
            foreach (var block in ScanBlocks)
            foreach (var ratio in ScanRatios)
            {
                var finals = Seeds.Select(seed => Study.Final(Get(kind, F($"{block}={ratio}"), lr, seed))).ToList();
                Console.WriteLine(
                    F($"  {name} {block}={ratio}: {string.Join("  ", finals.Select(f => f.ToString("F4")))}")
                );
            }
        results.Save(adamwLr, true);
        var bestFile = Path.Combine(Docs(), "points", $"{point.Name}.best.json");
        File.WriteAllText(bestFile, best.ToJsonString(new() { WriteIndented = true }));
    }

    static (string Arm, OptimizerKind Kind, string Ratios)[] Arms(OptimizerKind plain, OptimizerKind blockwise) =>
        [("", plain, "uniform"), ("+paper", blockwise, "paper"), ("+auto", blockwise, "auto-0.3")];

    sealed record Row(string Name, double Lr, List<double> Finals)
    {
        public string Summary =>
            Finals.Count == 0 ? "-"
            : Finals.Any(double.IsInfinity) ? "diverged"
            : F($"{Finals.Average():F3} ({Finals.Min():F3}..{Finals.Max():F3})");
    }

    static List<double> FinalsOf(JsonNode part, OptimizerKind kind, string ratios, double lr) =>
        ResultFile.RunsOf(part, OptionNames.Format(kind), ratios, lr).Select(Study.Final).ToList();

    /// <summary>docs/bases/report.md from the points' raw results and the sweep's AdamW rows.</summary>
    static void Report()
    {
        var md = new StringBuilder();
        md.AppendLine("# Do per-block ratios help Lion and Muon?");
        md.AppendLine();
        md.AppendLine(
            "Generated by `dotnet benchmarks/bin/Release/net10.0/Benchmarks.dll --bases report` from docs/bases/points "
                + "and the batch-size sweep's AdamW rows (docs/sweep/points): the same model (GPT-2, 2 layers, width 64, "
                + "2 heads), corpus, 64-token sequences and 150 steps. Final validation loss, mean (min..max) over seeds 1-3; "
                + "each base at its own best plain LR (seed 1, swept by factors of 2)."
        );
        foreach (var point in Points)
        {
            if (!File.Exists(FileOf(point.Name)))
                continue;
            var part = JsonNode.Parse(File.ReadAllText(FileOf(point.Name)))!;
            var sweep = JsonNode.Parse(File.ReadAllText(SweepFileOf(point.Name)))!;
            var adamwLr = sweep["baseline_lr"]!.GetValue<double>();
            md.AppendLine();
            md.AppendLine(
                F(
                    $"## {point.Name}: {point.BatchSize} x {Sweep.SeqLen} = {point.BatchSize * Sweep.SeqLen:N0} tokens per step{(part["complete"]?.GetValue<bool>() == true ? "" : " (in progress)")}"
                )
            );
            md.AppendLine();
            md.AppendLine("| base | LR | plain | + paper ratios | + auto ratios | paper - plain | auto - plain |");
            md.AppendLine("|---|---|---|---|---|---|---|");
            var bases = new List<(string Name, JsonNode Part, OptimizerKind Plain, OptimizerKind Blockwise, double Lr)>
            {
                ("adamw", sweep, OptimizerKind.AdamW, OptimizerKind.BlockwiseAdamW, adamwLr),
            };
            foreach (var (name, plain, blockwise, _) in Families)
            {
                var sweepRuns = part["runs"]!
                    .AsArray()
                    .Where(r =>
                        r!["optimizer"]!.GetValue<string>() == OptionNames.Format(plain)
                        && r["seed"]!.GetValue<ulong>() == 1
                    )
                    .ToList();
                if (sweepRuns.Count == 0)
                    continue;
                bases.Add(
                    (name, part, plain, blockwise, sweepRuns.MinBy(r => Study.Final(r!))!["lr"]!.GetValue<double>())
                );
            }
            foreach (var (name, source, plain, blockwise, lr) in bases)
            {
                var rows = Arms(plain, blockwise)
                    .Select(a => new Row(name + a.Arm, lr, FinalsOf(source, a.Kind, a.Ratios, lr)))
                    .ToList();
                string Delta(Row r) =>
                    r.Finals.Count == 0 || rows[0].Finals.Count == 0
                        ? "-"
                        : F($"{r.Finals.Average() - rows[0].Finals.Average():+0.000;-0.000}");
                md.AppendLine(
                    F(
                        $"| {name} | {lr:G3} | {rows[0].Summary} | {rows[1].Summary} | {rows[2].Summary} | {Delta(rows[1])} | {Delta(rows[2])} |"
                    )
                );
            }
            md.AppendLine();
            md.AppendLine("LR sweeps (seed 1, plain optimizer):");
            md.AppendLine();
            foreach (var (name, source, plain, _, _) in bases)
            {
                var runs = source["runs"]!
                    .AsArray()
                    .Where(r =>
                        r!["optimizer"]!.GetValue<string>() == OptionNames.Format(plain)
                        && r["ratios"]!.GetValue<string>() == "uniform"
                        && r["seed"]!.GetValue<ulong>() == 1
                    )
                    .OrderBy(r => r!["lr"]!.GetValue<double>());
                md.AppendLine(
                    $"- {name}: "
                        + string.Join(
                            ", ",
                            runs.Select(r => F($"{r!["lr"]!.GetValue<double>():G3} -> {Study.Final(r!):F4}"))
                        )
                );
            }
            var scans = part["runs"]!
                .AsArray()
                .Where(r => r!["ratios"]!.GetValue<string>() is var s && ScanBlocks.Any(b => s.StartsWith(b + "=")))
                .ToList();
            if (scans.Count == 0)
                continue;
            md.AppendLine();
            md.AppendLine(
                "Which ratios each base wants: one block's ratio at a time, the others at 1 (the plain optimizer is "
                    + "ratio 1), each base at its best LR, mean over seeds 1-3 minus the plain optimizer's mean "
                    + "(negative: the ratio helps):"
            );
            md.AppendLine();
            md.AppendLine("| base | block | x2 | x4 | x8 |");
            md.AppendLine("|---|---|---|---|---|");
            foreach (var (name, source, plain, blockwise, lr) in bases.Where(b => b.Name != "lion"))
            {
                var plainMean = FinalsOf(source, plain, "uniform", lr) is { Count: > 0 } p ? p.Average() : double.NaN;
                foreach (var block in ScanBlocks)
                {
                    var cells = ScanRatios.Select(ratio =>
                    {
                        var finals = FinalsOf(part, blockwise, F($"{block}={ratio}"), lr);
                        return finals.Count == 0 ? "-"
                            : finals.Any(double.IsInfinity) ? "diverged"
                            : F(
                                $"{finals.Average() - plainMean:+0.000;-0.000} ({finals.Min() - plainMean:+0.00;-0.00}..{finals.Max() - plainMean:+0.00;-0.00})"
                            );
                    });
                    md.AppendLine($"| {name} | {block} | {string.Join(" | ", cells)} |");
                }
            }
        }
        File.WriteAllText(Path.Combine(Docs(), "report.md"), md.ToString());
        Console.WriteLine($"wrote {Path.Combine(Docs(), "report.md")}");
    }
}
