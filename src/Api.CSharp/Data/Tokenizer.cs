namespace BlockwiseLR.Data;

/// <summary>Where a text may be cut into pieces that tokenize, one by one, to exactly the whole text's ids (so
/// <c>blr prepare</c> can stream a document of any size and tokenize its pieces in parallel).</summary>
public enum PieceCuts
{
    /// <summary>Nowhere: each document is tokenized whole (held in memory whole).</summary>
    None,

    /// <summary>At the start of any whitespace run that follows a non-whitespace character (GPT-2's pre-tokenizer
    /// never joins whitespace to the text before it).</summary>
    WhitespaceRuns,

    /// <summary>Only before a space or tab that follows a non-whitespace character (cl100k and o200k join newlines to
    /// punctuation before them, never a space or tab).</summary>
    Spaces,
}

/// <summary>Text to token ids and back: GPT-2 BPE (<see cref="Gpt2Tokenizer"/>) and tiktoken's cl100k and o200k
/// (<see cref="TiktokenTextTokenizer"/>), made by name through <see cref="TextTokenizers"/>.</summary>
public interface ITextTokenizer
{
    /// <summary>A short name recorded in manifests, e.g. "gpt2".</summary>
    string Name { get; }

    /// <summary>Ids run from 0 to VocabSize - 1.</summary>
    int VocabSize { get; }

    /// <summary>The id that separates documents.</summary>
    int EndOfText { get; }

    /// <summary>The token ids of <paramref name="text"/> (no BOS or separator added).</summary>
    IReadOnlyList<int> Encode(string text);

    /// <summary>The text of <paramref name="ids"/>.</summary>
    string Decode(IEnumerable<int> ids);

    /// <summary>An encoder for one bulk job (e.g. a `blr prepare` run): may keep caches for the job's lifetime;
    /// thread-safe; gives exactly <see cref="Encode"/>'s ids.</summary>
    Func<string, IReadOnlyList<int>> BulkEncoder() => Encode;

    /// <summary>Where its texts may be cut (<see cref="PieceCuts.None"/> unless the tokenizer says
    /// otherwise).</summary>
    PieceCuts Cuts => PieceCuts.None;
}
