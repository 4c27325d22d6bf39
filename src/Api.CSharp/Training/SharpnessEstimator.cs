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
        var probes = inputs.Select(p => randint(0, 2, p.shape, dtype: p.dtype, device: p.device, generator: generator) * 2 - 1).ToList();
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

/// <summary>One checkpoint's measurement.</summary>
public sealed record SharpnessRow(int Step, Block Block, Estimate Proxy, Estimate? Hutchinson);

/// <summary>`blr sharpness`: every checkpoint of a run (or the ones asked for), measured on the first val windows.</summary>
public static class SharpnessReport
{
    /// <summary>The measured order of the paper's five blocks at one step, flattest first, by the proxy or by
    /// Hutchinson's estimate, and whether it is the paper's S(Emb) &lt; S(QK) &lt; S(FFN) &lt; S(VO) &lt; S(Norm).</summary>
    public static (IReadOnlyList<Block> FlattestFirst, bool MatchesPaper) Ordering(IEnumerable<SharpnessRow> rowsOfOneStep, bool hutchinson)
    {
        var measured = rowsOfOneStep.Where(r => !hutchinson || r.Hutchinson is not null)
            .Select(r => Tuple.Create(r.Block.ToCore(), hutchinson ? r.Hutchinson!.Mean : r.Proxy.Mean));
        var order = Sharpness.order(ListModule.OfSeq(measured));
        return (order.Select(k => k.ToCSharp()).ToList(), Sharpness.matchesPaper(order));
    }

    public static (IReadOnlyList<SharpnessRow> Rows, string Csv, string Png) Measure(string run, string data, IReadOnlyList<int>? steps,
        int batches, int batchSize, int seqLen, bool hutchinson, ulong seed, Action<string>? starting = null)
    {
        var folder = Checkpoints.Folder(run);
        var checkpoints = (Directory.Exists(folder) ? Directory.GetDirectories(folder, "step_*") : [])
            .Select(d => (Step: int.Parse(Path.GetFileName(d)["step_".Length..], System.Globalization.CultureInfo.InvariantCulture), Dir: d))
            .Where(c => steps is null || steps.Contains(c.Step)).OrderBy(c => c.Step).ToList();
        if (checkpoints.Count == 0)
            throw new ArgumentException($"{run}: no checkpoints{(steps is null ? "" : " at the steps asked for")}; train with --checkpoint-every N --keep-checkpoints K to keep several");
        TorchRuntime.EnsureAvailable();
        using var val = Data.TokenDataset.Open(data, "val");
        var rows = new List<SharpnessRow>();
        foreach (var (step, dir) in checkpoints)
        {
            starting?.Invoke($"step {step}");
            using var scope = NewDisposeScope();
            using var model = HfFormat.Load(dir);
            var windows = Data.Windows.Validation(val, seqLen, batchSize, (long)batches * batchSize).ToList();
            var (proxy, hessian) = SharpnessEstimator.Measure(model, windows, hutchinson, seed);
            rows.AddRange(proxy.OrderBy(kv => kv.Key).Select(kv => new SharpnessRow(step, kv.Key, kv.Value, hessian?[kv.Key])));
        }
        var csv = Path.Combine(run, "sharpness.csv");
        File.WriteAllLines(csv, rows.Select(r => FormattableString.Invariant(
            $"{r.Step},{r.Block.Key()},{r.Proxy.Mean:R},{r.Proxy.StdErr:R},{r.Hutchinson?.Mean:R},{r.Hutchinson?.StdErr:R}")).Prepend("step,block,proxy,proxy_stderr,hutchinson,hutchinson_stderr"));
        // log10 sharpness per block against step (the Hutchinson estimate where measured, else the proxy).
        var png = Plots.Save(Path.Combine(run, "sharpness.png"), "log10 sharpness per block (Hutchinson where measured, else the proxy)",
            rows.GroupBy(r => r.Block).Select(g => new Plots.Curve(g.Key.ToString(), g.Select(r => (double)r.Step).ToArray(),
                g.Select(r => Math.Log10(Math.Max(1e-30, (r.Hutchinson ?? r.Proxy).Mean))).ToArray())));
        return (rows, csv, png);
    }
}
