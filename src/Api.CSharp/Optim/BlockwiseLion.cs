using BlockwiseLR.Core;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>
/// Lion as the paper's official lion.py has it, with one LR per block kind, on flat buffers. Per step and group:
/// p *= 1 - lr*wd (coupled to the LR, as that file does it); p -= lr * sign(lerp(m, g, 1-b1)); m = lerp(m, g, 1-b2).
/// One state tensor (m, saved as exp_avg) per parameter. Use <see cref="AdamSettings.ForLion"/> for the official
/// scripts' betas (0.95, 0.98) and weight decay 1.0.
/// </summary>
public sealed class BlockwiseLion : FlatBlockOptimizer
{
    readonly Dictionary<FlatGroup, Tensor> momentum = [];

    /// <summary>Lion with a learning rate per block over <paramref name="parameters"/>, blocks assigned by <paramref
    /// name="rules"/> (default the built-in names); <paramref name="parallel"/> spreads it over a data-parallel run
    /// (default one process).</summary>
    public BlockwiseLion(
        IEnumerable<(string Name, Parameter Parameter)> parameters,
        AdamSettings settings,
        BlockRules? rules = null,
        DataParallel? parallel = null
    )
        : base(parameters, settings, rules, parallel)
    {
        Distribute(g => [(0, g.Length, 1)]);
        foreach (var g in Groups)
            momentum[g] = zeros(Part(g).Length, device: g.Params.device).DetachFromDisposeScope();
    }

    /// <inheritdoc/>
    protected override void Update(Func<Block, double> learningRate)
    {
        var (b1, b2, wd) = (Settings.Beta1, Settings.Beta2, Settings.WeightDecay);
        foreach (var g in Groups)
        {
            var lr = learningRate(g.Block);
            foreach (var c in OwnChunks(g))
            {
                using var chunk = Temporaries.Open();
                var (p, grad) = At(g, c);
                var mc = Local(momentum[g], g, c);
                if (g.Decays && wd != 0)
                    p.mul_(1 - lr * wd);
                p.add_(mc.lerp(grad, 1 - b1).sign_(), -lr);
                mc.lerp_(grad, 1 - b2);
            }
        }
    }

    private protected override IEnumerable<StateBuffer> StateBuffers(FlatGroup g) =>
        [new("exp_avg", momentum[g], false, (full, p) => g.Slice(full, p))];
}
