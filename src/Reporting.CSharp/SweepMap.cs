using System.Globalization;
using System.Text;
using System.Text.Json;

namespace BlockwiseLR.Reporting;

/// <summary>An arm's final val loss against tuned AdamW's at one point of the sweep: mean, min and max over seeds,
/// each minus AdamW's seed mean (negative: the arm ends lower).</summary>
public sealed record SweepGap(double Mean, double Min, double Max);

/// <summary>One point of the batch-size sweep: tokens per step, the gradient-noise scale measured there (tokens),
/// their ratio, AdamW's final val loss (seed mean) and the paper ratios' and auto ratios' gaps to it.</summary>
public sealed record SweepPoint(
    int TokensPerStep,
    double NoiseScale,
    double Ratio,
    double AdamW,
    SweepGap Paper,
    SweepGap Auto
);

/// <summary>
/// The map of where per-block ratios pay: the batch-size sweep's result (docs/sweep, rebuilt by the benchmarks'
/// `--sweep report` from the committed raw results), as `blr demo` prints and draws it. The library's copy is
/// docs/sweep/map.json, embedded in this assembly when it is built.
/// </summary>
public sealed record SweepMap(string Model, int Steps, string Machine, IReadOnlyList<SweepPoint> Points)
{
    static readonly JsonSerializerOptions json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>The map the build embedded (docs/sweep/map.json), or null when it had none.</summary>
    public static SweepMap? Builtin()
    {
        using var stream = typeof(SweepMap).Assembly.GetManifestResourceStream("sweep-map.json");
        return stream is null ? null : JsonSerializer.Deserialize<SweepMap>(stream, json);
    }

    /// <summary>A map from its JSON (map.json).</summary>
    public static SweepMap Read(string text) =>
        JsonSerializer.Deserialize<SweepMap>(text, json) ?? throw new FormatException("not a sweep map");

    /// <summary>The map as JSON (what map.json holds).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, json);

    static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    static string Gap(SweepGap g) => F($"{g.Mean:+0.000;-0.000} ({g.Min:+0.00;-0.00}..{g.Max:+0.00;-0.00})");

    /// <summary>The map as a text table: a row per point.</summary>
    public string Table()
    {
        var text = new StringBuilder();
        text.AppendLine(
            F($"Where per-block ratios pay ({Model}, {Steps} steps per run, {Machine}): final val loss minus ")
                + "tuned AdamW's, mean (min..max over 3 seeds); below 0 the ratios win."
        );
        text.AppendLine("  tokens/step   B_noise   B/B_noise   AdamW    paper ratios             auto ratios");
        foreach (var p in Points)
            text.AppendLine(
                F($"  {p.TokensPerStep, 11:N0} {p.NoiseScale, 9:N0} {p.Ratio, 11:0.00}   {p.AdamW:0.000}   ")
                    + $"{Gap(p.Paper), -24} {Gap(p.Auto)}"
            );
        return text.ToString();
    }

    /// <summary>The map as a PNG: the gap to AdamW against B/B_noise (log scale), paper and auto ratios, the seed
    /// range as error bars, zero marked.</summary>
    public string Draw(string png)
    {
        var plot = new ScottPlot.Plot();
        var x = Points.Select(p => Math.Log10(p.Ratio)).ToArray();
        void Arm(string label, Func<SweepPoint, SweepGap> gap, double shift)
        {
            var xs = x.Select(v => v + shift).ToArray();
            var means = Points.Select(p => gap(p).Mean).ToArray();
            var line = plot.Add.Scatter(xs, means);
            line.LegendText = label;
            line.LineWidth = 2;
            line.MarkerSize = 7;
            // The seed range: a vertical segment per point in the line's colour.
            for (var i = 0; i < xs.Length; i++)
            {
                var range = plot.Add.Scatter(new[] { xs[i], xs[i] }, new[] { gap(Points[i]).Min, gap(Points[i]).Max });
                range.Color = line.Color;
                range.MarkerSize = 0;
                range.LineWidth = 1.5f;
            }
        }
        Arm("paper ratios", p => p.Paper, -0.01);
        Arm("auto ratios", p => p.Auto, 0.01);
        plot.Add.HorizontalLine(0, 1, ScottPlot.Colors.Gray);
        plot.Title(F($"Where per-block ratios pay ({Steps} steps; bars: 3 seeds)"));
        plot.XLabel("log10 (tokens per step / B_noise)");
        plot.YLabel("final val loss - tuned AdamW's");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(png))!);
        plot.SavePng(png, 900, 560);
        return png;
    }
}
