namespace BlockwiseLR.Data;

/// <summary>Token ids to train or evaluate on, in one or more segments (a prepared dataset's shards, or arrays
/// in memory). Windows never cross a segment's end. <see cref="TokenDataset"/> and <see cref="InMemoryTokens"/>
/// implement it; the trainer, the sampler and evaluation read through it.</summary>
public interface ITokenSource
{
    /// <summary>A name for messages (a folder and split, or what you call your tokens).</summary>
    string Name { get; }

    /// <summary>Tokens in each segment.</summary>
    IReadOnlyList<long> SegmentLengths { get; }

    /// <summary>Copies tokens [start, start + destination.Length) of one segment.</summary>
    void CopyTo(int segment, long start, Span<long> destination);
}

/// <summary>Token ids held in memory, each array one segment (a document or a stream of documents).</summary>
public sealed class InMemoryTokens : ITokenSource
{
    readonly IReadOnlyList<int[]> segments;

    /// <summary>Tokens of one's own, each array one segment. No arrays, only empty ones, or a negative id is an <see
    /// cref="ArgumentException"/>.</summary>
    /// <param name="name">A name for messages.</param>
    /// <param name="segments">The token ids, one array per segment (not copied).</param>
    public InMemoryTokens(string name, params int[][] segments)
    {
        if (segments.Length == 0 || segments.All(s => s.Length == 0))
            throw new ArgumentException($"{name}: no tokens", nameof(segments));
        if (segments.SelectMany(s => s).Any(t => t < 0))
            throw new ArgumentException($"{name}: token ids must be >= 0", nameof(segments));
        Name = name;
        this.segments = segments;
        SegmentLengths = segments.Select(s => (long)s.Length).ToList();
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public IReadOnlyList<long> SegmentLengths { get; }

    /// <summary>The largest token id plus one (the least vocabulary that holds every token).</summary>
    public int VocabularyNeeded => segments.SelectMany(s => s).DefaultIfEmpty(0).Max() + 1;

    /// <inheritdoc/>
    public void CopyTo(int segment, long start, Span<long> destination)
    {
        var source = segments[segment].AsSpan(checked((int)start), destination.Length);
        for (var i = 0; i < source.Length; i++)
            destination[i] = source[i];
    }
}
