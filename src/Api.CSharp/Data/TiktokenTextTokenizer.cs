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

    public static TiktokenTextTokenizer Cl100k => SharedCl100k.Value;
    public static TiktokenTextTokenizer O200k => SharedO200k.Value;

    public string Name { get; }
    public int VocabSize { get; }
    public int EndOfText { get; }
    public PieceCuts Cuts => PieceCuts.Spaces;

    public IReadOnlyList<int> Encode(string text) => Specials.Encode(tokenizer, text, EndOfText);

    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids) ?? "";
}
