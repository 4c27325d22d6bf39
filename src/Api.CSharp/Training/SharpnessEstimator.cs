using BlockwiseLR.Core;
using BlockwiseLR.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

/// <summary>
/// Per-block sharpness (docs/method.md section 8), averaged over mini-batches or probes, each with its standard error:
/// the paper's proxy S(b) = B ||grad_b L_B||^2 / #params(b), and Hutchinson's estimate of the mean Hessian
/// diagonal, mean over b of z * (H z) with Rademacher z, from Hessian-vector products by double backward.
/// </summary>
public static class SharpnessEstimator
{
    /// <summary>Parameters grouped by block (every parameter must be a whole-tensor block).</summary>
    public static IReadOnlyList<(Block Block, Parameter Parameter)> ByBlock(
        LanguageModel model,
        BlockRules? rules = null
    )
    {
        var named = model.named_parameters().ToList();
        var blocks = (rules ?? BlockRules.Default).WholeBlocks(
            named.Select(p => new ParameterShape(p.name, p.parameter.shape))
        );
        return blocks.Zip(named, (block, p) => (block, p.parameter)).ToList();
    }

    /// <summary>One proxy sample per block from one loss: B ||grad_b||^2 / #params(b).</summary>
    public static Dictionary<Block, double> ProxySample(
        Func<Tensor> loss,
        IReadOnlyList<(Block Block, Parameter Parameter)> parameters,
        int batchSize
    )
    {
        using var scope = NewDisposeScope();
        var inputs = parameters.Select(p => (Tensor)p.Parameter).ToList();
        var grads = autograd.grad([loss()], inputs);
        return parameters
            .Select(
                (p, i) =>
                    (p.Block, Squared: grads[i].square().sum().to(float64).item<double>(), Count: p.Parameter.numel())
            )
            .GroupBy(x => x.Block)
            .ToDictionary(g => g.Key, g => SharpnessRules.Proxy(batchSize, g.Sum(x => x.Squared), g.Sum(x => x.Count)));
    }

    /// <summary>One Hutchinson sample per block from one loss: the block's mean of z * (H z), z Rademacher.</summary>
    public static Dictionary<Block, double> HutchinsonSample(
        Func<Tensor> loss,
        IReadOnlyList<(Block Block, Parameter Parameter)> parameters,
        Generator generator
    ) => PreconditionedSample(loss, parameters, null, generator);

    /// <summary>One sample per block of the Adam-preconditioned curvature, the block's mean of z * (P H z) with
    /// P = diag(1 / (sqrt(v_hat) + eps)): the diagonal of P H, the curvature Adam actually steps against (its step is
    /// lr P g). <paramref name="preconditioners"/> holds P per parameter, in its shape (null: P = 1, plain
    /// Hutchinson).</summary>
    public static Dictionary<Block, double> PreconditionedSample(
        Func<Tensor> loss,
        IReadOnlyList<(Block Block, Parameter Parameter)> parameters,
        IReadOnlyList<Tensor>? preconditioners,
        Generator generator
    )
    {
        using var scope = NewDisposeScope();
        var inputs = parameters.Select(p => (Tensor)p.Parameter).ToList();
        var grads = autograd.grad([loss()], inputs, retain_graph: true, create_graph: true);
        // Drawn on the CPU generator and moved: the same probes on every device.
        var probes = inputs
            .Select(p => (randint(0, 2, p.shape, dtype: p.dtype, generator: generator) * 2 - 1).to(p.device))
            .ToList();
        var dot = grads.Zip(probes, (g, z) => (g * z).sum()).Aggregate((a, b) => a + b);
        var hz = autograd.grad([dot], inputs);
        return parameters
            .Select(
                (p, i) =>
                    (
                        p.Block,
                        Sum: (probes[i] * hz[i] * (preconditioners is null ? 1.0 : preconditioners[i]))
                            .sum()
                            .to(float64)
                            .item<double>(),
                        Count: p.Parameter.numel()
                    )
            )
            .GroupBy(x => x.Block)
            .ToDictionary(g => g.Key, g => g.Sum(x => x.Sum) / g.Sum(x => x.Count));
    }

    /// <summary>Summaries over samples, per block.</summary>
    public static Dictionary<Block, Estimate> Summarize(IEnumerable<Dictionary<Block, double>> samples) =>
        samples
            .SelectMany(s => s)
            .GroupBy(kv => kv.Key)
            .ToDictionary(g => g.Key, g => SharpnessRules.Summarize(g.Select(kv => kv.Value)));

