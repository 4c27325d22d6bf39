using BlockwiseLR.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>The plain, obviously-correct AdamW: a loop over parameters written as PyTorch's single-tensor
/// AdamW reads. The flat-buffer <see cref="BlockwiseAdamW"/> is tested against it.</summary>
internal sealed class ReferenceAdamW : BlockOptimizer
{
    readonly Dictionary<OptimizedParameter, (Tensor M, Tensor V)> moments;

    /// <summary>A per-tensor AdamW (no flat buffers) over <paramref name="parameters"/>, kept to check <see
    /// cref="BlockwiseAdamW"/> against.</summary>
    public ReferenceAdamW(
        IEnumerable<(string Name, Parameter Parameter)> parameters,
        AdamSettings settings,
        BlockRules? rules = null
    )
        : base(parameters, settings, rules) =>
        moments = Parameters.ToDictionary(
            p => p,
            p => (zeros_like(p.Tensor).DetachFromDisposeScope(), zeros_like(p.Tensor).DetachFromDisposeScope())
        );

    /// <inheritdoc/>
    protected override void Update(Func<Block, double> learningRate)
    {
        var (b1, b2, eps, wd) = (Settings.Beta1, Settings.Beta2, Settings.Eps, Settings.WeightDecay);
        foreach (var p in Parameters)
        {
            if (p.Tensor.grad is not { } grad)
                continue;
            var lr = learningRate(p.Block);
            var (m, v) = moments[p];
            if (p.Decays)
                p.Tensor.mul_(1 - lr * wd);
            m.lerp_(grad, 1 - b1);
            v.mul_(b2).addcmul_(grad, grad, 1 - b2);
            var (biasCorrection1, biasCorrection2Sqrt) = BiasCorrections();
            var denominator = (v.sqrt() / biasCorrection2Sqrt).add_(eps);
            p.Tensor.addcdiv_(m, denominator, -lr / biasCorrection1);
        }
    }

    /// <inheritdoc/>
    public override void ZeroGrad()
    {
        foreach (var p in Parameters)
            p.Tensor.grad?.zero_();
    }

    /// <inheritdoc/>
    protected override IEnumerable<(Block Block, Tensor Gradient)> GradientBuffers() =>
        Parameters.Where(p => p.Tensor.grad is not null).Select(p => (p.Block, p.Tensor.grad!));

    /// <inheritdoc/>
    public override IReadOnlyDictionary<Block, long> StateBytes =>
        Parameters.GroupBy(p => p.Block).ToDictionary(b => b.Key, b => b.Sum(p => 8 * p.Numel));

    /// <inheritdoc/>
    protected override (Tensor ExpAvg, Tensor ExpAvgSq) Moments(OptimizedParameter parameter) => moments[parameter];
}

/// <summary>The plain Adam-mini: a loop over parameters and, within each, over its v-blocks, following
/// docs/method.md section 6 literally. The flat-buffer <see cref="AdamMini"/> is tested against it.</summary>
internal sealed class ReferenceAdamMini : BlockOptimizer
{
    readonly Dictionary<OptimizedParameter, (Tensor M, Tensor V, AdamMiniPlan Plan)> state;

    /// <summary>A per-tensor Adam-mini (no flat buffers) over <paramref name="parameters"/>, kept to check <see
    /// cref="AdamMini"/> against.</summary>
    public ReferenceAdamMini(
        IEnumerable<(string Name, Parameter Parameter)> parameters,
        AdamSettings settings,
        AttentionShape attention,
        BlockRules? rules = null
    )
        : base(parameters, settings, rules) =>
        state = Parameters.ToDictionary(
            p => p,
            p =>
            {
                var plan = AdamMini.PlanOf(p, attention);
                return (
                    zeros_like(p.Tensor).DetachFromDisposeScope(),
                    zeros(AdamMiniRules.VCount(plan), dtype: ScalarType.Float32, device: p.Tensor.device)
                        .DetachFromDisposeScope(),
                    plan
                );
            }
        );

    /// <inheritdoc/>
    protected override void Update(Func<Block, double> learningRate)
    {
        var (b1, b2, eps, wd) = (Settings.Beta1, Settings.Beta2, Settings.Eps, Settings.WeightDecay);
        foreach (var p in Parameters)
        {
            if (p.Tensor.grad is not { } grad)
                continue;
            var lr = learningRate(p.Block);
            var (m, v, plan) = state[p];
            if (p.Decays)
                p.Tensor.mul_(1 - lr * wd);
            m.lerp_(grad, 1 - b1);
            var flatGrad = grad.reshape(-1);
            var flatParam = p.Tensor.view(-1);
            var flatM = m.view(-1);
            long vIndex = 0;
            foreach (var segment in plan.Segments)
                for (long block = 0; block < segment.Blocks; block++, vIndex++)
                {
                    var start = segment.Offset + block * segment.BlockSize;
                    var g = flatGrad.narrow(0, start, segment.BlockSize);
                    var vb = v.narrow(0, vIndex, 1);
                    vb.mul_(b2).add_(g.square().mean(), 1 - b2);
                    var (biasCorrection1, biasCorrection2Sqrt) = BiasCorrections();
                    var stepSize = lr / biasCorrection1;
                    var h = (vb.sqrt() / biasCorrection2Sqrt).add_(eps);
                    flatParam
                        .narrow(0, start, segment.BlockSize)
                        .addcdiv_(flatM.narrow(0, start, segment.BlockSize), h, -stepSize);
                }
        }
    }

    /// <inheritdoc/>
    public override void ZeroGrad()
    {
        foreach (var p in Parameters)
            p.Tensor.grad?.zero_();
    }

    /// <inheritdoc/>
    protected override IEnumerable<(Block Block, Tensor Gradient)> GradientBuffers() =>
        Parameters.Where(p => p.Tensor.grad is not null).Select(p => (p.Block, p.Tensor.grad!));

    /// <inheritdoc/>
    public override IReadOnlyDictionary<Block, long> StateBytes =>
        Parameters.GroupBy(p => p.Block).ToDictionary(b => b.Key, b => b.Sum(p => 4 * (p.Numel + state[p].V.numel())));

    /// <inheritdoc/>
    protected override (Tensor ExpAvg, Tensor ExpAvgSq) Moments(OptimizedParameter parameter) =>
        (state[parameter].M, state[parameter].V);
}
