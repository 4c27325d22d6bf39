using System.Globalization;
using System.Text;
using System.Text.Json;
using BlockwiseLR.Data;
using BlockwiseLR.Models;

namespace BlockwiseLR.Training;

/// <summary>One optimizer's run in a comparison.</summary>
public sealed record ComparisonRun(string Optimizer, PretrainResult Result);

/// <summary>The outcome of a comparison and the files written for it.</summary>
public sealed record ComparisonReport(IReadOnlyList<ComparisonRun> Runs, string Markdown, string Png, string Json)
{
    /// <summary>The table: one row per optimizer.</summary>
    public string Table()
    {
        var text = new StringBuilder();
        text.AppendLine("| optimizer | val loss (final) | val loss (best) | train tokens/s | ms/step | optimizer state |");
        text.AppendLine("|---|---|---|---|---|---|");
        foreach (var run in Runs)
        {
            var r = run.Result;
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {run.Optimizer} | {r.FinalValLoss:F4} | {r.BestValLoss:F4} | {r.TokensPerSecond:N0} | {r.MillisecondsPerStep:F1} | {r.OptimizerStateBytes / 1048576.0:F1} MiB |"));
        }
        return text.ToString();
    }
}

/// <summary>
/// The main job: the same model, data, seed and steps trained with several optimizers (by default AdamW and
/// Blockwise AdamW on gpt2-tiny over the built-in Gutenberg corpus), then a table, a loss-curve PNG and a
/// Markdown report. Each run is an ordinary <see cref="Pretrainer"/> run in OUT/&lt;optimizer&gt;.
/// </summary>
public static class Comparison
{
    public static PretrainOptions DemoOptions(string output, bool quick) => new()
    {
        Model = "gpt2-tiny",
        Data = Path.Combine(output, "data"),
        Lr = 1e-3,
        Steps = quick ? 40 : 250,
        BatchSize = quick ? 4 : 8,
        SeqLen = quick ? 64 : 128,
        WarmupSteps = quick ? 4 : 25,
        EvalEvery = quick ? 10 : 25,
        EvalWindows = quick ? 16 : 32,
        Seed = 1337,
        Out = output,
    };

    /// <summary>Prepares the built-in corpus into OUT/data (once) and runs each optimizer.</summary>
    public static ComparisonReport Run(PretrainOptions common, IReadOnlyList<string> optimizers, Action<string>? starting = null,
        IProgress<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        if (!File.Exists(Path.Combine(common.Data, "manifest.json")))
            ShardPreparer.Run(new PrepareOptions { Builtin = "gutenberg", OutputDirectory = common.Data, Overwrite = true });
        var runs = new List<ComparisonRun>();
        foreach (var optimizer in optimizers)
        {
            starting?.Invoke(optimizer);
            var options = common.With([new("optimizer", optimizer), new("out", Path.Combine(common.Out, optimizer))]);
            runs.Add(new ComparisonRun(optimizer, Pretrainer.Run(options, progress, cancel)));
            if (cancel.IsCancellationRequested) break;
        }
        return Write(common, runs);
    }

    static ComparisonReport Write(PretrainOptions common, List<ComparisonRun> runs)
    {
        Directory.CreateDirectory(common.Out);
        var png = Path.Combine(common.Out, "loss.png");
        var plot = new ScottPlot.Plot();
        foreach (var run in runs)
        {
            var train = Smooth(run.Result.TrainLosses, 10);
            var trainLine = plot.Add.Scatter(Enumerable.Range(1, train.Length).Select(i => (double)i).ToArray(), train);
            trainLine.LegendText = $"{run.Optimizer} train (10-step mean)";
            trainLine.MarkerSize = 0;
            var val = plot.Add.Scatter(run.Result.Evals.Select(e => (double)e.Step).ToArray(), run.Result.Evals.Select(e => e.ValLoss).ToArray());
            val.LegendText = $"{run.Optimizer} val";
            val.Color = trainLine.Color;
            val.LineWidth = 2;
        }
        plot.Title($"{common.Model}, {common.Steps} steps of {common.BatchSize} x {common.SeqLen} tokens: loss by step");
        plot.XLabel("step");
        plot.YLabel("cross-entropy loss");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        plot.SavePng(png, 900, 560);

        var report = new ComparisonReport(runs, Path.Combine(common.Out, "report.md"), png, Path.Combine(common.Out, "report.json"));
        var markdown = new StringBuilder();
        markdown.AppendLine($"# {common.Model}: {string.Join(" vs ", runs.Select(r => r.Optimizer))}");
        markdown.AppendLine();
        markdown.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"Same data ({common.Data}), seed {common.Seed}, {common.Steps} steps of {common.BatchSize} x {common.SeqLen} tokens, base LR {common.Lr}, cosine to LR/20 after {common.WarmupSteps} warmup steps; BlockwiseLR {Pretrainer.CodeVersion}, {Environment.ProcessorCount} CPU threads."));
        markdown.AppendLine();
        markdown.Append(report.Table());
        markdown.AppendLine();
        markdown.AppendLine("Val loss at equal steps:");
        markdown.AppendLine();
        markdown.AppendLine("| step | " + string.Join(" | ", runs.Select(r => r.Optimizer)) + " |");
        markdown.AppendLine("|---|" + string.Concat(runs.Select(_ => "---|")));
        foreach (var step in runs[0].Result.Evals.Select(e => e.Step))
            markdown.AppendLine($"| {step} | " + string.Join(" | ", runs.Select(r =>
                r.Result.Evals.FirstOrDefault(e => e.Step == step)?.ValLoss.ToString("F4", CultureInfo.InvariantCulture) ?? "")) + " |");
        markdown.AppendLine();
        markdown.AppendLine("![loss curves](loss.png)");
        File.WriteAllText(report.Markdown, markdown.ToString());
        File.WriteAllText(report.Json, JsonSerializer.Serialize(runs, PretrainOptions.Json));
        return report;
    }

    static double[] Smooth(IReadOnlyList<double> values, int window) =>
        values.Select((_, i) => values.Skip(Math.Max(0, i - window + 1)).Take(Math.Min(window, i + 1)).Average()).ToArray();
}