    /// <summary>Adam's preconditioner 1 / (sqrt(v / (1 - beta2^t)) + eps) per parameter of a model, from an optimizer
    /// state (exp_avg_sq/NAME and step, as checkpoints hold it): AdamW's v has the parameter's shape; Adam-mini's one
    /// value per block of consecutive coordinates (head, row, tensor) is spread over its block.</summary>
    public static IReadOnlyList<Tensor> Preconditioners(
        IEnumerable<(string Name, Tensor Parameter)> parameters,
        IReadOnlyDictionary<string, Tensor> optimizerState,
        double beta2,
        double eps
    )
    {
        if (!optimizerState.TryGetValue("step", out var stepTensor))
            throw new InvalidDataException("the optimizer state has no 'step' entry");
        var step = stepTensor.item<long>();
        if (step < 1)
            throw new InvalidDataException("the optimizer state is from before the first step (no second moments yet)");
        var correction = 1 - Math.Pow(beta2, step);
        return parameters
            .Select(p =>
            {
                if (!optimizerState.TryGetValue($"exp_avg_sq/{p.Name}", out var v))
                    throw new InvalidDataException(
                        $"the optimizer state has no exp_avg_sq/{p.Name}: not a checkpoint of this model"
                    );
                var numel = p.Parameter.numel();
                if (numel % v.numel() != 0)
                    throw new InvalidDataException(
                        $"exp_avg_sq/{p.Name} has {v.numel()} values for {numel} coordinates"
                    );
                var spread =
                    v.numel() == numel
                        ? v.reshape(p.Parameter.shape)
                        : v.reshape(-1).repeat_interleave(numel / v.numel()).reshape(p.Parameter.shape);
                return (1.0 / ((spread.to(float64) / correction).sqrt() + eps))
                    .to(p.Parameter.dtype)
                    .to(p.Parameter.device);
            })
            .ToList();
    }

    /// <summary>The proxy and (with <paramref name="hutchinson"/>) Hutchinson's estimate, without the preconditioned
    /// one.</summary>
    public static (Dictionary<Block, Estimate> Proxy, Dictionary<Block, Estimate>? Hutchinson) Measure(
        LanguageModel model,
        IReadOnlyList<(Tensor Inputs, Tensor Targets)> batches,
        bool hutchinson,
        ulong seed
    )
    {
        var (proxy, hessian, _) = Measure(model, batches, hutchinson, seed, null);
        return (proxy, hessian);
    }

    /// <summary>The estimates for a model over the given (inputs, targets) batches (one Hutchinson probe per batch;
    /// the preconditioned one when <paramref name="preconditioners"/> are given, with the same probes). Attention runs
    /// as explicit math during the measurement, which double backward needs.</summary>
    public static (
        Dictionary<Block, Estimate> Proxy,
        Dictionary<Block, Estimate>? Hutchinson,
        Dictionary<Block, Estimate>? Preconditioned
    ) Measure(
        LanguageModel model,
        IReadOnlyList<(Tensor Inputs, Tensor Targets)> batches,
        bool hutchinson,
        ulong seed,
        IReadOnlyList<Tensor>? preconditioners
    )
    {
        var parameters = ByBlock(model);
        var wasMath = model.MathAttention;
        model.MathAttention = true;
        model.eval(); // no dropout anywhere, but the measurement is of the model as evaluated
        try
        {
            var proxy = Summarize(
                batches.Select(b =>
                    ProxySample(
                        () => LanguageModel.Loss(model.forward(b.Inputs), b.Targets),
                        parameters,
                        (int)b.Inputs.shape[0]
                    )
                )
            );
            Dictionary<Block, Estimate>? Probed(IReadOnlyList<Tensor>? p)
            {
                var generator = new Generator(seed); // the same probes for both estimates
                return Summarize(
                    batches.Select(b =>
                        PreconditionedSample(
                            () => LanguageModel.Loss(model.forward(b.Inputs), b.Targets),
                            parameters,
                            p,
                            generator
                        )
                    )
                );
            }
            return (proxy, hutchinson ? Probed(null) : null, preconditioners is null ? null : Probed(preconditioners));
        }
        finally
        {
            model.MathAttention = wasMath;
        }
    }
}
