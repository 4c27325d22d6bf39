namespace BlockwiseLR.Reporting;

/// <summary>Loss-curve PNGs (ScottPlot): the demo's, compare's and `blr plot`'s.</summary>
public static class Plots
{
    /// <summary>One line: a legend text, points, and whether it is a thin (train) line or a marked (eval)
    /// one.</summary>
    public sealed record Curve(string Label, double[] Steps, double[] Losses, bool Thin = false, int? ColorOf = null);

    /// <summary>Writes the curves into one PNG; <see cref="Curve.ColorOf"/> reuses an earlier curve's colour.</summary>
    public static string Save(string png, string title, IEnumerable<Curve> curves, string yLabel = "loss")
    {
        var plot = new ScottPlot.Plot();
        var lines = new List<ScottPlot.Plottables.Scatter>();
        foreach (var curve in curves)
        {
            var line = plot.Add.Scatter(curve.Steps, curve.Losses);
            line.LegendText = curve.Label;
            line.LineWidth = curve.Thin ? 1 : 2;
            line.MarkerSize = curve.Thin ? 0 : 5;
            if (curve.ColorOf is { } index)
                line.Color = lines[index].Color;
            lines.Add(line);
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel(yLabel);
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(png))!);
        plot.SavePng(png, 900, 560);
        return png;
    }

    /// <summary>The records of a run's metrics.jsonl; a last line cut short (a run killed while writing it) is left
    /// out, as the trainer's resume cuts it.</summary>
    static List<System.Text.Json.Nodes.JsonNode> JsonLines(string file) => Training.MetricsWriter.ReadMetrics(file);

    /// <summary>A running mean over the last <paramref name="window"/> values.</summary>
    public static double[] Smooth(IReadOnlyList<double> values, int window) =>
        values
            .Select((_, i) => values.Skip(Math.Max(0, i - window + 1)).Take(Math.Min(window, i + 1)).Average())
            .ToArray();

    /// <summary>`blr plot`: val (evals.csv) or train (metrics.jsonl, smoothed) loss of run folders in one
    /// PNG.</summary>
    public static string Curves(IReadOnlyList<string> runs, string png, bool train, int smooth = 10)
    {
        if (runs.Count == 0)
            throw new ArgumentException("give at least one --run folder");
        if (Directory.Exists(png))
            throw new ArgumentException($"--out {png}: is a folder; give the path of a .png file");
        var curves = runs.Select(run =>
            {
                var file = Path.Combine(run, train ? "metrics.jsonl" : "evals.csv");
                if (!File.Exists(file))
                    throw new ArgumentException($"{file}: not found; is {run} a blr train --out folder?");
                var points = train
                    ? JsonLines(file)
                        .Select(n => (n["step"]!.GetValue<double>(), n["loss"]!.GetValue<double>()))
                        .ToList()
                    : Training.MetricsWriter.ReadEvals(file).Select(e => ((double)e.Step, e.Loss)).ToList();
                if (points.Count == 0)
                    throw new ArgumentException($"{file}: no points yet");
                var losses = points.Select(p => p.Item2).ToList();
                return new Curve(
                    Path.GetFileName(Path.GetFullPath(run).TrimEnd('/')),
                    points.Select(p => p.Item1).ToArray(),
                    train ? Smooth(losses, smooth) : [.. losses],
                    Thin: train
                );
            })
            .ToList();
        return Save(png, train ? $"train loss ({smooth}-step mean)" : "val loss", curves);
    }

    /// <summary>`blr plot --sharpness`: the per-block proxy sharpness a run logged every --sharpness-every steps
    /// (metrics.jsonl's "sharpness"), log10 against the step, one line per block: the disparity as it forms.</summary>
    public static string SharpnessCurves(string run, string png)
    {
        var points = Logged(run, png, "sharpness", "train with --sharpness-every N to log the per-block sharpness");
        var curves = points
            .GroupBy(p => p.Key)
            .Select(g => new Curve(
                g.Key,
                g.Select(p => p.Step).ToArray(),
                g.Select(p => Math.Log10(Math.Max(1e-30, p.Value))).ToArray(),
                Thin: g.Count() > 40
            ));
        return Save(
            png,
            $"{RunName(run)}: proxy sharpness per block, B |g_b|^2 / #params(b)",
            curves,
            "log10 sharpness"
        );
    }

    /// <summary>`blr plot --noise-scale`: the gradient-noise scale a run logged every --noise-scale-every steps
    /// (metrics.jsonl's "noise_scale", tokens), log10 against the step: the whole model (thick), each block (thin)
    /// and the run's tokens per step (flat), so where the batch stands against B_noise reads off the plot.</summary>
    public static string NoiseScaleCurves(string run, string png)
    {
        var points = Logged(run, png, "noise_scale", "train with --noise-scale-every N to log the noise scale");
        var curves = points
            .GroupBy(p => p.Key)
            .OrderBy(g => g.Key == "all" ? 0 : 1)
            .Select(g => new Curve(
                g.Key == "all" ? "whole model" : g.Key,
                g.Select(p => p.Step).ToArray(),
                g.Select(p => Math.Log10(p.Value)).ToArray(),
                Thin: g.Key != "all"
            ))
            .ToList();
        var options = Path.Combine(run, "options.json");
        if (File.Exists(options) && points.Count > 0)
        {
            // The sequence length as the run resolved it: given, or the model's context.
            var o = PretrainOptions.FromJson(File.ReadAllText(options));
            var seqLen = o.Training.SeqLen ?? (o.Model.Config ?? NamedConfig(o.Model))?.Context;
            var tokens = (double)o.Training.BatchSize * (seqLen ?? double.NaN);
            if (double.IsFinite(tokens))
            {
                double[] ends = [points.Min(p => p.Step), points.Max(p => p.Step)];
                curves.Add(new Curve($"B = {tokens:N0} tokens/step", ends, [Math.Log10(tokens), Math.Log10(tokens)]));
            }
        }
        return Save(png, $"{RunName(run)}: gradient-noise scale B_simple (tokens)", curves, "log10 tokens");
    }

    /// <summary>The named config of a run's options (null for a model of one's own or a name not known).</summary>
    static ModelConfig? NamedConfig(ModelOptions model)
    {
        try
        {
            return model.Name == "custom" ? null : Models.ModelConfigs.Create(model.Name, model.Overrides);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    static string RunName(string run) => Path.GetFileName(Path.GetFullPath(run).TrimEnd('/'));

    /// <summary>The (key, step, value) entries of one per-block object a run logged into metrics.jsonl (null and
    /// non-positive values left out); none: an error that says how to log them.</summary>
    static List<(string Key, double Step, double Value)> Logged(string run, string png, string field, string how)
    {
        if (Directory.Exists(png))
            throw new ArgumentException($"--out {png}: is a folder; give the path of a .png file");
        var file = Path.Combine(run, "metrics.jsonl");
        if (!File.Exists(file))
            throw new ArgumentException($"{file}: not found; is {run} a blr train --out folder?");
        var logged = JsonLines(file).Where(n => n[field] is System.Text.Json.Nodes.JsonObject).ToList();
        if (logged.Count == 0)
            throw new ArgumentException($"{file}: no {field} entries; {how}");
        var points = logged
            .SelectMany(n =>
                n[field]!
                    .AsObject()
                    .Where(kv => kv.Value is not null)
                    .Select(kv => (kv.Key, n["step"]!.GetValue<double>(), kv.Value!.GetValue<double>()))
            )
            .Where(p => p.Item3 > 0) // log scale: a 0 (a noise estimate at or below 0) has no place on it
            .ToList();
        if (points.Count == 0)
            throw new ArgumentException(
                $"{file}: {logged.Count} {field} entries, none with a positive estimate to draw; train longer"
            );
        return points;
    }
}
