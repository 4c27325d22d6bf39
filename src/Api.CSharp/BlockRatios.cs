using BlockwiseLR.Core;

namespace BlockwiseLR;

/// <summary>Peak-LR multipliers per block (peak = ratio x base LR).</summary>
public sealed class BlockRatios
{
    internal RatioSpec Spec { get; }

    BlockRatios(RatioSpec spec) => Spec = spec;

    /// <summary>Norm 1, VO 4, FFN 6, QK 8, Embedding 10, PositionEmbedding 1; the head follows the embedding
    /// when tied, 1 when untied.</summary>
    public static BlockRatios Paper { get; } = new(Ratios.paper);

    /// <summary>Every block at the base LR: plain AdamW.</summary>
    public static BlockRatios Uniform { get; } = new(Ratios.uniform);

    /// <summary>Reads `paper`, `uniform`, `paper,head=10` or a map like `emb=10,qk=8,vo=4,ffn=6,norm=1`.
    /// Throws <see cref="FormatException"/> with a one-line message.</summary>
    public static BlockRatios Parse(string text)
    {
        var parsed = Ratios.parse(text);
        if (parsed.IsError) throw new FormatException(parsed.ErrorValue);
        return new BlockRatios(parsed.ResultValue);
    }

    /// <summary>Checks the ratios for a model whose head is (or is not) tied to the embedding.</summary>
    public BlockRatios Validate(bool tiedHead)
    {
        var checkedSpec = Ratios.validate(tiedHead, Spec);
        if (checkedSpec.IsError) throw new ArgumentException(checkedSpec.ErrorValue);
        return this;
    }

    /// <summary>The ratio of one block.</summary>
    public double For(Block block, bool tiedHead) => Ratios.ratioOf(tiedHead, Spec, block.ToCore());

    /// <summary>The text <see cref="Parse"/> reads back.</summary>
    public override string ToString() => Ratios.format(Spec);
}
