using Microsoft.ML.Tokenizers;

namespace BlockwiseLR.Data;

/// <summary>
/// A SentencePiece model (<c>tokenizer.model</c>, LLaMA-2 style: BPE with byte fallback), without its own BOS/EOS: the
/// BOS id separates documents (written before each one, as LLaMA trains). Microsoft.ML.Tokenizers'
/// SentencePieceTokenizer reads the model, normalizes (dummy prefix, whitespace escaping, the model's rules) and
/// decodes; for BPE models the merge loop is <see cref="SentencePieceBpe"/>, a port of sentencepiece's own
/// (bpe_model.cc), because the library's 2.0.1 merges differ from spm_encode on runs of whitespace and repeated
/// punctuation (7 of the 44 lines of the golden text, code indentation among them). Ids are checked against Debian's
/// spm_encode. A model without a BOS id (bos_id = -1, the ALBERT/T5 unigram style) is refused with one line. Documents
/// are tokenized whole.
/// </summary>
public sealed class SentencePieceTextTokenizer : ITextTokenizer
{
    readonly SentencePieceTokenizer tokenizer;
    readonly SentencePieceBpe? bpe;

    /// <summary>Loads the SentencePiece model (tokenizer.model) at <paramref name="path"/>.</summary>
    public SentencePieceTextTokenizer(string path)
    {
        Path = path;
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
            using var stream = new MemoryStream(bytes);
            tokenizer = SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            throw new DataInputException(
                $"{path}: a SentencePiece model without a BOS id (bos_id = -1, ALBERT/T5 style) cannot be used: it "
                    + $"has no document-start token; train it with --bos_id set, or use a tokenizer.json",
                "Tokenizer"
            );
        }
        catch (Exception e)
            when (e
                    is IOException
                        or InvalidDataException
                        or ArgumentException
                        or FormatException
                        or InvalidOperationException
                        or Google.Protobuf.InvalidProtocolBufferException
            )
        {
            throw new DataInputException(
                $"{path}: not a readable SentencePiece model ({e.Message.Split('\n')[0]})",
                "Tokenizer"
            );
        }
        if (tokenizer.BeginningOfSentenceId < 0)
            throw new DataInputException(
                $"{path}: a SentencePiece model without a BOS id (bos_id = -1) has no document-start token; train it "
                    + $"with --bos_id set",
                "Tokenizer"
            );
        EndOfText = tokenizer.BeginningOfSentenceId;
        VocabSize = tokenizer.Vocabulary.Count;
        var model = SentencePieceBpe.Read(bytes);
        if (model.IsBpe)
            bpe = new SentencePieceBpe(model.Pieces, tokenizer.ByteFallback, tokenizer.UnknownId);
    }

    /// <summary>The tokenizer.model file this was loaded from.</summary>
    public string Path { get; }

    /// <inheritdoc/>
    public string Name => "sentencepiece";

    /// <inheritdoc/>
    public int VocabSize { get; }

    /// <summary>The BOS id: written before each document.</summary>
    public int EndOfText { get; }

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text) =>
        bpe is null
            ? tokenizer.EncodeToIds(text)
            : bpe.Encode(tokenizer.Normalizer is { } n ? n.Normalize(text) : text);

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids) ?? "";
}
