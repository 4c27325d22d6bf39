using Microsoft.ML.Tokenizers;

namespace BlockwiseLR.Data;

/// <summary>A literal &lt;|endoftext|&gt; in a text is the separator id (tiktoken's allowed_special="all"). Handled
/// here rather than by Microsoft.ML.Tokenizers: in a full test run (many tokenizers made and used on other threads) its
/// tiktoken encoder was once seen to tokenize the special as plain text.</summary>
static class Specials
{
    public const string EndOfText = "<|endoftext|>";

    public static IReadOnlyList<int> Encode(Tokenizer tokenizer, string text, int endOfText)
    {
        if (!text.Contains(EndOfText, StringComparison.Ordinal))
            return tokenizer.EncodeToIds(text);
        var ids = new List<int>();
        var parts = text.Split(EndOfText);
        for (var i = 0; i < parts.Length; i++)
        {
            if (i > 0)
                ids.Add(endOfText);
            if (parts[i].Length > 0)
                ids.AddRange(tokenizer.EncodeToIds(parts[i]));
        }
        return ids;
    }
}
