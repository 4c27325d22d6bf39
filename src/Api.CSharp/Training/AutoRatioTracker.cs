using BlockwiseLR.Core;
using TorchSharp;

namespace BlockwiseLR.Training;

/// <summary>What a checkpoint holds of auto ratios: the state of the rule (docs/method.md section 9), keyed by
/// block key (emb, qk, ...).</summary>
/// <param name="Steps">Steps the rule has observed.</param>
/// <param name="Smoothed">Each block's smoothed sharpness.</param>
/// <param name="Ratios">The ratios last set.</param>
/// <param name="SmallSquared">Each block's smoothed squared gradient norm over the small batch (noise correction; empty
/// without it).</param>
/// <param name="BigSquared">Each block's smoothed squared gradient norm over the whole batch (noise correction; empty
/// without it).</param>
public sealed record AutoRatioCheckpoint(
    int Steps,
    Dictionary<string, double> Smoothed,
    Dictionary<string, double> Ratios,
    Dictionary<string, double> SmallSquared,
    Dictionary<string, double> BigSquared
)
{
    /// <summary>The whole model's noise-scale measurement behind the regime factor (null: no noise
    /// measurement).</summary>
    public NoiseScaleCheckpoint? Noise { get; init; }

    /// <summary>The ratio in force for <paramref name="block"/> at the checkpoint (1 until the first update), as
    /// <see cref="StepReport.Ratios"/> reports it.</summary>
    public double RatioOf(Block block) => Ratios.TryGetValue(block.Key(), out var ratio) ? ratio : 1.0;
}

/// <summary>
/// Auto ratios during a run (<see cref="BlockRatios.Auto"/>): the rule's state, its observation of every step, the
/// LR it gives each block and its part of the checkpoint. The rule itself is the core's (AutoRatios.fs); a ratio r
/// gives a block the LR that fixed ratios at r give it.
/// </summary>
sealed class AutoRatioTracker
{
    readonly AutoRatioRule rule;
    readonly BlockSchedule schedule;
    readonly IReadOnlyDictionary<Block, long> parametersPerBlock;
    AutoRatioState state;

    AutoRatioTracker(
        AutoRatioRule rule,
        BlockSchedule schedule,
        IReadOnlyDictionary<Block, long> parametersPerBlock,
        AutoRatioState state
    )
    {
        (this.rule, this.schedule, this.parametersPerBlock, this.state) = (rule, schedule, parametersPerBlock, state);
    }

    /// <summary>The tracker of a run with auto ratios (null for fixed ratios), resumed from
    /// <paramref name="saved"/> when the checkpoint has its part.</summary>
    public static AutoRatioTracker? For(
        ResolvedOptions resolved,
        IReadOnlyDictionary<Block, long> parametersPerBlock,
        AutoRatioCheckpoint? saved
    )
    {
        if (!resolved.AutoRatios)
            return null;
        var settings = resolved.Options.Optimizer.Ratios.AutoSettings!;
        var rule = new AutoRatioRule(
            settings.Alpha,
            settings.MaxRatio,
            settings.Every,
            AutoRatioRules.Settle(resolved.Schedule.Spec.WarmupSteps, settings.Smoothing),
            settings.Smoothing,
            settings.Noise && resolved.NoiseBatch >= 1 ? resolved.NoiseBatch : resolved.Options.Training.BatchSize,
            resolved.Options.Training.BatchSize
        );
        // The noise averages continue only at the small batch they were measured at (a run resumed on another
        // number of processes may measure at another); otherwise they start afresh, the sharpness kept.
        var noiseFits = saved?.Noise?.FitsSmallBatch(rule.MicroBatch) == true;
        var state = saved is null
            ? AutoRatioRules.Start
            : AutoRatioRules.Restore(
                saved.Steps,
                saved.Smoothed,
                saved.Ratios,
                noiseFits ? saved.SmallSquared : [],
                noiseFits ? saved.BigSquared : [],
                saved.Noise?.StateAt(rule.MicroBatch) ?? NoiseScaleRules.Start
            );
        return new AutoRatioTracker(rule, resolved.Schedule, parametersPerBlock, state);
    }

    /// <summary>Whether each step also measures the small batch's gradient (the noise correction,
    /// <see cref="AutoRatioSettings.Noise"/>; not for a batch of one sequence).</summary>
    public bool MeasuresNoise => rule.MicroBatch < rule.Batch;

    /// <summary>Folds one step in: per block of <paramref name="blocks"/>, its squared gradient norm over the whole
    /// batch and, with the noise correction, over the small batch (<paramref name="smallSquared"/>, in the same
    /// order).</summary>
    public void Observe(
        IReadOnlyList<Block> blocks,
        IReadOnlyDictionary<Block, double> squared,
        IReadOnlyList<double>? smallSquared
    )
    {
        var measured = blocks.Select(
            (block, i) =>
                AutoRatioRules.Observation(block.ToCore(), squared[block], parametersPerBlock[block], smallSquared?[i])
        );
        state = AutoRatioRules.Observe(rule, measured, state);
    }

    /// <summary>The ratio in force for a block (1 until the first update).</summary>
    public double RatioOf(Block block) => AutoRatioRules.RatioOf(state, block.ToCore());

    /// <summary>The LR of a block during a step under the ratio in force.</summary>
    public double LrAt(Block block, int step) => AutoRatioRules.LrAt(schedule.Spec, state, block.ToCore(), step);

    /// <summary>The tracker's part of a checkpoint.</summary>
    public AutoRatioCheckpoint Checkpoint() =>
        new(
            state.Steps,
            AutoRatioRules.Keyed(state.Smoothed),
            AutoRatioRules.Keyed(state.Ratios),
            AutoRatioRules.Keyed(state.SmallSquared),
            AutoRatioRules.Keyed(state.BigSquared)
        )
        {
            Noise = MeasuresNoise ? NoiseScaleCheckpoint.Of(state.Noise, rule.MicroBatch) : null,
        };
}
