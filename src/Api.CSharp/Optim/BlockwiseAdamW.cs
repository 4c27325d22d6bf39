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

    /// <summary>AdamW with a learning rate per block over <paramref name="parameters"/>, blocks assigned by <paramref
    /// name="rules"/> (default the built-in names); <paramref name="parallel"/> spreads it over a data-parallel run
    /// (default one process).</summary>
    public BlockwiseAdamW(
        IEnumerable<(string Name, Parameter Parameter)> parameters,
        AdamSettings settings,
        BlockRules? rules = null,
        DataParallel? parallel = null
    )
        : base(parameters, settings, rules, parallel)
    {
        Distribute(g => [(0, g.Length, 1)]);
        foreach (var g in Groups)
        {
            var length = Part(g).Length;
            moments[g] = (
                zeros(length, device: g.Params.device).DetachFromDisposeScope(),
                zeros(length, device: g.Params.device).DetachFromDisposeScope()
            );
        }
    }

    /// <inheritdoc/>
    protected override void Update(Func<Block, double> learningRate)
    {
        var (b1, b2, eps, wd) = (Settings.Beta1, Settings.Beta2, Settings.Eps, Settings.WeightDecay);
        var (bc1, bc2Sqrt) = BiasCorrections();
        foreach (var g in Groups)
        {
            var lr = learningRate(g.Block);
            var (m, v) = moments[g];
            foreach (var c in OwnChunks(g))
            {
                using var chunk = Temporaries.Open();
                var (p, grad) = At(g, c);
                var (mc, vc) = (Local(m, g, c), Local(v, g, c));
                if (g.Decays && wd != 0)
                    p.mul_(1 - lr * wd);
                mc.lerp_(grad, 1 - b1);
                vc.mul_(b2).addcmul_(grad, grad, 1 - b2);
                p.addcdiv_(mc, vc.sqrt().add_(eps * bc2Sqrt), -lr / bc1 * bc2Sqrt);
            }
        }
    }

    private protected override IEnumerable<StateBuffer> StateBuffers(FlatGroup g) =>
        [
            new("exp_avg", moments[g].M, false, (full, p) => g.Slice(full, p)),
            new("exp_avg_sq", moments[g].V, false, (full, p) => g.Slice(full, p)),
        ];
}
