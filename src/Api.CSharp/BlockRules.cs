using BlockwiseLR.Core;

namespace BlockwiseLR;

/// <summary>The block kinds of the core taxonomy, as a C# enum.</summary>
public enum Block
{
    Embedding,
    PositionEmbedding,
    AttentionQK,
    AttentionVO,
    FeedForward,
    Norm,
    OutputHead,
}

/// <summary>A parameter's state-dict name and shape.</summary>
public sealed record ParameterShape(string Name, long[] Shape);

/// <summary>A slice of a parameter that belongs to one block. <see cref="Dim"/> is -1 when the slice is
/// the whole tensor (Start 0, Length = its number of elements); otherwise the slice is
/// [Start, Start + Length) along dimension Dim.</summary>
public sealed record BlockSlice(Block Block, int Dim, long Start, long Length);

/// <summary>Where one parameter's coordinates go: one whole-tensor slice, or several slices of a fused
/// projection such as Hugging Face GPT-2's c_attn.</summary>
public sealed record ParameterBlocks(string Name, long[] Shape, IReadOnlyList<BlockSlice> Slices)
{
    /// <summary>The block of the whole tensor, or null for a fused projection split across blocks.</summary>
    public Block? WholeBlock => Slices is [{ Dim: -1 } only] ? only.Block : null;
}

/// <summary>Thrown when parameters cannot be placed in blocks; the message lists every unmatched name.</summary>
public sealed class BlockPartitionException(string message) : Exception(message);

/// <summary>Ordered name rules (glob pattern -> block). The first match wins; user rules come before the
/// built-in ones for Hugging Face LLaMA, Hugging Face GPT-2, nanoGPT and BlockwiseLR's own names.</summary>
public sealed class BlockRules
{
    internal IReadOnlyList<BlockRule> Rules { get; }

    BlockRules(IReadOnlyList<BlockRule> rules) => Rules = rules;

    /// <summary>The built-in rules.</summary>
    public static BlockRules Default { get; } = new(BlockRuleTable.Defaults);

    /// <summary>Adds a rule that takes precedence over every rule so far: parameters whose name (or a
    /// dot-separated suffix of it) matches <paramref name="pattern"/> go to <paramref name="block"/>.</summary>
    public BlockRules With(string pattern, Block block) => Prepend([BlockRuleTable.Whole(pattern, block.ToCore())]);

    /// <summary>Adds a rule for a fused projection cut into equal parts along its output dimension.</summary>
    public BlockRules WithFused(string pattern, params Block[] parts) =>
        Prepend([BlockRuleTable.Fused(pattern, parts.Select(p => p.ToCore()))]);

    /// <summary>Adds the rules of a rule file (`pattern=block` a line, `#` comments), before the rules so far.
    /// Throws <see cref="FormatException"/> naming <paramref name="source"/> and the line.</summary>
    public BlockRules WithRulesText(string text, string source)
    {
        return Prepend(BlockRuleTable.ParseMany(source, text).OrThrow(reason => new FormatException(reason)));
    }

    BlockRules Prepend(IEnumerable<BlockRule> userRules) => new(BlockRuleTable.WithUserRules(userRules, Rules));

    /// <summary>Places every parameter, or throws <see cref="BlockPartitionException"/> listing every
    /// unmatched name.</summary>
    public IReadOnlyList<ParameterBlocks> Partition(IEnumerable<ParameterShape> parameters) =>
        PartitionCore(parameters).Select(ToView).ToList();

    /// <summary>The block of each parameter, in order, for code that works per tensor (optimizers, sharpness):
    /// a fused projection split across blocks is an <see cref="ArgumentException"/> naming it.</summary>
    public IReadOnlyList<Block> WholeBlocks(IEnumerable<ParameterShape> parameters) =>
        Partition(parameters)
            .Select(p =>
                p.WholeBlock
                ?? throw new ArgumentException(
                    $"{p.Name}: a fused projection spans several blocks and cannot be handled per tensor; split it "
                        + $"(BlockwiseLR models do)"
                )
            )
            .ToList();

    /// <summary>Parameter count per block kind (blocks with no parameters are absent).</summary>
    public IReadOnlyDictionary<Block, long> CountByBlock(IEnumerable<ParameterShape> parameters) =>
        BlockRuleTable.CountsByBlock(PartitionCore(parameters)).ToDictionary(c => c.Key.ToCSharp(), c => c.Value);

    IReadOnlyList<PlacedParameter> PartitionCore(IEnumerable<ParameterShape> parameters) =>
        BlockRuleTable
            .Partition(Rules, parameters.Select(p => KeyValuePair.Create(p.Name, p.Shape)))
            .OrThrow(reason => new BlockPartitionException(reason));

    static ParameterBlocks ToView(PlacedParameter placed)
    {
        var slices = BlockRuleTable
            .Slices(placed)
            .Select(
                ((BlockKind Kind, int Dim, long Start, long Length) s) =>
                    new BlockSlice(s.Kind.ToCSharp(), s.Dim, s.Start, s.Length)
            )
            .ToList();
        return new ParameterBlocks(placed.Parameter.Name, [.. placed.Parameter.Shape], slices);
    }
}

/// <summary>Names of blocks.</summary>
public static class Blocks
{
    /// <summary>The short key used in ratio maps, rule files and CLI options: emb, pe, qk, vo, ffn, norm,
    /// head.</summary>
    public static string Key(this Block block) => BlockKinds.Key(block.ToCore());
}

static class BlockConversions
{
    public static BlockKind ToCore(this Block block) =>
        block switch
        {
            Block.Embedding => BlockKind.Embedding,
            Block.PositionEmbedding => BlockKind.PositionEmbedding,
            Block.AttentionQK => BlockKind.AttentionQK,
            Block.AttentionVO => BlockKind.AttentionVO,
            Block.FeedForward => BlockKind.FeedForward,
            Block.Norm => BlockKind.Norm,
            Block.OutputHead => BlockKind.OutputHead,
            _ => throw new ArgumentOutOfRangeException(nameof(block), block, "unknown block"),
        };

    public static Block ToCSharp(this BlockKind kind) =>
        kind.Tag switch
        {
            BlockKind.Tags.Embedding => Block.Embedding,
            BlockKind.Tags.PositionEmbedding => Block.PositionEmbedding,
            BlockKind.Tags.AttentionQK => Block.AttentionQK,
            BlockKind.Tags.AttentionVO => Block.AttentionVO,
            BlockKind.Tags.FeedForward => Block.FeedForward,
            BlockKind.Tags.Norm => Block.Norm,
            BlockKind.Tags.OutputHead => Block.OutputHead,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown block kind"),
        };
}
