using BlockwiseLR.Core;
using BlockwiseLR.Models;
using Microsoft.FSharp.Collections;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

/// <summary>
/// Per-block sharpness (method.md section 2), averaged over mini-batches or probes, each with its standard error:
/// the paper's proxy S(b) = B ||grad_b L_B||^2 / #params(b), and Hutchinson's estimate of the mean Hessian
/// diagonal, mean over b of z * (H z) with Rademacher z, from Hessian-vector products by double backward.
/// </summary>
public static class SharpnessEstimator
{
    /// <summary>Parameters grouped by block (every parameter must be a whole-tensor block).</summary>
    public static IReadOnlyList<(Block Block, Parameter Parameter)> ByBlock(LanguageModel model, BlockRules? rules = null)
    {
        var named = model.named_parameters().ToList();
        var blocks = (rules ?? BlockRules.Default).WholeBlocks(named.Select(p => new ParameterShape(p.name, p.parameter.shape)));
        return blocks.Zip(named, (block, p) => (block, p.parameter)).ToList();
    }

    /// <summary>One proxy sample per block from one loss: B ||grad_b||^2 / #params(b).</summary>
    public static Dictionary<Block, double> ProxySample(Func<Tensor> loss, IReadOnlyList<(Block Block, Parameter Parameter)> parameters, int batchSize)
    {
        using var scope = NewDisposeScope();
        var inputs = parameters.Select(p => (Tensor)p.Parameter).ToList();
        var grads = autograd.grad([loss()], inputs);
        return parameters.Select((p, i) => (p.Block, Squared: grads[i].square().sum().to(float64).item<double>(), Count: p.Parameter.numel()))
            .GroupBy(x => x.Block)
            .ToDictionary(g => g.Key, g => Sharpness.proxy(batchSize, g.Sum(x => x.Squared), g.Sum(x => x.Count)));
    }

    /// <summary>One Hutchinson sample per block from one loss: the block's mean of z * (H z), z Rademacher.</summary>
    public static Dictionary<Block, double> HutchinsonSample(Func<Tensor> loss, IReadOnlyList<(Block Block, Parameter Parameter)> parameters, Generator generator)
    {
        using var scope = NewDisposeScope();
        var inputs = parameters.Select(p => (Tensor)p.Parameter).ToList();
        var grads = autograd.grad([loss()], inputs, retain_graph: true, create_graph: true);
        // Drawn on the CPU generator and moved: the same probes on every device.
        var probes = inputs.Select(p => (randint(0, 2, p.shape, dtype: p.dtype, generator: generator) * 2 - 1).to(p.device)).ToList();
        var dot = grads.Zip(probes, (g, z) => (g * z).sum()).Aggregate((a, b) => a + b);
        var hz = autograd.grad([dot], inputs);
        return parameters.Select((p, i) => (p.Block, Sum: (probes[i] * hz[i]).sum().to(float64).item<double>(), Count: p.Parameter.numel()))
            .GroupBy(x => x.Block)
            .ToDictionary(g => g.Key, g => g.Sum(x => x.Sum) / g.Sum(x => x.Count));
    }

    /// <summary>Summaries over samples, per block.</summary>
    public static Dictionary<Block, Estimate> Summarize(IEnumerable<Dictionary<Block, double>> samples) =>
        samples.SelectMany(s => s).GroupBy(kv => kv.Key)
            .ToDictionary(g => g.Key, g => Sharpness.summarize(ListModule.OfSeq(g.Select(kv => kv.Value))));

    /// <summary>Both estimates for a model over the given (inputs, targets) batches (one Hutchinson probe per
    /// batch). Attention runs as explicit math during the measurement, which double backward needs.</summary>
    public static (Dictionary<Block, Estimate> Proxy, Dictionary<Block, Estimate>? Hutchinson) Measure(
        LanguageModel model, IReadOnlyList<(Tensor Inputs, Tensor Targets)> batches, bool hutchinson, ulong seed)
    {
        var parameters = ByBlock(model);
        var wasMath = model.MathAttention;
        model.MathAttention = true;
        model.eval();   // no dropout anywhere, but the measurement is of the model as evaluated
        try
        {
            var proxy = Summarize(batches.Select(b => ProxySample(() => LanguageModel.Loss(model.forward(b.Inputs), b.Targets), parameters, (int)b.Inputs.shape[0])));
            if (!hutchinson) return (proxy, null);
            var generator = new Generator(seed);
            var hessian = Summarize(batches.Select(b => HutchinsonSample(() => LanguageModel.Loss(model.forward(b.Inputs), b.Targets), parameters, generator)));
            return (proxy, hessian);
        }
        finally { model.MathAttention = wasMath; }
    }
}
