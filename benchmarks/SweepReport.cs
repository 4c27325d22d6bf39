using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Reporting;
using BlockwiseLR.Training;

namespace BlockwiseLR.Benchmarks;

/// <summary>docs/sweep/report.md, sweep.png (the map), noise.png (B_noise over training) and map.json (what
/// `blr demo` shows) from the points' raw results in docs/sweep/points; and the goal for auto ratios checked at every
/// point and at every cell of the earlier study (docs/study/cells, its auto-0.3 arms).</summary>
static class SweepReport
{
    static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    sealed record Arm(string Name, List<JsonNode> Runs)
    {
        public List<double> Finals => Runs.Select(Study.Final).ToList();
        public double Mean => Finals.Average();
        public double Min => Finals.Min();
        public double Max => Finals.Max();
        public bool Diverged => Finals.Any(double.IsInfinity);

        public string Summary =>
            Runs.Count == 0 ? "-"
            : Diverged ? $"diverged at {Finals.Count(double.IsInfinity)} seed(s)"
            : F($"{Mean:F3} ({Min:F3}..{Max:F3})");
    }

    static Arm ArmOf(JsonNode point, string arm, double lr)
    {
        var (_, optimizer, ratios, _) = Sweep.Arms.First(a => a.Arm == arm);
        return new Arm(arm, ResultFile.RunsOf(point, OptionNames.Format(optimizer), ratios, lr));
    }

    /// <summary>The whole model's noise scale (tokens) a run logged: (step, tokens) where estimated.</summary>
    static List<(double Step, double Tokens)> Noise(JsonNode run) =>
        run["noise_scale"]!
            .AsArray()
            .Where(e => e![1] is not null)
            .Select(e => (e![0]!.GetValue<double>(), e[1]!.GetValue<double>()))
            .ToList();

    /// <summary>A point's B_noise: the median of its tuned AdamW runs' (3 seeds) readings over the second half of
    /// training, where the loss and B_noise have settled most.</summary>
    static double NoiseScaleOf(Arm adamw) =>
        ResultFile.Median(
            adamw.Runs.SelectMany(r => Noise(r).Where(n => n.Step > Sweep.Steps / 2).Select(n => n.Tokens))
        );

    static string Verdict(Arm arm, Arm basis) =>
        arm.Max < basis.Min ? "below (counts)"
        : arm.Min > basis.Max ? "above (counts)"
        : "within the spread";

    /// <summary>The two-sided 95% quantile of Student's t with <paramref name="df"/> degrees of freedom.</summary>
    static double T95(int df) =>
        df switch
        {
            1 => 12.706,
            2 => 4.303,
            3 => 3.182,
            4 => 2.776,
            5 => 2.571,
            6 => 2.447,
            7 => 2.365,
            8 => 2.306,
            _ => 2.0,
        };

    /// <summary>Least squares y = a + b x with the standard errors of a and b.</summary>
    static (double A, double B, double SeA, double SeB) Fit(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        var n = x.Count;
        var (mx, my) = (x.Average(), y.Average());
        var sxx = x.Sum(v => (v - mx) * (v - mx));
        var b = x.Zip(y).Sum(p => (p.First - mx) * (p.Second - my)) / sxx;
        var a = my - b * mx;
        var residual = x.Zip(y).Sum(p => Math.Pow(p.Second - a - b * p.First, 2));
        var s2 = n > 2 ? residual / (n - 2) : double.NaN;
        return (a, b, Math.Sqrt(s2 * (1.0 / n + mx * mx / sxx)), Math.Sqrt(s2 / sxx));
    }

