using BlockwiseLR.Core;
using Microsoft.FSharp.Collections;

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
        perBlock = Enum.GetValues<Block>().ToDictionary(
            b => b,
            b => { var f = ScheduleModule.forBlock(spec, ratios.For(b, tiedHead)); return (Func<int, double>)(t => f.Invoke(t)); });
    }

    /// <summary>Builds and validates a schedule. <paramref name="kind"/>: cosine, linear, constant, wsd,
    /// wsd-cosine, wsd-1-sqrt, wsd-anneal. <paramref name="floorLr"/> defaults to the official base/20.
    /// Throws <see cref="ArgumentException"/> with a one-line message.</summary>
    public static BlockSchedule Create(string kind, double baseLr, int warmupSteps, int totalSteps,
        BlockRatios ratios, bool tiedHead, double? floorLr = null, bool alphaWarmup = false)
    {
        var parsedKind = ScheduleModule.parseKind(kind);
        if (parsedKind.IsError) throw new ArgumentException(parsedKind.ErrorValue);
        ratios.Validate(tiedHead);
        var spec = new ScheduleSpec(parsedKind.ResultValue, baseLr, floorLr ?? ScheduleModule.officialFloor(baseLr),
                                    warmupSteps, totalSteps, alphaWarmup);
        var blockRatios = ListModule.OfSeq(Enum.GetValues<Block>().Select(b => ratios.For(b, tiedHead)));
        var valid = ScheduleModule.validate(blockRatios, spec);
        if (valid.IsError) throw new ArgumentException(valid.ErrorValue);
        return new BlockSchedule(spec, ratios, tiedHead);
    }

    public BlockRatios Ratios { get; }
    public bool TiedHead { get; }
    public double BaseLr => spec.BaseLr;
    public double FloorLr => spec.FloorLr;
    public int WarmupSteps => spec.WarmupSteps;
    public int TotalSteps => spec.TotalSteps;

    /// <summary>The LR of <paramref name="block"/> during step <paramref name="step"/> (0-based).</summary>
    public double LrAt(Block block, int step) => perBlock[block](step);

    /// <summary>Steps worth printing: 0, the end of warmup, <paramref name="points"/> evenly spaced steps,
    /// the last step and T.</summary>
    public IReadOnlyList<int> Milestones(int points) => ScheduleModule.milestones(spec, points).ToList();
}
