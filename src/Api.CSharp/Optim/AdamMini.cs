using BlockwiseLR.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>
/// Adam-mini (the official 1.1.1 rules, docs/method.md section 6) with one LR per block kind, on flat buffers: m per
/// coordinate, one v per block of coordinates (per head for Q and K, per row for V, O, FFN, embeddings and head,
/// per tensor for norms, per coordinate for biases). Per step: p *= 1 - lr*wd; m = lerp(m, g, 1-b1);
/// v_b = b2 v_b + (1-b2) mean_b(g^2); p -= (lr / bc1) * m / (sqrt(v_b)/sqrt(bc2) + eps).
/// Where 1.1.1 has no rule for our layout we follow its intent: one v per output neuron of a Linear (out, in)
/// matrix, and the position embedding one v per row like the token embedding.
/// </summary>
public sealed class AdamMini : FlatBlockOptimizer
{
    readonly Dictionary<FlatGroup, (Tensor M, Tensor V, IReadOnlyList<long> VOffsets)> state = [];

    /// <summary>Adam-mini for a built-in model's config (its attention shape cuts Q and K into heads).</summary>
    public AdamMini(
        IEnumerable<(string Name, Parameter Parameter)> parameters,
        AdamSettings settings,
        ModelConfig config,
        BlockRules? rules = null,
        DataParallel? parallel = null
    )
        : this(parameters, settings, ModelConfigRules.Attention(config), rules, parallel) { }

    /// <summary>Adam-mini over <paramref name="parameters"/> (fp32; an ArgumentException otherwise), with one second
    /// moment per head for attention (<paramref name="attention"/> gives the head shapes) and per output neuron
    /// elsewhere, blocks assigned by <paramref name="rules"/> (default the built-in names); <paramref name="parallel"/>
    /// spreads it over a data-parallel run (default one process).</summary>
    public AdamMini(
        IEnumerable<(string Name, Parameter Parameter)> parameters,
        AdamSettings settings,
        AttentionShape attention,
        BlockRules? rules = null,
        DataParallel? parallel = null
    )
        : base(parameters, settings, rules, parallel)
    {
        AdamMiniRules.ValidateAttention(attention).OrThrow(reason => new ArgumentException(reason));
        Plans = Parameters.ToDictionary(p => p, p => PlanOf(p, attention));
        var segments = Groups.ToDictionary(g => g, g => AdamMiniRules.Concat(g.Members.Select(p => Plans[p])));
        Distribute(g => segments[g].Select(s => (s.Offset, s.Blocks, s.BlockSize)));
        foreach (var g in Groups)
        {
            var vOffsets = g
                .Members.Select(p => AdamMiniRules.VCount(Plans[p]))
                .Aggregate(new List<long> { 0 }, (acc, n) =>
                {
                    acc.Add(acc[^1] + n);
                    return acc;
                });
            var part = Part(g);
            state[g] = (
                zeros(part.Length, device: g.Params.device).DetachFromDisposeScope(),
                zeros(part.VLength, dtype: ScalarType.Float32, device: g.Params.device).DetachFromDisposeScope(),
                vOffsets
            );
        }
    }

    /// <summary>The v-block layout of every parameter (core plans, for the optimizer itself).</summary>
    internal IReadOnlyDictionary<OptimizedParameter, AdamMiniPlan> Plans { get; }

    /// <summary>How many second-moment scalars (v) each parameter keeps: one per head, row, tensor or
    /// coordinate.</summary>
    public IReadOnlyDictionary<string, long> SecondMomentCounts =>
        Plans.ToDictionary(kv => kv.Key.Name, kv => AdamMiniRules.VCount(kv.Value));

    internal static AdamMiniPlan PlanOf(OptimizedParameter p, AttentionShape attention)
    {
        return AdamMiniRules
            .Plan(attention, p.Name, p.Tensor.shape, p.Block.ToCore())
            .OrThrow(reason => new ArgumentException(reason));
    }

    /// <inheritdoc/>
    protected override void Update(Func<Block, double> learningRate)
    {
        var (b1, b2, eps, wd) = (Settings.Beta1, Settings.Beta2, Settings.Eps, Settings.WeightDecay);
        var (bc1, bc2Sqrt) = BiasCorrections();
        foreach (var g in Groups)
        {
            var lr = learningRate(g.Block);
            var (m, v, _) = state[g];
            var (first, _, vFirst, _) = Part(g);
            // The grid's chunks are whole v-blocks of one size.
            foreach (var c in OwnChunks(g))
            {
                using var chunk = Temporaries.Open();
                var shape = new long[] { c.Blocks, c.BlockSize };
                var p = g.Params.narrow(0, c.Start, c.Length).view(shape);
                var grad = g.Grads.narrow(0, c.Start, c.Length).view(shape);
                var mc = m.narrow(0, c.Start - first, c.Length).view(shape);
                var vc = v.narrow(0, c.VStart - vFirst, c.Blocks);
                if (g.Decays && wd != 0)
                    p.mul_(1 - lr * wd);
                mc.lerp_(grad, 1 - b1);
                vc.mul_(b2).add_(grad.square().mean([1]), 1 - b2);
                p.addcdiv_(mc, vc.sqrt().add_(eps * bc2Sqrt).unsqueeze(1), -lr / bc1 * bc2Sqrt);
            }
        }
    }

    private protected override IEnumerable<StateBuffer> StateBuffers(FlatGroup g)
    {
        var (m, v, vOffsets) = state[g];
        return
        [
            new("exp_avg", m, false, (full, p) => g.Slice(full, p)),
            new("exp_avg_sq", v, true, (full, p) =>
                full.narrow(0, vOffsets[g.IndexOf(p)], vOffsets[g.IndexOf(p) + 1] - vOffsets[g.IndexOf(p)])
            ),
        ];
    }
}
