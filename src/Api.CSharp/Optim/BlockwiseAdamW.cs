using BlockwiseLR.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>
/// AdamW (PyTorch's semantics: decoupled decay p *= 1 - lr*wd, then the bias-corrected Adam update) with one LR
/// per block kind, on flat buffers. Per step and group: p *= 1 - lr*wd; m = lerp(m, g, 1-b1);
/// v = b2 v + (1-b2) g^2; p -= (lr / bc1) * m / (sqrt(v)/sqrt(bc2) + eps), with the last line computed as
/// p -= (lr sqrt(bc2) / bc1) * m / (sqrt(v) + eps sqrt(bc2)) to save one pass.
/// </summary>
public sealed class BlockwiseAdamW : FlatBlockOptimizer
{
    readonly Dictionary<FlatGroup, (Tensor M, Tensor V)> moments = [];

    public BlockwiseAdamW(IEnumerable<(string Name, Parameter Parameter)> parameters, AdamSettings settings, BlockRules? rules = null)
        : base(parameters, settings, rules)
    {
        foreach (var g in Groups)
            moments[g] = (zeros_like(g.Params).DetachFromDisposeScope(), zeros_like(g.Params).DetachFromDisposeScope());
    }

    protected override void Update(Func<Block, double> learningRate)
    {
        var (b1, b2, eps, wd) = (Settings.Beta1, Settings.Beta2, Settings.Eps, Settings.WeightDecay);
        var (bc1, bc2Sqrt) = BiasCorrections();
        foreach (var g in Groups)
        {
            var lr = learningRate(g.Block);
            var (m, v) = moments[g];
            foreach (var (start, length) in Chunks(g.Length, g.Params.device))
            {
                using var chunk = NewDisposeScope();
                var p = g.Params.narrow(0, start, length);
                var grad = g.Grads.narrow(0, start, length);
                var mc = m.narrow(0, start, length);
                var vc = v.narrow(0, start, length);
                if (g.Decays && wd != 0) p.mul_(1 - lr * wd);
                mc.lerp_(grad, 1 - b1);
                vc.mul_(b2).addcmul_(grad, grad, 1 - b2);
                p.addcdiv_(mc, vc.sqrt().add_(eps * bc2Sqrt), -lr / bc1 * bc2Sqrt);
            }
        }
    }

    public override IReadOnlyDictionary<Block, long> StateBytes =>
        Groups.GroupBy(g => g.Block).ToDictionary(b => b.Key, b => b.Sum(g => 2 * 4 * g.Length));

    protected override (Tensor ExpAvg, Tensor ExpAvgSq) Moments(OptimizedParameter parameter)
    {
        var g = Owner[parameter];
        return (g.Slice(moments[g].M, parameter), g.Slice(moments[g].V, parameter));
    }

    public override void Dispose()
    {
        foreach (var (m, v) in moments.Values) { m.Dispose(); v.Dispose(); }
        base.Dispose();
    }
}