    public static void Write(string docs)
    {
        var folder = Path.Combine(docs, "points");
        var points = (Directory.Exists(folder) ? Directory.GetFiles(folder, "*.json") : [])
            .Select(f => JsonNode.Parse(File.ReadAllText(f))!)
            .Where(p => p["complete"]?.GetValue<bool>() == true)
            .OrderBy(p => p["setup"]!["tokens_per_step"]!.GetValue<int>())
            .ToList();
        var text = new StringBuilder();
        text.AppendLine("# Where the ratios pay: a batch-size sweep in units of the gradient-noise scale");
        text.AppendLine();
        text.AppendLine(
            F(
                $"Rebuilt by `dotnet benchmarks/bin/Release/net10.0/Benchmarks.dll --sweep report` from {points.Count} of {Sweep.Points.Count} points in `docs/sweep/points/` (a point runs with `--sweep NAME`, in order, since each starts its LR sweep from the previous point's best)."
            )
        );
        text.AppendLine(
            F(
                $"Model: {Sweep.Model} with layers=2, width=64, heads=2 (every block of GPT-2: embedding, positions, QK, VO, FFN, norms; 0.36M parameters, 258K of them the tied embedding), the built-in corpus with the 4,000-piece `gutenberg-bpe4k`, sequences of {Sweep.SeqLen} tokens, {Sweep.Steps} steps at every point, 15 warmup, cosine to LR/20, val loss on 32 windows every 25 steps."
            )
        );
        text.AppendLine(
            "AdamW's LR is swept at seed 1 over three values centred on the previous point's best times sqrt(4) (widened by factors of 2 while the best is at an edge); at the best, seeds 1-3 of AdamW, Blockwise AdamW with the paper's ratios and with auto ratios (the default rule, noise-aware), and at the smallest and largest point Adam-mini with and without the paper ratios. Every run logs the gradient-noise scale every step (its batch runs in two halves in every arm alike)."
        );
        text.AppendLine(
            "B_noise is the simple noise scale tr(Sigma) / |G|^2 in tokens (docs/method.md section 10): the median of the three tuned AdamW runs' readings over the second half of training. Final val loss: mean (min..max) over seeds; a difference counts when the seed ranges do not overlap."
        );
        text.AppendLine();
        text.AppendLine(
            "| tokens/step | B_noise (tokens) | B/B_noise | LR | adamw | adamw+paper | adamw+auto | adam-mini | adam-mini+paper | cost |"
        );
        text.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        var verdicts = new StringBuilder();
        var goal = new StringBuilder();
        var mapPoints = new List<SweepPoint>();
        var noiseCurves = new List<Plots.Curve>();
        var seconds = 0.0;
        foreach (var point in points)
        {
            var tokens = point["setup"]!["tokens_per_step"]!.GetValue<int>();
            var lr = point["baseline_lr"]!.GetValue<double>();
            var arms = Sweep.Arms.ToDictionary(a => a.Arm, a => ArmOf(point, a.Arm, lr));
            var (adamw, paper, auto) = (arms["adamw"], arms["adamw+paper"], arms["adamw+auto"]);
            var bNoise = NoiseScaleOf(adamw);
            var ratio = tokens / bNoise;
            var cost = point["runs"]!.AsArray().Sum(r => r!["seconds"]!.GetValue<double>());
            seconds += cost;
            text.AppendLine(
                F($"| {tokens:N0} | {bNoise:N0} | {ratio:0.00} | {lr} | ")
                    + string.Join(" | ", Sweep.Arms.Select(a => arms[a.Arm].Summary))
                    + F($" | {cost / 60:F0} min |")
            );
            string Against(Arm arm, Arm basis) =>
                F($"{arm.Name} {arm.Mean - basis.Mean:+0.000;-0.000}, {Verdict(arm, basis)}")
                + Study.Speedup(arm.Runs, basis.Mean, Sweep.Steps);
            verdicts.AppendLine(
                F(
                    $"- {tokens:N0} tokens/step (B/B_noise {ratio:0.00}): {Against(paper, adamw)}; {Against(auto, adamw)}"
                )
            );
            if (arms["adam-mini"].Runs.Count > 0)
                verdicts.AppendLine(
                    F(
                        $"- {tokens:N0} tokens/step, Adam-mini: {Against(arms["adam-mini+paper"], arms["adam-mini"])}; adam-mini against adamw {arms["adam-mini"].Mean - adamw.Mean:+0.000;-0.000}"
                    )
                );
            goal.AppendLine(F($"- {tokens:N0} tokens/step: ") + Goal(auto, paper, adamw));
            SweepGap Gap(Arm arm) => new(arm.Mean - adamw.Mean, arm.Min - adamw.Mean, arm.Max - adamw.Mean);
            mapPoints.Add(
                new SweepPoint(
                    tokens,
                    Math.Round(bNoise),
                    Math.Round(ratio, 3),
                    Math.Round(adamw.Mean, 4),
                    Gap(paper),
                    Gap(auto)
                )
            );
            // Seed 1's readings (the positive ones: 0 is a tr(Sigma) estimate at or below 0) and the point's tokens
            // per step as a thin line of the same colour.
            var noise = Noise(adamw.Runs[0]).Where(n => n.Tokens > 0).ToList();
            noiseCurves.Add(
                new Plots.Curve(
                    F($"{tokens:N0} tokens/step"),
                    noise.Select(n => n.Step).ToArray(),
                    noise.Select(n => Math.Log10(n.Tokens)).ToArray()
                )
            );
            noiseCurves.Add(
                new Plots.Curve(
                    F($"B = {tokens:N0}"),
                    [0, Sweep.Steps],
                    [Math.Log10(tokens), Math.Log10(tokens)],
                    Thin: true,
                    ColorOf: noiseCurves.Count - 1
                )
            );
        }
        text.AppendLine();
        text.AppendLine(
            F($"Cost: {seconds / 3600:F1} h of this machine ({(points.Count > 0 ? points[0]["machine"] : "")}).")
        );
        text.AppendLine();
        text.AppendLine(
            "Each arm against tuned AdamW (mean to mean; the speedup is the paper's measure, the run's steps over the steps the arm's seed-mean val curve needs to reach AdamW's final mean, where it ends below it):"
        );
        text.AppendLine();
        text.Append(verdicts);
        text.AppendLine();
        text.Append(Movement(points));
        Trend(text, mapPoints);
        text.AppendLine("## The goal for auto ratios");
        text.AppendLine();
        text.AppendLine(
            "Auto's seed range is never entirely above tuned AdamW's, and where the paper ratios win beyond the spread, auto keeps at least half of that gain (mean to mean). At each point of the sweep:"
        );
        text.AppendLine();
        text.Append(goal);
        text.AppendLine();
        text.AppendLine(
            "At each cell of the earlier study (docs/study/report.md), its auto-0.3 arms: auto as version 0.3 runs it by default (the first half of the batch against the whole for the noise correction, the regime factor B / (B + B_noise), an auto ratio r giving the LR fixed ratios at r give), each against its plain base:"
        );
        text.AppendLine();
        text.Append(StudyGoal(docs));
        var map = new SweepMap(
            "GPT-2 2x64 (every block), gutenberg-bpe4k",
            Sweep.Steps,
            points.Count > 0 ? "this repository's 2-core AMD EPYC VM" : "",
            mapPoints
        );
        if (points.Count > 0)
        {
            File.WriteAllText(Path.Combine(docs, "map.json"), map.ToJson());
            map.Draw(Path.Combine(docs, "sweep.png"));
            Plots.Save(
                Path.Combine(docs, "noise.png"),
                "B_noise over training (tuned AdamW, seed 1) and each point's batch",
                noiseCurves,
                "log10 B_noise (tokens)"
            );
        }
        text.AppendLine();
        text.AppendLine("![the map](sweep.png)");
        text.AppendLine();
        text.AppendLine("![B_noise over training](noise.png)");
        File.WriteAllText(Path.Combine(docs, "report.md"), text.ToString());
        Console.WriteLine(text);
        Console.WriteLine(map.Table());
    }

