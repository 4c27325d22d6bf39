using BlockwiseLR.Models;
using BlockwiseLR.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

/// Sharpness estimators against closed forms; the math attention path against the fused kernel and finite differences.
public class SharpnessTests
{
    /// L = 1/(2N) sum_n ||W1 x_n - y_n||^2 + 1/(2N) sum_n ||W2 (2 x_n) - y_n||^2. The Hessian diagonal of W1_ij is
    /// (1/N) sum_n x_nj^2, of W2_ij four times that: block means (1/(N d)) sum_n ||x_n||^2, and 4 times it.
    static (
        Func<Tensor> Loss,
        (Block, Parameter)[] Parameters,
        double MeanDiagonal,
        Tensor X,
        Tensor Y,
        Parameter W1
    ) LinearProblem()
    {
        var generator = new Generator(11);
        var x = randn([64, 3], generator: generator, dtype: float64);
        var y = randn([64, 4], generator: generator, dtype: float64);
        var w1 = new Parameter(randn([4, 3], generator: generator, dtype: float64));
        var w2 = new Parameter(randn([4, 3], generator: generator, dtype: float64));
        Tensor Loss() =>
            (x.matmul(w1.t()) - y).square().sum() / (2 * 64) + ((2 * x).matmul(w2.t()) - y).square().sum() / (2 * 64);
        var meanDiagonal = x.square().sum().item<double>() / (64 * 3);
        return (Loss, [(Block.Norm, w1), (Block.FeedForward, w2)], meanDiagonal, x, y, w1);
    }

