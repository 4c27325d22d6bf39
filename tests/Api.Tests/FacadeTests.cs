using BlockwiseLR.Core;

namespace BlockwiseLR.Tests;

/// The C# surface over the F# core: no F# types needed, errors as ordinary .NET exceptions.
public class FacadeTests
{
    static string Data(string relative) => Path.Combine(AppContext.BaseDirectory, "data", relative);

    static IEnumerable<ParameterShape> FixtureParameters(string dir) =>
        SafetensorsHeader
            .Read(Data(Path.Combine(dir, "model.safetensors")))
            .Select(e => new ParameterShape(e.Name, e.Shape));

    [Fact]
    public void Partitions_the_hf_gpt2_fixture_and_splits_c_attn_by_columns()
    {
        var placed = BlockRules.Default.Partition(FixtureParameters("hf-gpt2-tiny")).ToDictionary(p => p.Name);
        var cAttn = placed["transformer.h.0.attn.c_attn.weight"];
        Assert.Equal(new long[] { 64, 192 }, cAttn.Shape);
        Assert.Null(cAttn.WholeBlock);
        Assert.Equal(
            new[]
            {
                new BlockSlice(Block.AttentionQK, 1, 0, 64),
                new BlockSlice(Block.AttentionQK, 1, 64, 64),
                new BlockSlice(Block.AttentionVO, 1, 128, 64),
            },
            cAttn.Slices
        );
        Assert.Equal(Block.Norm, placed["transformer.ln_f.bias"].WholeBlock);
        Assert.Equal(Block.PositionEmbedding, placed["transformer.wpe.weight"].WholeBlock);
    }

    [Fact]
    public void Counts_the_hf_llama_fixture_per_block()
    {
        var counts = BlockRules.Default.CountByBlock(FixtureParameters("hf-llama-tiny"));
        // 2 layers, width 64, 4 heads and 2 KV heads of 16, d_ff 176, vocab 256, untied (by hand)
        Assert.Equal(256 * 64, counts[Block.Embedding]);
        Assert.Equal(2 * (64 * 64 + 32 * 64), counts[Block.AttentionQK]);
        Assert.Equal(2 * (32 * 64 + 64 * 64), counts[Block.AttentionVO]);
        Assert.Equal(2 * 3 * 176 * 64, counts[Block.FeedForward]);
        Assert.Equal(5 * 64, counts[Block.Norm]);
        Assert.Equal(256 * 64, counts[Block.OutputHead]);
        Assert.False(counts.ContainsKey(Block.PositionEmbedding));
    }

    [Fact]
    public void Unmatched_parameters_are_all_listed()
    {
        var parameters = FixtureParameters("hf-llama-tiny")
            .Append(new ParameterShape("adapter.lora_A", [4, 4]))
            .Append(new ParameterShape("adapter.lora_B", [4, 4]));
        var error = Assert.Throws<BlockPartitionException>(() => BlockRules.Default.Partition(parameters));
        Assert.StartsWith("2 parameter(s) match no block rule: adapter.lora_A, adapter.lora_B.", error.Message);
    }

    [Fact]
    public void User_rules_come_first_and_cover_other_naming_schemes()
    {
        ParameterShape[] torchtitan =
        [
            new("tok_embeddings.weight", [100, 8]),
            new("layers.0.attention.wq.weight", [8, 8]),
            new("layers.0.attention.wkv.weight", [8, 8]),
            new("layers.0.feed_forward.w1.weight", [16, 8]),
            new("norm.weight", [8]),
            new("output.weight", [100, 8]),
        ];
        var rules = BlockRules
            .Default.WithRulesText(
                "# torchtitan names\ntok_embeddings.weight=emb\nattention.wq.weight=qk\nfeed_forward.*=ffn\nnorm.weight=norm\noutput.weight=head",
                "titan.rules"
            )
            .With("attention.wkv.weight", Block.AttentionVO);
        var placed = rules.Partition(torchtitan).ToDictionary(p => p.Name, p => p.WholeBlock);
        Assert.Equal(Block.Embedding, placed["tok_embeddings.weight"]);
        Assert.Equal(Block.AttentionQK, placed["layers.0.attention.wq.weight"]);
        Assert.Equal(Block.AttentionVO, placed["layers.0.attention.wkv.weight"]);
        Assert.Equal(Block.FeedForward, placed["layers.0.feed_forward.w1.weight"]);
        Assert.Equal(Block.Norm, placed["norm.weight"]);
        Assert.Equal(Block.OutputHead, placed["output.weight"]);
        var bad = Assert.Throws<FormatException>(() =>
            BlockRules.Default.WithRulesText("x.weight=qk\ny.weight=attn", "my.rules")
        );
        Assert.StartsWith("my.rules line 2:", bad.Message);
    }

    [Fact]
    public void Ratios_parse_validate_and_print()
    {
        var fixture = BlockRatios.Parse("emb=10,head=10,qk=8,vo=4,ffn=6,norm=1");
        Assert.Equal(10, fixture.For(Block.OutputHead, tiedHead: false));
        Assert.Equal(1, BlockRatios.Paper.For(Block.OutputHead, tiedHead: false));
        Assert.Equal(10, BlockRatios.Paper.For(Block.OutputHead, tiedHead: true));
        Assert.Equal("emb=10,pe=1,qk=8,vo=4,ffn=6,norm=1", BlockRatios.Paper.ToString());
        Assert.Throws<FormatException>(() => BlockRatios.Parse("qk=-1"));
        Assert.Throws<ArgumentException>(() => BlockRatios.Parse("emb=10,head=1").Validate(tiedHead: true));
    }

    [Fact]
    public void Schedule_gives_each_block_its_peak_and_one_shared_floor()
    {
        var plan = BlockSchedule.Create(
            LrSchedule.Cosine,
            baseLr: 1e-3,
            warmupSteps: 2,
            totalSteps: 6,
            BlockRatios.Paper,
            tiedHead: true
        );
        Assert.Equal(5e-5, plan.FloorLr, 15); // official floor: base / 20
        Assert.Equal(8e-3 * 1 / 2, plan.LrAt(Block.AttentionQK, 0), 15); // warmup: peak (t+1)/W
        Assert.Equal(1e-2, plan.LrAt(Block.Embedding, 1), 15); // peak at t = W-1
        Assert.Equal(5e-5 + (4e-3 - 5e-5) * 0.5, plan.LrAt(Block.AttentionVO, 4), 15); // cosine midpoint
        foreach (var block in Enum.GetValues<Block>())
            Assert.Equal(5e-5, plan.LrAt(block, 6), 15);
        var error = Assert.Throws<ScheduleException>(() =>
            BlockSchedule.Create(
                LrSchedule.Cosine,
                1e-3,
                warmupSteps: 10,
                totalSteps: 5,
                BlockRatios.Paper,
                tiedHead: true
            )
        );
        Assert.Contains("exceeds the run length", error.Message);
        Assert.Equal(ScheduleField.WarmupSteps, error.Field); // the field is named, not read from the message
        var floor = Assert.Throws<ScheduleException>(() =>
            BlockSchedule.Create(LrSchedule.Cosine, 1e-3, null, 100, BlockRatios.Paper, tiedHead: true, floorLr: 2e-3)
        );
        Assert.Equal(ScheduleField.FloorLr, floor.Field);
    }

    [Fact]
    public void Safetensors_header_errors_name_the_file()
    {
        var path = Path.Combine(Path.GetTempPath(), $"blr-bad-{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        try
        {
            var error = Assert.Throws<InvalidDataException>(() => SafetensorsHeader.Read(path));
            Assert.StartsWith(path + ":", error.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
