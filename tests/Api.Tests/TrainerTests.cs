using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Training;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

/// Bring your own pieces: a TorchSharp module BlockwiseLR has no rule for, tokens in memory, a per-step observer.
public class TrainerTests
{
    /// Embedding -> residual MLP -> causal running mean -> gain -> readout; no name matches a built-in rule.
    sealed class TinyMixer : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.Embedding lookup;
        readonly TorchSharp.Modules.Linear mixer,
            readout;
        readonly TorchSharp.Modules.LayerNorm gain;

        public TinyMixer(long seed)
            : base(nameof(TinyMixer))
        {
            manual_seed(seed);
            lookup = nn.Embedding(Vocab, 16);
            mixer = nn.Linear(16, 16);
            gain = nn.LayerNorm(16);
            readout = nn.Linear(16, Vocab, hasBias: false);
            RegisterComponents();
        }

        public override Tensor forward(Tensor tokens)
        {
            var x = lookup.forward(tokens);
            x = x + nn.functional.gelu(mixer.forward(x));
            var counts = arange(1, tokens.shape[1] + 1, dtype: float32).view(1, -1, 1);
            return readout.forward(gain.forward(x.cumsum(1) / counts + x));
        }
    }

    const int Vocab = 12;

    static readonly BlockRules Rules = BlockRules
        .Default.With("lookup.weight", Block.Embedding)
        .With("mixer.*", Block.FeedForward)
        .With("gain.*", Block.Norm)
        .With("readout.weight", Block.OutputHead);

    /// A stream that mostly counts up modulo the vocabulary: learnable, and the same every time.
    static InMemoryTokens Counting(string name, int length, int seed)
    {
        var random = new Random(seed);
        var tokens = new int[length];
        for (var i = 1; i < length; i++)
            tokens[i] = (tokens[i - 1] + 1 + (random.Next(4) == 0 ? 1 : 0)) % Vocab;
        return new InMemoryTokens(name, tokens);
    }

    static PretrainOptions Options(string run, int steps) =>
        new()
        {
            Optimizer = new() { Kind = OptimizerKind.BlockwiseAdamW, Ratios = BlockRatios.Paper },
            Schedule = new() { Lr = 3e-3 },
            Training = new()
            {
                Steps = steps,
                BatchSize = 4,
                MicroBatchSize = 2,
                SeqLen = 8,
                Threads = 1,
            },
            Evaluation = new() { Every = 2, Windows = 4 },
            Run = new() { Out = run },
            Checkpoint = new() { Every = 4 },
        };

    static Trainer Trainer(PretrainOptions options, TinyMixer model) =>
        new Trainer(options).WithModel(model, Rules).WithData(Counting("train", 4000, 1), Counting("val", 400, 2));

    [Fact]
    public void A_model_of_your_own_trains_on_tokens_in_memory_with_its_blocks_own_learning_rates()
    {
        var dir = Directory.CreateTempSubdirectory("blr-byo-").FullName;
        try
        {
            using var unruled = new TinyMixer(7);
            var refused = Assert.Throws<BlockPartitionException>(() =>
                new Trainer(Options(Path.Combine(dir, "x"), 2))
                    .WithModel(unruled)
                    .WithData(Counting("train", 400, 1), Counting("val", 100, 2))
                    .Run()
            );
            foreach (
                var name in new[]
                {
                    "lookup.weight",
                    "mixer.weight",
                    "mixer.bias",
                    "gain.weight",
                    "gain.bias",
                    "readout.weight",
                }
            )
                Assert.Contains(name, refused.Message);

            var run = Path.Combine(dir, "run");
            using var model = new TinyMixer(7);
            var reports = new List<StepReport>();
            var result = Trainer(Options(run, 20), model).OnStep(reports.Add).Run();

            Assert.Equal(Enumerable.Range(1, 20), reports.Select(r => r.Step));
            // Step 1 is the one warmup step (2% of 20, at least 1): every block is at its peak, ratio x base LR.
            var peak = reports[0].LearningRates;
            Assert.Equal(10 * 3e-3, peak[Block.Embedding], 12);
            Assert.Equal(6 * 3e-3, peak[Block.FeedForward], 12);
            Assert.Equal(3e-3, peak[Block.Norm], 12);
            Assert.Equal(3e-3, peak[Block.OutputHead], 12); // an untied head keeps ratio 1
            Assert.All(reports, r => Assert.Equal(4, r.GradientNorms.Count));
            Assert.Equal(
                [2, 4, 6, 8, 10, 12, 14, 16, 18, 20],
                reports.Where(r => r.ValLoss is not null).Select(r => r.Step)
            );
            Assert.True(
                result.FinalValLoss < reports[1].ValLoss!.Value - 0.2,
                $"val loss {reports[1].ValLoss} -> {result.FinalValLoss}"
            );
            // The observer saw what metrics.jsonl records.
            var logged = File.ReadAllLines(result.MetricsPath)
                .Select(l => JsonNode.Parse(l)!["loss"]!.GetValue<double>());
            Assert.Equal(reports.Select(r => r.Loss), logged);
            var saved = Safetensors.LoadStateDict(Path.Combine(result.LastCheckpoint!, "model.safetensors"));
            Assert.Equal(model.state_dict().Keys.Order(), saved.Keys.Order());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_model_of_your_own_resumes_exactly()
    {
        var dir = Directory.CreateTempSubdirectory("blr-byo-resume-").FullName;
        try
        {
            using var whole = new TinyMixer(3);
            Trainer(Options(Path.Combine(dir, "whole"), 8), whole).Run();

            var part = Path.Combine(dir, "part");
            using var cancel = new CancellationTokenSource();
            using var first = new TinyMixer(3);
            var stopped = Trainer(Options(part, 8), first)
                .OnStep(r =>
                {
                    if (r.Step == 4)
                        cancel.Cancel();
                })
                .Run(cancel.Token);
            Assert.True(stopped.Interrupted);
            Assert.Equal(4, stopped.Steps);
            using var second = new TinyMixer(99); // other initial weights: the checkpoint must replace them all
            var resumed = Trainer(
                    Options(part, 8) with
                    {
                        Checkpoint = new() { Resume = "latest", Every = 4 },
                    },
                    second
                )
                .Run();
            Assert.Equal(8, resumed.Steps);
            foreach (var (name, tensor) in whole.state_dict())
                Assert.True(tensor.eq(second.state_dict()[name]).all().item<bool>(), name);
            Assert.Equal(
                File.ReadAllLines(Path.Combine(dir, "whole", "metrics.jsonl"))
                    .Select(l => JsonNode.Parse(l)!["loss"]!.ToJsonString()),
                File.ReadAllLines(Path.Combine(part, "metrics.jsonl"))
                    .Select(l => JsonNode.Parse(l)!["loss"]!.ToJsonString())
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_steady_step_reads_tensor_data_on_the_host_once()
    {
        TorchRuntime.EnsureAvailable();
        var run = Directory.CreateTempSubdirectory("blr-reads-").FullName;
        try
        {
            using var model = new TinyMixer(3);
            var reads = new List<long>();
            // Metrics and auto ratios on; evaluation and the checkpoint only after the last step.
            var basic = Options(run, 6);
            var options = basic with
            {
                Optimizer = basic.Optimizer with { Ratios = BlockRatios.Auto() },
                Training = basic.Training with { GradClip = 0.01 },
                Evaluation = basic.Evaluation with { Every = 0 },
                Checkpoint = basic.Checkpoint with { Every = 0 },
            };
            Trainer(options, model).OnStep(_ => reads.Add(Optim.HostReads.Count)).Run();
            Assert.Equal(6, reads.Count);
            // Between the ends of steps 1..4 (step 5 evaluates): loss, norms (clipping at 0.01 always scales), auto
            // ratios, metrics.
            Assert.All(reads.Skip(1).Take(3).Zip(reads.Skip(2)), pair => Assert.Equal(1, pair.Second - pair.First));
        }
        finally
        {
            Directory.Delete(run, true);
        }
    }

    [Fact]
    public void One_step_report_feeds_metrics_observers_and_progress_alike()
    {
        var run = Directory.CreateTempSubdirectory("blr-one-record-").FullName;
        try
        {
            using var model = new TinyMixer(5);
            var (reports, progress) = (new List<StepReport>(), new List<TrainProgress>());
            // Auto ratios with micro-batches (ratios and the noise measurement), sharpness on even steps, evaluations.
            var basic = Options(run, 7);
            var options = basic with
            {
                // Smoothing 0.5 after a 1-step warmup: the first ratio update comes after 4 steps (warmup + 2).
                Optimizer = basic.Optimizer with
                {
                    Ratios = BlockRatios.Auto(new AutoRatioSettings { Every = 2, Smoothing = 0.5 }),
                },
                Schedule = basic.Schedule with { WarmupSteps = 1 },
                Debug = new() { SharpnessEvery = 2 },
            };
            Trainer(options, model)
                .OnStep(reports.Add)
                .WithProgress(new SynchronousProgress<TrainProgress>(progress.Add))
                .Run();

            var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl"))
                .Select(l => JsonNode.Parse(l)!.AsObject())
                .ToList();
            Assert.Equal(7, reports.Count);
            Assert.Equal(7, lines.Count);
            Assert.Equal(7, progress.Count);
            static Dictionary<string, double> Keyed(IReadOnlyDictionary<Block, double> values) =>
                values.ToDictionary(kv => kv.Key.Key(), kv => kv.Value);
            static Dictionary<string, double> Read(JsonNode? node) =>
                node!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<double>());
            foreach (var (report, line, shown) in reports.Zip(lines, progress))
            {
                Assert.Equal(report.Step, line["step"]!.GetValue<int>());
                Assert.Equal(report.Loss, line["loss"]!.GetValue<double>());
                Assert.Equal(Keyed(report.LearningRates), Read(line["lr"]));
                Assert.Equal(Keyed(report.GradientNorms), Read(line["grad_norm"]));
                Assert.Equal(Keyed(report.Ratios!), Read(line["ratio"]));
                Assert.Equal(report.TokensPerSecond, line["tokens_per_s"]!.GetValue<double>());
                Assert.Equal(report.Milliseconds, line["ms"]!.GetValue<double>());
                if (report.Step % 2 == 1) // sharpness every 2 steps from the first
                    Assert.Equal(Keyed(report.Sharpness!), Read(line["sharpness"]));
                else
                    Assert.True(report.Sharpness is null && line["sharpness"] is null);
                Assert.Equal(
                    (report.Step, 7, report.Loss, report.ValLoss, report.TokensPerSecond),
                    (shown.Step, shown.Steps, shown.Loss, shown.ValLoss, shown.TokensPerSecond)
                );
            }
            // Ratios moved off 1 by the end (they are measured), and evals.csv holds the reports' evaluations.
            Assert.Contains(reports[^1].Ratios!.Values, r => r > 1);
            var evals = File.ReadAllLines(Path.Combine(run, "evals.csv"))
                .Skip(1)
                .Select(l => l.Split(','))
                .Select(p => (int.Parse(p[0]), double.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture)));
            Assert.Equal(reports.Where(r => r.ValLoss is not null).Select(r => (r.Step, r.ValLoss!.Value)), evals);
        }
        finally
        {
            Directory.Delete(run, true);
        }
    }
}
