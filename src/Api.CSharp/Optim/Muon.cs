using BlockwiseLR.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>
/// Muon as Moonlight writes it (MoonshotAI/Moonlight examples/toy_train.py, the API the paper's C4 script calls), with
/// one LR per block kind, on flat buffers. The hidden matrices (QK, VO, FFN; <see cref="MuonRules.Orthogonalizes"/>)
/// take Nesterov momentum (buf = 0.95 buf + g; u = g + 0.95 buf), five quintic Newton-Schulz steps on u divided by
/// its Frobenius norm + 1e-7 (transposed when rows &gt; cols), then p *= 1 - lr*wd; p -= lr * 0.2 sqrt(max(rows,
/// cols)) * NS(u). Embeddings, the head, norms and biases take Moonlight's AdamW in the same optimizer:
/// m = lerp(m, g, 1-b1); v = lerp(v, g^2, 1-b2); p *= 1 - lr*wd; p -= lr sqrt(bc2)/bc1 * m / (sqrt(v) + eps).
/// Newton-Schulz runs batched: one batched matmul per shape per iteration over every matrix of that shape (after
/// transposing, so (r, c) and (c, r) share a batch). Under ZeRO-1 a rank owns whole matrices (each matrix is one
/// chunk of the grid), orthogonalizes those and the parameters are gathered, as the reference's distributed Muon does.
/// </summary>
public sealed class Muon : FlatBlockOptimizer
{
    readonly Dictionary<FlatGroup, Tensor> momentum = [];
    readonly Dictionary<FlatGroup, (Tensor M, Tensor V)> moments = [];

    /// <summary>Muon over the hidden matrices (QK, VO, FFN) and Moonlight's AdamW over the rest of <paramref
    /// name="parameters"/>, a learning rate per block, blocks assigned by <paramref name="rules"/> (default the
    /// built-in names); <paramref name="parallel"/> spreads it over a data-parallel run (default one
    /// process).</summary>
    public Muon(
        IEnumerable<(string Name, Parameter Parameter)> parameters,
        AdamSettings settings,
        BlockRules? rules = null,
        DataParallel? parallel = null
    )
        : base(parameters, settings, rules, parallel, p => MuonRules.Orthogonalizes(p.Block.ToCore(), p.Tensor.shape))
    {
        // Each matrix is one v-block, so a chunk of the grid (and a ZeRO-1 shard) never splits a matrix.
        Distribute(g =>
            g.Orthogonalized ? g.Members.Select((p, i) => (g.Offsets[i], 1L, p.Numel)) : [(0, g.Length, 1)]
        );
        foreach (var g in Groups)
        {
            var length = Part(g).Length;
            if (g.Orthogonalized)
                momentum[g] = zeros(length, device: g.Params.device).DetachFromDisposeScope();
            else
                moments[g] = (
                    zeros(length, device: g.Params.device).DetachFromDisposeScope(),
                    zeros(length, device: g.Params.device).DetachFromDisposeScope()
                );
        }
    }

    /// <summary>The Newton-Schulz precision in use: the setting, with Auto as bfloat16 on CUDA and float32 on the
    /// CPU.</summary>
    public ScalarType NewtonSchulzType =>
        Settings.NewtonSchulz switch
        {
            NewtonSchulzPrecision.Float32 => ScalarType.Float32,
            NewtonSchulzPrecision.BFloat16 => ScalarType.BFloat16,
            _ => Parameters[0].Tensor.device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32,
        };

    /// <summary>Newton-Schulz over all matrices of one shape at once (default), or one matrix at a time (the
    /// benchmark's comparison).</summary>
    internal bool Batched { get; set; } = true;

