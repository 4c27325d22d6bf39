namespace BlockwiseLR.Data;

/// <summary>What a prepared dataset, a checkpoint and an exported model record of their tokenizer: its kind (a built-in
/// name, or sentencepiece, tokenizer.json, vocab+merges), vocabulary, the id written before each document, and for
/// the file kinds the files (copied beside the shards and into every checkpoint) with the SHA-256 of their
/// bytes.</summary>
/// <param name="Name">The kind: a built-in name (gpt2, cl100k, o200k, gutenberg-bpe4k...) or sentencepiece,
/// tokenizer.json, vocab+merges.</param>
/// <param name="VocabSize">The vocabulary size.</param>
/// <param name="EndOfText">The id written before each document.</param>
/// <param name="Files">The tokenizer's files by name, for the file kinds (null for built-in ones).</param>
/// <param name="Sha256">The SHA-256 of the files' bytes, concatenated in order (null for built-in ones).</param>
public sealed record TokenizerRecord(
    string Name,
    int VocabSize,
    int EndOfText,
    IReadOnlyList<string>? Files = null,
    string? Sha256 = null
)
{
    /// <summary>The record of <paramref name="tokenizer"/>; for a file tokenizer its files are read to hash
    /// them.</summary>
    public static TokenizerRecord Of(ITextTokenizer tokenizer)
    {
        var files = TextTokenizers.FilesOf(tokenizer);
        return files.Count == 0
            ? new(tokenizer.Name, tokenizer.VocabSize, tokenizer.EndOfText)
            : new(
                tokenizer.Name,
                tokenizer.VocabSize,
                tokenizer.EndOfText,
                files.Select(f => f.Name).ToList(),
                Convert.ToHexStringLower(
                    System.Security.Cryptography.SHA256.HashData(
                        files.SelectMany(f => File.ReadAllBytes(f.From)).ToArray()
                    )
                )
            );
    }

    /// <summary>True when name, vocabulary, separator, file names and hash are all the same.</summary>
    public bool Equals(TokenizerRecord? other) =>
        other is not null
        && Name == other.Name
        && VocabSize == other.VocabSize
        && EndOfText == other.EndOfText
        && Sha256 == other.Sha256
        && (Files ?? []).SequenceEqual(other.Files ?? []);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Name, VocabSize, EndOfText, Sha256);
}