    [Fact]
    public void Hutchinson_recovers_a_known_hessian_diagonal_within_5_percent()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var (loss, parameters, meanDiagonal, _, _, _) = LinearProblem();
        var generator = new Generator(3);
        var estimate = SharpnessEstimator.Summarize(
            Enumerable.Range(0, 400).Select(_ => SharpnessEstimator.HutchinsonSample(loss, parameters, generator))
        );
        Assert.InRange(estimate[Block.Norm].Mean, 0.95 * meanDiagonal, 1.05 * meanDiagonal);
        Assert.InRange(estimate[Block.FeedForward].Mean, 0.95 * 4 * meanDiagonal, 1.05 * 4 * meanDiagonal);
        Assert.True(estimate[Block.Norm].StdErr < 0.05 * meanDiagonal, "the standard error is reported and small");
    }

    /// The preconditioned estimator on the same problem: diag(P H) = P * diag(H), so with a known P the block means are
    /// mean_ij P_ij D_j for W1 and mean_ij P_ij 4 D_j for W2, D_j = (1/N) sum_n x_nj^2. H is not diagonal (the
    /// coordinates of a row couple), so the probes must average out.
    [Fact]
    public void The_preconditioned_estimate_recovers_the_diagonal_of_P_H_within_5_percent()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var (loss, parameters, _, x, _, _) = LinearProblem();
        var draw = new Generator(5);
        var p1 = rand([4, 3], generator: draw, dtype: float64) * 10 + 0.5;
        var p2 = rand([4, 3], generator: draw, dtype: float64) * 10 + 0.5;
        var d = x.square().mean([0L]); // (1/N) sum_n x_nj^2, per column j
        var (expected1, expected2) = ((p1 * d).mean().item<double>(), (p2 * 4 * d).mean().item<double>());
        var generator = new Generator(3);
        var estimate = SharpnessEstimator.Summarize(
            Enumerable
                .Range(0, 400)
                .Select(_ => SharpnessEstimator.PreconditionedSample(loss, parameters, [p1, p2], generator))
        );
        Assert.InRange(estimate[Block.Norm].Mean, 0.95 * expected1, 1.05 * expected1);
        Assert.InRange(estimate[Block.FeedForward].Mean, 0.95 * expected2, 1.05 * expected2);
        // Unpreconditioned it would be D's means, far from these: the preconditioner is really applied.
        Assert.True(Math.Abs(expected1 - d.mean().item<double>()) > 0.5 * expected1);
    }

    /// Adam's preconditioner from an optimizer state: bias-corrected, AdamW's v per coordinate, Adam-mini's per-row v
    /// spread over its row.
    [Fact]
    public void Preconditioners_are_adams_from_a_checkpoints_state_for_adamw_and_adam_mini_layouts()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var w = zeros(2, 3);
        var state = new Dictionary<string, Tensor>
        {
            ["step"] = tensor(2L),
            ["exp_avg_sq/full"] = tensor(new float[] { 1, 4, 9, 16, 25, 36 }).reshape(2, 3),
            ["exp_avg_sq/rows"] = tensor(new float[] { 4, 100 }),
        };
        var p = SharpnessEstimator.Preconditioners([("full", w), ("rows", w)], state, beta2: 0.5, eps: 0.25);
        var correction = 1 - 0.25; // 1 - beta2^2
        double P(double v) => 1 / (Math.Sqrt(v / correction) + 0.25);
        Assert.Equal(
            new[] { 1.0, 4, 9, 16, 25, 36 }.Select(P).ToArray(),
            p[0].to(float64).data<double>().ToArray(),
            new Comparer(1e-6)
        );
        Assert.Equal(
            new[] { 4.0, 4, 4, 100, 100, 100 }.Select(P).ToArray(),
            p[1].to(float64).data<double>().ToArray(),
            new Comparer(1e-6)
        );
        Assert.Throws<InvalidDataException>(() =>
            SharpnessEstimator.Preconditioners([("missing", w)], state, 0.5, 0.25)
        );
    }

    sealed class Comparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tolerance * Math.Max(1, Math.Abs(a));

        public int GetHashCode(double x) => 0;
    }

    [Fact]
    public void The_proxy_equals_its_closed_form_on_a_linear_model()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var (loss, parameters, _, x, y, w1) = LinearProblem();
        var proxy = SharpnessEstimator.ProxySample(loss, parameters, batchSize: 64);
        // dL/dW1 = (1/N) sum_n (W1 x_n - y_n) x_n^T; proxy = B ||G||^2 / #params.
        var gradient = (x.matmul(w1.t()) - y).t().matmul(x) / 64;
        Assert.Equal(64 * gradient.square().sum().item<double>() / 12, proxy[Block.Norm], 5);
    }

    public static TheoryData<string> Architectures() => new() { "gpt2-tiny", "llama-tiny" };

    static LanguageModel Tiny(string name) =>
        LanguageModel.Create(
            ModelConfigs.Create(
                name,
                "layers=1",
                "width=16",
                "heads=4",
                name == "llama-tiny" ? "kv-heads=2" : "heads=4",
                "d-ff=24",
                "vocab=40",
                "context=8"
            ),
            seed: 4
        );

    [Theory]
    [MemberData(nameof(Architectures))]
    public void Math_attention_gives_the_fused_kernels_logits(string name)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var model = Tiny(name);
        var ids = randint(0, 40, [2, 8], dtype: int64, generator: new Generator(1));
        using var noGrad = no_grad();
        var fused = model.forward(ids);
        model.MathAttention = true;
        Assert.True((model.forward(ids) - fused).abs().max().item<float>() < 1e-5f);
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void Hessian_vector_products_through_math_attention_match_finite_differences(string name)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var model = Tiny(name);
        model.to(float64); // finite differences need fp64 to resolve the second derivative
        model.MathAttention = true;
        var ids = randint(0, 40, [2, 8], dtype: int64, generator: new Generator(2));
        var inputs = model.parameters().Select(p => (Tensor)p).ToList();
        Tensor Loss() => LanguageModel.Loss(model.forward(ids), ids);
        var generator = new Generator(5);
        var v = inputs.Select(p => randn(p.shape, generator: generator, dtype: float64)).ToList();

        var grads = autograd.grad([Loss()], inputs, retain_graph: true, create_graph: true);
        var hv = autograd.grad([grads.Zip(v, (g, d) => (g * d).sum()).Aggregate((a, b) => a + b)], inputs);

        List<Tensor> GradientAt(double shift)
        {
            using (no_grad())
                foreach (var (p, d) in inputs.Zip(v))
                    p.add_(d * shift);
            var g = autograd.grad([Loss()], inputs).Select(t => t.detach().clone()).ToList();
            using (no_grad())
                foreach (var (p, d) in inputs.Zip(v))
                    p.sub_(d * shift);
            return g;
        }
        const double eps = 1e-5;
        var plus = GradientAt(eps);
        var minus = GradientAt(-eps);
        var finite = cat(plus.Zip(minus, (a, b) => ((a - b) / (2 * eps)).flatten()).ToArray());
        var exact = cat(hv.Select(t => t.flatten()).ToArray());
        var cosine = (finite * exact).sum() / (finite.norm() * exact.norm());
        Assert.True(cosine.item<double>() > 0.99999, $"cosine {cosine.item<double>()}");
        Assert.InRange((finite.norm() / exact.norm()).item<double>(), 0.9999, 1.0001);
    }
}
