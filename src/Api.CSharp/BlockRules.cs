using BlockwiseLR.Core;

namespace BlockwiseLR;

/// <summary>The block kinds of the core taxonomy, as a C# enum.</summary>
public enum Block
{
    /// <summary>The token embedding (wte / embed_tokens).</summary>
    Embedding,

    /// <summary>The learned position embedding (GPT-2's wpe; LLaMA has none).</summary>
    PositionEmbedding,

    /// <summary>The attention query and key projections.</summary>
    AttentionQK,

    /// <summary>The attention value and output projections.</summary>
    AttentionVO,

    /// <summary>The MLP (feed-forward) weights.</summary>
    FeedForward,

    /// <summary>The LayerNorm / RMSNorm weights and biases.</summary>
    Norm,

    /// <summary>The output head (lm_head); when tied to the embedding it trains as <see cref="Embedding"/>.</summary>
    OutputHead,
}

/// <summary>A parameter's state-dict name and shape.</summary>
/// <param name="Name">The state-dict name, e.g. "transformer.h.0.attn.c_attn.weight".</param>
/// <param name="Shape">The tensor's shape.</param>
public sealed record ParameterShape(string Name, long[] Shape);

/// <summary>A slice of a parameter that belongs to one block. <see cref="Dim"/> is -1 when the slice is
/// the whole tensor (Start 0, Length = its number of elements); otherwise the slice is
/// [Start, Start + Length) along dimension Dim.</summary>
/// <param name="Block">The block the slice belongs to.</param>
/// <param name="Dim">The dimension it is cut along, or -1 for the whole tensor.</param>
/// <param name="Start">Its first index along <paramref name="Dim"/> (0 for the whole tensor).</param>
/// <param name="Length">Its length along <paramref name="Dim"/> (the number of elements for the whole tensor).</param>
public sealed record BlockSlice(Block Block, int Dim, long Start, long Length);

/// <summary>Where one parameter's coordinates go: one whole-tensor slice, or several slices of a fused
/// projection such as Hugging Face GPT-2's c_attn.</summary>
/// <param name="Name">The parameter's state-dict name.</param>
/// <param name="Shape">Its shape.</param>
/// <param name="Slices">Its slices, one per block it holds.</param>
public sealed record ParameterBlocks(string Name, long[] Shape, IReadOnlyList<BlockSlice> Slices)
{
    /// <summary>The block of the whole tensor, or null for a fused projection split across blocks.</summary>
    public Block? WholeBlock => Slices is [{ Dim: -1 } only] ? only.Block : null;
}

/// <summary>Thrown when parameters cannot be placed in blocks; the message lists every unmatched name.</summary>
public sealed class BlockPartitionException : Exception
{
    /// <summary>An exception with <paramref name="message"/> and no unmatched names.</summary>
    public BlockPartitionException(string message)
        : this(message, []) { }

    /// <summary>An exception for <paramref name="unmatchedNames"/>, the parameters no rule matches.</summary>
    public BlockPartitionException(string message, IReadOnlyList<string> unmatchedNames)
        : base(message) => UnmatchedNames = unmatchedNames;

    /// <summary>The parameters no rule matches (empty when the problem is another, e.g. a fused rule that does not
    /// divide its tensor).</summary>
    public IReadOnlyList<string> UnmatchedNames { get; }
}

/// <summary>Ordered name rules (glob pattern -> block). The first match wins; user rules come before the
/// built-in ones for Hugging Face LLaMA, Hugging Face GPT-2, nanoGPT and BlockwiseLR's own names.</summary>
public sealed class BlockRules
{
    internal IReadOnlyList<BlockRule> Rules { get; }

    BlockRules(IReadOnlyList<BlockRule> rules) => Rules = rules;

    /// <summary>The built-in rules.</summary>
    public static BlockRules Default { get; } = new(BlockRuleTable.Defaults);

    /// <summary>Adds a rule that takes precedence over every rule so far: parameters whose name (or a
    /// dot-separated suffix of it) matches <paramref name="pattern"/> go to <paramref name="block"/>.
    /// Throws <see cref="ArgumentNullException"/> for a null pattern and <see cref="ArgumentException"/> for an
    /// empty or blank one.</summary>
    public BlockRules With(string pattern, Block block)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pattern);
        return Prepend([BlockRuleTable.Whole(pattern, block.ToCore())]);
    }

    /// <summary>Adds a rule for a fused projection cut into equal parts along its output dimension. The pattern is
    /// checked as in <see cref="With"/>; <paramref name="parts"/> needs at least one block.</summary>
    public BlockRules WithFused(string pattern, params Block[] parts)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pattern);
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Length == 0)
            throw new ArgumentException("a fused rule needs at least one block", nameof(parts));
        return Prepend([BlockRuleTable.Fused(pattern, parts.Select(p => p.ToCore()))]);
    }

    /// <summary>Adds the rules of a rule file (`pattern=block` a line, `#` comments), before the rules so far.
    /// Throws <see cref="FormatException"/> naming <paramref name="source"/> and the line.</summary>
    public BlockRules WithRulesText(string text, string source)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(source);
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

    IReadOnlyList<PlacedParameter> PartitionCore(IEnumerable<ParameterShape> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var list = parameters.ToList();
        return BlockRuleTable
            .Partition(Rules, list.Select(p => KeyValuePair.Create(p.Name, p.Shape)))
            .OrThrow(reason => PartitionError(reason, list));
    }

    /// <summary>The core's reason, its fix said in C#: unmatched parameters need <see cref="With"/> (the CLI says
    /// its own flag, from <see cref="BlockPartitionException.UnmatchedNames"/>).</summary>
    BlockPartitionException PartitionError(string reason, List<ParameterShape> parameters)
    {
        var unmatched = BlockRuleTable.Unmatched(Rules, parameters.Select(p => p.Name));
        if (unmatched.Count == 0)
            return new BlockPartitionException(reason);
        var blocks = string.Join(", ", Enum.GetNames<Block>().Select(b => "Block." + b));
        return new BlockPartitionException(
            $"{unmatched.Count} parameter(s) match no block rule: {string.Join(", ", unmatched)}. Add a rule for "
                + $"them, e.g. rules.With(\"{unmatched[0]}\", Block.FeedForward); the pattern is a glob on the name "
                + $"(blocks: {blocks})",
            unmatched
        );
    }

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
