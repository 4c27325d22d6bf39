using Microsoft.ML.Tokenizers;

namespace BlockwiseLR.Data;

/// <summary>tiktoken's cl100k_base (GPT-4, 100,277 ids, &lt;|endoftext|&gt; = 100257) and o200k_base (GPT-4o,
/// 200,019 ids, &lt;|endoftext|&gt; = 199999), through Microsoft.ML.Tokenizers and its data packages; ids are
/// checked against js-tiktoken's in the tests. Thread-safe. Shards of these hold uint32 tokens.</summary>
public sealed class TiktokenTextTokenizer : ITextTokenizer
{
    readonly Tokenizer tokenizer;

    TiktokenTextTokenizer(string name, string encoding, int vocabSize, int endOfText)
    {
        (Name, VocabSize, EndOfText) = (name, vocabSize, endOfText);
        tokenizer = TiktokenTokenizer.CreateForEncoding(encoding);
    }

    static readonly Lazy<TiktokenTextTokenizer> SharedCl100k = new(() =>
        new("cl100k", "cl100k_base", 100_277, 100_257)
    );
    static readonly Lazy<TiktokenTextTokenizer> SharedO200k = new(() => new("o200k", "o200k_base", 200_019, 199_999));

    /// <summary>tiktoken's cl100k_base (GPT-3.5/4), one shared instance.</summary>
    public static TiktokenTextTokenizer Cl100k => SharedCl100k.Value;

    /// <summary>tiktoken's o200k_base (GPT-4o), one shared instance.</summary>
    public static TiktokenTextTokenizer O200k => SharedO200k.Value;

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public int VocabSize { get; }

    /// <inheritdoc/>
    public int EndOfText { get; }

    /// <inheritdoc/>
    public PieceCuts Cuts => PieceCuts.Spaces;

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text) => Specials.Encode(tokenizer, text, EndOfText);

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids) ?? "";
}
