using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

/// The gradient-noise scale the trainer logs, against a model whose gradient noise is known in closed form.
public class NoiseScaleTests
{
    /// Logits = one learned bias over the vocabulary, whatever the input: a unigram model. At bias 0 it predicts
    /// p = uniform; a target token y drawn from q gives the gradient p - onehot(y), so the true gradient is G = p - q
    /// and the per-token covariance diag(q) - q q^T, of trace 1 - sum q^2.
    sealed class Unigram : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.Parameter bias;

        public Unigram(int vocab)
            : base(nameof(Unigram))
        {
            bias = new TorchSharp.Modules.Parameter(zeros(vocab));
            register_parameter("bias", bias);
        }

        public override Tensor forward(Tensor tokens) =>
            bias.view(1, 1, -1).expand(tokens.shape[0], tokens.shape[1], -1);
    }

    static readonly double[] Q = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04];

    static InMemoryTokens Drawn(string name, int length, int seed)
    {
        var random = new Random(seed);
        var tokens = new int[length];
        for (var i = 0; i < length; i++)
        {
            var u = random.NextDouble();
            var k = 0;
            for (var c = Q[0]; u > c && k < Q.Length - 1; c += Q[++k]) { }
            tokens[i] = k;
        }
        return new InMemoryTokens(name, tokens);
    }

    [Fact]
    public void The_logged_noise_scale_of_a_unigram_model_is_its_closed_form_trace_over_squared_gradient()
    {
        // B_noise in tokens = tr(Sigma) / |G|^2 = (1 - sum q^2) / |1/V - q|^2 = 7.91 tokens; the batch, 4 sequences
        // of 8 tokens, is 4 times it. The LR is so small that the bias stays at 0 (p stays uniform).
        var vocab = Q.Length;
        var closedForm = (1 - Q.Sum(x => x * x)) / Q.Sum(x => (1.0 / vocab - x) * (1.0 / vocab - x));
        var dir = Directory.CreateTempSubdirectory("blr-noise-").FullName;
        try
        {
            using var model = new Unigram(vocab);
            var options = new PretrainOptions
            {
                Optimizer = new() { Kind = OptimizerKind.AdamW, WeightDecay = 0 },
                Schedule = new() { Lr = 1e-12 },
                Training = new()
                {
                    Steps = 600,
                    BatchSize = 4,
                    SeqLen = 8,
                    Threads = 1,
                },
                Evaluation = new() { Every = 0, Windows = 1 },
                Run = new() { Out = dir, Overwrite = true },
                Debug = new() { NoiseScaleEvery = 1 },
            };
            new Trainer(options)
                .WithModel(model, BlockRules.Default.With("bias", Block.Norm))
                .WithData(Drawn("train", 200_000, 1), Drawn("val", 2_000, 2))
                .Run();
            var readings = File.ReadLines(Path.Combine(dir, "metrics.jsonl"))
                .Select(l => JsonNode.Parse(l)!)
                .Where(n => n["step"]!.GetValue<int>() > 100)
                .Select(n => n["noise_scale"]!["all"]?.GetValue<double>())
                .OfType<double>()
                .ToList();
            Assert.True(readings.Count > 400, $"{readings.Count} readings");
            var mean = readings.Average();
            Assert.InRange(mean, closedForm * 0.9, closedForm * 1.1);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
