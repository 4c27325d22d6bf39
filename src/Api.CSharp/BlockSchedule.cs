using BlockwiseLR.Core;

namespace BlockwiseLR;

/// <summary>The LR of every block at every step: each block warms up to ratio x base LR and decays to one
/// shared floor (the paper's recipe). Built from the F# core's schedule algebra.</summary>
public sealed class BlockSchedule
{
    readonly ScheduleSpec spec;
    readonly Dictionary<Block, Func<int, double>> perBlock;

    BlockSchedule(ScheduleSpec spec, BlockRatios ratios, bool tiedHead)
    {
        this.spec = spec;
        Ratios = ratios;
        TiedHead = tiedHead;
        perBlock = Enum.GetValues<Block>()
            .ToDictionary(b => b, b => ScheduleRules.ForBlock(spec, ratios.For(b, tiedHead)));
    }

    /// <summary>Builds and validates a schedule. <paramref name="warmupSteps"/> defaults to
    /// <see cref="DefaultWarmup"/>, <paramref name="floorLr"/> to the official base/20. Throws
    /// <see cref="ArgumentException"/> with a one-line message.</summary>
    public static BlockSchedule Create(
        LrSchedule kind,
        double baseLr,
        int? warmupSteps,
        int totalSteps,
        BlockRatios ratios,
        bool tiedHead,
        double? floorLr = null,
        bool alphaWarmup = false
    )
    {
        ratios.Validate(tiedHead);
        var spec = ScheduleRules.Spec(
            kind,
            baseLr,
            floorLr ?? DefaultFloor(baseLr),
            warmupSteps ?? DefaultWarmup(totalSteps),
            totalSteps,
            alphaWarmup
        );
        var blockRatios = Enum.GetValues<Block>().Select(b => ratios.For(b, tiedHead));
        var (valid, field) = ScheduleRules.Validate(blockRatios, spec);
        if (!valid.IsOk)
            throw new ScheduleException(field, valid.Error);
        return new BlockSchedule(spec, ratios, tiedHead);
    }

    /// <summary>The warmup when none is given: 2% of the run, at least one step.</summary>
    public static int DefaultWarmup(int totalSteps) => ScheduleRules.DefaultWarmup(totalSteps);

    /// <summary>The floor when none is given: base LR / 20 (the official recipe).</summary>
    public static double DefaultFloor(double baseLr) => ScheduleRules.OfficialFloor(baseLr);

    /// <summary>The core's description of the schedule (auto ratios read a block's LR from it at any ratio).</summary>
    internal ScheduleSpec Spec => spec;

    /// <summary>The ratio of each block's peak LR to <see cref="BaseLr"/>.</summary>
    public BlockRatios Ratios { get; }

    /// <summary>True when the output head shares the token embedding's tensor (it then follows the embedding's
    /// ratio).</summary>
    public bool TiedHead { get; }

    /// <summary>The base (AdamW) peak learning rate; a block's peak is its ratio times this.</summary>
    public double BaseLr => spec.BaseLr;

    /// <summary>The one floor every block's learning rate decays to (by default the base LR / 20).</summary>
    public double FloorLr => spec.FloorLr;

    /// <summary>Steps of linear warmup from 0 to the peak.</summary>
    public int WarmupSteps => spec.WarmupSteps;

    /// <summary>Steps in the whole run (warmup included).</summary>
    public int TotalSteps => spec.TotalSteps;

    /// <summary>The LR of <paramref name="block"/> for the update made after <paramref name="step"/> steps are done
    /// (0 for the first update): the <see cref="StepReport"/> numbered N (steps done, from 1) used LrAt(block, N -
    /// 1).</summary>
    public double LrAt(Block block, int step) => perBlock[block](step);

    /// <summary>Steps worth printing: 0, the end of warmup, <paramref name="points"/> evenly spaced steps,
    /// the last step and T.</summary>
    public IReadOnlyList<int> Milestones(int points) => ScheduleRules.Milestones(spec, points);
}