    /// <summary>How B_noise moves as the loss falls: per point, at every evaluation, the median reading of the
    /// tuned AdamW runs over the 25 steps up to it, beside their mean val loss there.</summary>
    static string Movement(List<JsonNode> points)
    {
        var text = new StringBuilder();
        text.AppendLine("## B_noise as the loss falls");
        text.AppendLine();
        text.AppendLine(
            "Tuned AdamW at each point, seeds 1-3: the median B_noise reading (tokens) over the 25 steps up to each evaluation, and the mean val loss there."
        );
        text.AppendLine();
        var steps = Enumerable.Range(1, Sweep.Steps / 25).Select(i => i * 25).ToList();
        text.AppendLine("| tokens/step | " + string.Join(" | ", steps.Select(s => F($"step {s}"))) + " |");
        text.AppendLine("|---|" + string.Concat(steps.Select(_ => "---|")));
        foreach (var point in points)
        {
            var lr = point["baseline_lr"]!.GetValue<double>();
            var adamw = ArmOf(point, "adamw", lr);
            var cells = steps.Select(step =>
            {
                var noise = ResultFile.Median(
                    adamw.Runs.SelectMany(r =>
                        Noise(r).Where(n => n.Step > step - 25 && n.Step <= step).Select(n => n.Tokens)
                    )
                );
                var loss = adamw
                    .Runs.Select(r =>
                        r["evals"]!
                            .AsArray()
                            .FirstOrDefault(e => e![0]!.GetValue<int>() == step)
                            ?[1]?.GetValue<double>()
                    )
                    .OfType<double>()
                    .DefaultIfEmpty(double.NaN)
                    .Average();
                return F($"{noise:N0} ({loss:F2})");
            });
            text.AppendLine(
                F($"| {point["setup"]!["tokens_per_step"]!.GetValue<int>():N0} | ") + string.Join(" | ", cells) + " |"
            );
        }
        text.AppendLine();
        return text.ToString();
    }

