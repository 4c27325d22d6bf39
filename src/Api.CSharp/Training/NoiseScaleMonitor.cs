using BlockwiseLR.Core;

namespace BlockwiseLR.Training;

/// <summary>The gradient-noise scale B_simple = tr(Sigma) / |G|^2 of a step (docs/method.md section 10), in tokens:
/// of the whole model (<see cref="Tokens"/>) and of each block (null where the noise hides the signal).</summary>
/// <param name="Tokens">The whole model's noise scale in tokens (null: not measurable this step).</param>
/// <param name="Blocks">Each block's noise scale in tokens (null where the noise hides the signal).</param>
public sealed record NoiseScaleReading(double? Tokens, IReadOnlyDictionary<Block, double?> Blocks);

/// <summary>What a checkpoint holds of the noise-scale measurement: the weighted moving averages [small, big,
/// scale] per block (keyed emb, qk, ...) and of the whole model.</summary>
/// <param name="Measured">Measurements folded into the averages.</param>
/// <param name="Blocks">Each block's averages [small, big, scale], keyed by block key (emb, qk, ...).</param>
/// <param name="Model">The whole model's averages [small, big, scale].</param>
public sealed record NoiseScaleCheckpoint(int Measured, Dictionary<string, double[]> Blocks, double[] Model)
{
    /// <summary>The small batch the averages were measured at, in sequences (0: not recorded, before 0.3). A run
    /// resumed on another number of processes can measure at another; its averages then start afresh.</summary>
    public int SmallBatch { get; init; }

    /// <summary>The averages to continue from at small batch <paramref name="small"/>: these, or a fresh start
    /// when they were measured at another.</summary>
    internal NoiseScaleState StateAt(int small) =>
        FitsSmallBatch(small) ? NoiseScaleRules.Restore(Measured, Blocks, Model) : NoiseScaleRules.Start;

    /// <summary>Whether these averages can continue at small batch <paramref name="small"/>.</summary>
    internal bool FitsSmallBatch(int small) => SmallBatch == 0 || SmallBatch == small;

    /// <summary>A checkpoint of <paramref name="state"/>, measured at small batch <paramref name="small"/>.</summary>
    internal static NoiseScaleCheckpoint Of(NoiseScaleState state, int small)
    {
        var (blocks, model) = NoiseScaleRules.Saved(state);
        return new(state.Measured, blocks, model) { SmallBatch = small };
    }
}

/// <summary>
/// <see cref="DebugOptions.NoiseScaleEvery"/>: every N steps, folds the small batch's squared gradient norm
/// (<see cref="ResolvedOptions.NoiseBatch"/>) and the whole batch's, per block and for the whole model, into
/// weighted moving averages (factor <see cref="Smoothing"/> per measurement) and reads B_simple from them. The
/// estimator is the core's (NoiseScale.fs).
/// </summary>
sealed class NoiseScaleMonitor
{
    /// <summary>The moving-average factor per measurement.</summary>
    public const double Smoothing = 0.9;

    readonly int every,
        small,
        big,
        seqLen;
    NoiseScaleState state;

    NoiseScaleMonitor(int every, int small, int big, int seqLen, NoiseScaleState state) =>
        (this.every, this.small, this.big, this.seqLen, this.state) = (every, small, big, seqLen, state);

    /// <summary>The monitor of a run that logs the noise scale (null otherwise), resumed from
    /// <paramref name="saved"/>.</summary>
    public static NoiseScaleMonitor? For(ResolvedOptions resolved, NoiseScaleCheckpoint? saved)
    {
        var every = resolved.Options.Debug.NoiseScaleEvery;
        if (every <= 0 || resolved.NoiseBatch < 1)
            return null;
        return new NoiseScaleMonitor(
            every,
            resolved.NoiseBatch,
            resolved.Options.Training.BatchSize,
            resolved.SeqLen,
            saved?.StateAt(resolved.NoiseBatch) ?? NoiseScaleRules.Start
        );
    }

    /// <summary>Whether step <paramref name="step"/> (from 0) is measured.</summary>
    public bool MeasuresAt(int step) => step % every == 0;

    /// <summary>Folds one measured step in: per block of <paramref name="blocks"/>, the whole batch's squared norm
    /// and the small batch's (<paramref name="smallSquared"/>, in the same order).</summary>
    public void Observe(
        IReadOnlyList<Block> blocks,
        IReadOnlyDictionary<Block, double> squared,
        IReadOnlyList<double> smallSquared
    ) =>
        state = NoiseScaleRules.Observe(
            Smoothing,
            blocks.Select((block, i) => (block.ToCore(), smallSquared[i], squared[block])),
            state
        );

    /// <summary>The noise scale from what was measured so far, in tokens.</summary>
    public NoiseScaleReading Reading(IEnumerable<Block> blocks) =>
        new(
            Tokens(NoiseScaleRules.OfModel(small, big, state)),
            blocks.ToDictionary(b => b, b => Tokens(NoiseScaleRules.OfBlock(small, big, state, b.ToCore())))
        );

    double? Tokens(double? sequences) => sequences * seqLen;

    /// <summary>The monitor's part of a checkpoint.</summary>
    public NoiseScaleCheckpoint Checkpoint() => NoiseScaleCheckpoint.Of(state, small);
}