    /// <inheritdoc/>
    protected override void Update(Func<Block, double> learningRate)
    {
        var wd = Settings.WeightDecay;
        var matrices = new List<(FlatGroup Group, GridChunk Chunk, long[] Shape, double Lr)>();
        foreach (var g in Groups)
        {
            var lr = learningRate(g.Block);
            if (g.Orthogonalized)
                // A matrix is one v-block of its group's grid, so a chunk's first v-block is its member's index.
                matrices.AddRange(OwnChunks(g).Select(c => (g, c, g.Members[(int)c.VStart].Tensor.shape, lr)));
            else
                AdamWStep(g, lr);
        }
        var batches = Batched
            ? matrices.GroupBy(x => Oriented(x.Shape)).Select(b => b.ToList())
            : matrices.Select(x => new[] { x }.ToList());
        foreach (var batch in batches)
        {
            // One batch's u, Newton-Schulz stack and temporaries at a time.
            using var scope = Temporaries.Open();
            var u = batch.Select(x => MomentumStep(x.Group, x.Chunk).view(x.Shape)).ToList();
            var orthogonal = NewtonSchulz(u);
            for (var i = 0; i < batch.Count; i++)
            {
                var (g, c, shape, lr) = batch[i];
                var p = At(g, c).Params.view(shape);
                if (g.Decays && wd != 0)
                    p.mul_(1 - lr * wd);
                p.add_(orthogonal[i], -lr * MuonRules.Scale(shape[0], shape[1]));
            }
        }
    }

    /// <summary>A matrix's shape with rows &lt;= cols (the orientation Newton-Schulz runs in).</summary>
    static (long Rows, long Cols) Oriented(long[] shape) =>
        (Math.Min(shape[0], shape[1]), Math.Max(shape[0], shape[1]));

    /// <summary>Nesterov momentum of one matrix (a chunk): buf = mu buf + g, and u = g + mu buf returned as a new
    /// flat tensor.</summary>
    Tensor MomentumStep(FlatGroup g, GridChunk c)
    {
        var mu = MuonRules.Momentum;
        var grad = At(g, c).Grads;
        var buf = Local(momentum[g], g, c);
        buf.mul_(mu).add_(grad);
        return grad.add(buf, mu);
    }

    /// <summary>Orthogonalizes matrices of one oriented shape together: each divided by its Frobenius norm + 1e-7,
    /// then X = a X + (b A + c A A) X with A = X X^T, five times, in the Newton-Schulz precision; returned in float32
    /// and in each matrix's own orientation.</summary>
    List<Tensor> NewtonSchulz(IReadOnlyList<Tensor> matrices)
    {
        var (a, b, c) = MuonRules.Coefficients;
        var type = NewtonSchulzType;
        var transposed = matrices.Select(m => m.shape[0] > m.shape[1]).ToList();
        var x = stack(matrices.Select((m, i) => (transposed[i] ? m.t() : m).to(type)).ToArray());
        x = x / (linalg.vector_norm(x, 2, [1, 2], keepdim: true) + MuonRules.NormEps);
        for (var step = 0; step < MuonRules.Steps; step++)
        {
            // The reference's operations in its order, each rounded where it rounds; one iteration's temporaries at
            // a time.
            using var iteration = NewDisposeScope();
            var aa = x.bmm(x.mT);
            // Python's `b * A + c * A @ A`: * and @ bind alike, left to right, so the last term is (c A) @ A.
            var bb = b * aa + (c * aa).bmm(aa);
            var next = (a * x + bb.bmm(x)).MoveToOuterDisposeScope();
            x.Dispose();
            x = next;
        }
        return matrices.Select((_, i) => (transposed[i] ? x[i].t() : x[i]).to(ScalarType.Float32)).ToList();
    }

    void AdamWStep(FlatGroup g, double lr)
    {
        var (b1, b2, eps, wd) = (Settings.Beta1, Settings.Beta2, Settings.Eps, Settings.WeightDecay);
        var (bc1, bc2Sqrt) = BiasCorrections();
        var (m, v) = moments[g];
        foreach (var c in OwnChunks(g))
        {
            using var chunk = Temporaries.Open();
            var (p, grad) = At(g, c);
            var (mc, vc) = (Local(m, g, c), Local(v, g, c));
            mc.lerp_(grad, 1 - b1);
            vc.lerp_(grad.square(), 1 - b2);
            if (g.Decays && wd != 0)
                p.mul_(1 - lr * wd);
            p.addcdiv_(mc, vc.sqrt().add_(eps), -lr * bc2Sqrt / bc1);
        }
    }

    private protected override IEnumerable<StateBuffer> StateBuffers(FlatGroup g) =>
        g.Orthogonalized
            ? [new("momentum_buffer", momentum[g], false, (full, p) => g.Slice(full, p))]
            :
            [
                new("exp_avg", moments[g].M, false, (full, p) => g.Slice(full, p)),
                new("exp_avg_sq", moments[g].V, false, (full, p) => g.Slice(full, p)),
            ];
}