    static string Goal(Arm auto, Arm paper, Arm adamw, string basis = "AdamW")
    {
        if (auto.Runs.Count == 0 || adamw.Runs.Count == 0)
            return "not run yet";
        if (auto.Diverged)
            return "**not met**: auto diverged";
        var above = auto.Min > adamw.Max;
        var paperWins = paper.Max < adamw.Min;
        var kept = adamw.Mean - auto.Mean;
        var gain = adamw.Mean - paper.Mean;
        var half = !paperWins || kept >= gain / 2;
        var detail =
            F($"auto {auto.Min:F3}..{auto.Max:F3} against {basis} {adamw.Min:F3}..{adamw.Max:F3}")
            + (
                paperWins
                    ? F($"; the paper ratios gain {gain:F3}, auto keeps {kept:F3}")
                    : "; the paper ratios do not win beyond the spread"
            );
        return (!above && half ? "**met**: " : "**not met**: ") + detail;
    }

    static void Trend(StringBuilder text, List<SweepPoint> points)
    {
        text.AppendLine("## The trend of the gap against B/B_noise");
        text.AppendLine();
        if (points.Count < 3)
        {
            text.AppendLine("Fewer than three points: no fit yet.");
            text.AppendLine();
            return;
        }
        var x = points.Select(p => Math.Log10(p.Ratio)).ToList();
        foreach (
            var (name, gap) in new (string, Func<SweepPoint, SweepGap>)[]
            {
                ("paper ratios", p => p.Paper),
                ("auto ratios", p => p.Auto),
            }
        )
        {
            var (a, b, seA, seB) = Fit(x, points.Select(p => gap(p).Mean).ToList());
            var t = T95(points.Count - 2);
            var (low, high) = (b - t * seB, b + t * seB);
            text.AppendLine(
                F(
                    $"- {name}: gap = {a:+0.000;-0.000} (± {seA:F3}) {b:+0.000;-0.000} (± {seB:F3}) x log10(B/B_noise), least squares over {points.Count} points (± one standard error); the slope's 95% interval (Student's t, {points.Count - 2} degree(s) of freedom) is {low:F3}..{high:F3} per decade. "
                )
                    + (
                        high < 0
                            ? F(
                                $"The gap falls as the batch grows past B_noise; extrapolated, it would reach 0 at B/B_noise = {Math.Pow(10, -a / b):0.#}, at the interval's steepest slope at {Math.Pow(10, -a / low):0.#}."
                            )
                        : low > 0 ? "The gap rises as the batch grows: no crossover is predicted."
                        : "The points establish no trend: no crossover is predicted, and none beyond them is excluded."
                    )
            );
        }
        text.AppendLine();
    }

    /// <summary>The goal at each cell of the earlier study, for its auto-0.3 arms (the default rule of version 0.3)
    /// against their plain base.</summary>
    static string StudyGoal(string docs)
    {
        var cells = Path.Combine(Path.GetDirectoryName(docs)!, "study", "cells");
        var lines = new StringBuilder();
        foreach (var file in Directory.Exists(cells) ? Directory.GetFiles(cells, "*.json").Order().ToArray() : [])
        {
            var cell = JsonNode.Parse(File.ReadAllText(file))!;
            var lr = cell["baseline_lr"]!.GetValue<double>();
            Arm Of(string optimizer, string ratios, string name) =>
                new(name, ResultFile.RunsOf(cell, optimizer, ratios, lr));
            foreach (
                var (plain, blockwise) in new[] { ("adamw", "blockwise-adamw"), ("adam-mini", "blockwise-adam-mini") }
            )
                lines.AppendLine(
                    F($"- {cell["cell"]}, {plain}+auto: ")
                        + Goal(
                            Of(blockwise, "auto-0.3", "auto"),
                            Of(blockwise, "paper", "paper"),
                            Of(plain, "uniform", plain),
                            plain
                        )
                );
        }
        return lines.ToString();
    }
}
