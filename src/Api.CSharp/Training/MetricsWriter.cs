using System.Globalization;
using System.Text.Json.Nodes;
using TorchSharp;

namespace BlockwiseLR.Training;

/// <summary>RUN/metrics.jsonl (a line per step), RUN/evals.csv and TensorBoard events, all from the
/// <see cref="StepReport"/> of each step. On resume the files are cut back to the checkpoint's step, so a resumed
/// run's files equal an uninterrupted run's.</summary>
sealed class MetricsWriter : IDisposable
{
    readonly StreamWriter steps;
    readonly StreamWriter evals;
    readonly TorchSharp.Modules.SummaryWriter? tensorboard;

    public MetricsWriter(string run, int resumeStep)
    {
        Path = System.IO.Path.Combine(run, "metrics.jsonl");
        var evalPath = System.IO.Path.Combine(run, "evals.csv");
        Truncate(Path, line => JsonNode.Parse(line)!["step"]!.GetValue<int>() < resumeStep);
        Truncate(evalPath, line =>
            line.StartsWith("step") || int.Parse(line.Split(',')[0], CultureInfo.InvariantCulture) <= resumeStep
        );
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

    static void Truncate(string path, Func<string, bool> keep)
    {
        if (!File.Exists(path))
            return;
        var lines = File.ReadAllLines(path).Where(l => l.Length > 0).Where(keep).ToList();
        File.WriteAllLines(path, lines);
    }

    /// <summary>The step's line in metrics.jsonl and, when it evaluated, its line in evals.csv (numbered by steps
    /// done, as checkpoints are).</summary>
    public void Write(StepReport report)
    {
        var line = new JsonObject
        {
            ["step"] = report.Step,
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
            var done = report.Step + 1;
            evals.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{done},{valLoss:R}"));
            tensorboard?.add_scalar("val/loss", (float)valLoss, done);
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
