using BlockwiseLR.Core;
using BlockwiseLR.Training;

namespace BlockwiseLR.Tests;

/// Auto ratios in the trainer: the LR a ratio gives, and the two block types joined case by case.
public class AutoRatioTests
{
    static readonly Dictionary<Block, double> Held = new()
    {
        [Block.Embedding] = 10,
        [Block.AttentionQK] = 3.5,
        [Block.AttentionVO] = 2,
        [Block.FeedForward] = 6,
        [Block.Norm] = 1,
    };

    [Theory]
    [InlineData(LrSchedule.Cosine, 20)]
    [InlineData(LrSchedule.Linear, 1)]
    [InlineData(LrSchedule.Wsd, 7)]
    [InlineData(LrSchedule.WsdAnneal, 5)]
    public void Auto_ratios_held_at_r_give_every_block_the_LR_fixed_ratios_at_r_give(LrSchedule schedule, int warmup)
    {
        var options = new PretrainOptions
        {
            Optimizer = new()
            {
                Kind = OptimizerKind.BlockwiseAdamW,
                Ratios = BlockRatios.Auto(new AutoRatioSettings { Every = 1000 }),
            },
            Schedule = new()
            {
                Lr = 1e-3,
                WarmupSteps = warmup,
                Kind = schedule,
            },
            Training = new()
            {
                Steps = 200,
                BatchSize = 4,
                SeqLen = 8,
            },
        };
        var auto = ResolvedOptions.ResolveCustom(options, tiedHead: true, ownData: true);
        var counts = Held.Keys.ToDictionary(b => b, _ => 100L);
        var saved = new AutoRatioCheckpoint(
            3,
            Held.ToDictionary(kv => kv.Key.Key(), _ => 1.0),
            Held.ToDictionary(kv => kv.Key.Key(), kv => kv.Value),
            [],
            []
        );
        var tracker = AutoRatioTracker.For(auto, counts, saved)!;
        var fixedRatios = BlockSchedule.Create(schedule, 1e-3, warmup, 200, BlockRatios.Of(Held), tiedHead: true);
        foreach (var block in Held.Keys)
        {
            Assert.Equal(Held[block], tracker.RatioOf(block));
            for (var step = 0; step <= 200; step++)
                Assert.Equal(fixedRatios.LrAt(block, step), tracker.LrAt(block, step));
        }
        // The peak is r x base, the end the one shared floor.
        Assert.Equal(10 * 1e-3, Enumerable.Range(0, 200).Max(t => tracker.LrAt(Block.Embedding, t)), 15);
        Assert.Equal(fixedRatios.FloorLr, tracker.LrAt(Block.Embedding, 200), 15);
    }

    [Fact]
    public void Every_block_maps_to_the_core_block_of_the_same_name_and_back()
    {
        var pairs = new (Block Block, BlockKind Kind)[]
        {
            (Block.Embedding, BlockKind.Embedding),
            (Block.PositionEmbedding, BlockKind.PositionEmbedding),
            (Block.AttentionQK, BlockKind.AttentionQK),
            (Block.AttentionVO, BlockKind.AttentionVO),
            (Block.FeedForward, BlockKind.FeedForward),
            (Block.Norm, BlockKind.Norm),
            (Block.OutputHead, BlockKind.OutputHead),
        };
        Assert.Equal(Enum.GetValues<Block>().Order(), pairs.Select(p => p.Block).Order());
        Assert.Equal(BlockKinds.All.Count, pairs.Length);
        foreach (var (block, kind) in pairs)
        {
            Assert.Equal(kind, block.ToCore());
            Assert.Equal(block, kind.ToCSharp());
            Assert.Equal(block.ToString(), kind.ToString());
        }
    }
}

/// The noise correction's switch, as text, in a config file and through With.
public class AutoNoiseSwitchTests
{
    [Fact]
    public void Noise_off_reads_back_from_text_and_options_and_a_bad_value_is_one_clear_line()
    {
        var off = BlockRatios.Parse("auto:noise=off");
        Assert.False(off.AutoSettings!.Noise);
        Assert.Equal("auto:alpha=0.25,max-ratio=10,every=10,smoothing=0.9,noise=off", off.ToString());
        Assert.Equal(off, BlockRatios.Parse(off.ToString()));
        Assert.True(BlockRatios.Parse("auto").AutoSettings!.Noise); // on by default
        Assert.Equal("auto", BlockRatios.Parse("auto:noise=on").ToString());

        var options = new PretrainOptions().With([KeyValuePair.Create("optimizer.ratios.noise", (object?)"off")]);
        Assert.False(options.Optimizer.Ratios.AutoSettings!.Noise);
        Assert.False(PretrainOptions.FromJson(options.ToJson()).Optimizer.Ratios.AutoSettings!.Noise);

        var bad = Assert.Throws<FormatException>(() => BlockRatios.Parse("auto:noise=maybe"));
        Assert.Equal("ratios 'auto:noise=maybe': noise=maybe must be on or off", bad.Message);
        var refused = Assert.Throws<InvalidOptionException>(() =>
            new PretrainOptions().With([KeyValuePair.Create("optimizer.ratios.noise", (object?)"maybe")])
        );
        Assert.Contains("Optimizer.Ratios.Noise", refused.Message);
        // A file with fixed ratios and the noise key (which no earlier version wrote) is refused, not dropped.
        var dropped = Assert.Throws<InvalidOptionException>(() =>
            PretrainOptions.FromJson("""{ "optimizer": { "ratios": "paper", "ratios.noise": "off" } }""")
        );
        Assert.Contains("applies only to auto ratios", dropped.Message);
        // So is any auto setting given by its path; only the flat keys of 0.1.0 files are read past with fixed ratios.
        var byPath = Assert.Throws<InvalidOptionException>(() =>
            PretrainOptions.FromJson("""{ "optimizer": { "ratios": "paper", "ratios.alpha": 0.5 } }""")
        );
        Assert.Contains("Optimizer.Ratios.Alpha", byPath.Message);
        Assert.Equal(
            BlockRatios.Paper,
            PretrainOptions.FromJson("""{ "ratios": "paper", "autoAlpha": 0.5 }""").Optimizer.Ratios
        );
    }
}
