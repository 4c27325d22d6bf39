using System.Text;

namespace BlockwiseLR.Data;

/// <summary>
/// Cuts text where GPT-2's pre-tokenizer cannot notice: at the start of a whitespace run that follows a
/// non-whitespace character. No pre-token (letters, digits, punctuation, contractions) includes trailing
/// whitespace, and every whitespace pre-token starts inside a run, so tokenizing the pieces gives exactly the
/// tokens of the whole text (tested on the built-in corpus). Paragraph breaks (a blank line) are preferred.
/// </summary>
public static class TextPieces
{
    /// <summary>Start offsets of pieces of about <paramref name="targetChars"/> characters (the first is 0).</summary>
    public static List<int> Starts(string text, int targetChars)
    {
        var starts = new List<int> { 0 };
        var position = targetChars;
        while (position < text.Length)
        {
            var cut = ParagraphCut(text, position, position + targetChars) ?? WhitespaceCut(text, position);
            if (cut is not { } at || at >= text.Length) break;
            starts.Add(at);
            position = at + targetChars;
        }
        return starts;
    }

    /// <summary>The pieces of a text that arrives in blocks. With <see cref="PieceCuts.WhitespaceRuns"/> (GPT-2), exactly
    /// the cuts <see cref="Starts"/> makes in the whole text; with <see cref="PieceCuts.Spaces"/> (cl100k, o200k), the
    /// first space or tab after a non-whitespace character past the target; with None, the whole text. The cuts are
    /// made holding no more than the text since the last cut plus two pieces of lookahead (more only while no cut
    /// comes). Blocks may be reused by their producer: they are copied.</summary>
    internal static IEnumerable<string> Stream(IEnumerable<ReadOnlyMemory<char>> blocks, int targetChars, PieceCuts cuts = PieceCuts.WhitespaceRuns)
    {
        if (cuts == PieceCuts.None)
        {
            var whole = new StringBuilder();
            foreach (var block in blocks) whole.Append(block.Span);
            if (whole.Length > 0) yield return whole.ToString();
            yield break;
        }
        var buffer = new char[Math.Max(1 << 16, 4 * targetChars + 4)];
        int begin = 0, end = 0;       // buffer[begin..end) is the text since the last cut
        using var source = blocks.GetEnumerator();
        var ended = false;

        bool More()
        {
            if (ended) return false;
            if (!source.MoveNext()) { ended = true; return false; }
            var block = source.Current.Span;
            if (end + block.Length > buffer.Length)
            {
                var kept = end - begin;
                if (kept + block.Length > buffer.Length / 2) Array.Resize(ref buffer, Math.Max(buffer.Length * 2, 2 * (kept + block.Length)));
                Array.Copy(buffer, begin, buffer, 0, kept);
                (begin, end) = (0, kept);
            }
            block.CopyTo(buffer.AsSpan(end));
            end += block.Length;
            return true;
        }

        while (true)
        {
            // The first paragraph break up to two targets on decides, so that much lookahead (or the end) is needed.
            var limit = targetChars + targetChars;
            while (end - begin < limit + 2 && More()) { }
            var length = end - begin;
            if (length <= targetChars)
            {
                if (length > 0) yield return new string(buffer, begin, length);
                yield break;   // the fill stops short of the lookahead only at the end of the text
            }
            int? cut = null;
            var blank = cuts == PieceCuts.Spaces ? -1 : buffer.AsSpan(begin + targetChars, length - targetChars).IndexOf("\n\n".AsSpan());
            if (blank >= 0 && blank + targetChars <= limit)
            {
                var start = blank + targetChars;
                while (start > 0 && char.IsWhiteSpace(buffer[begin + start - 1])) start--;
                if (start > targetChars - 1) cut = start;
            }
            if (cut is null)
            {
                // The first start of a whitespace run after the target; offsets are relative to begin, which More
                // keeps pointing at the same text.
                var i = Math.Max(1, targetChars);
                while (true)
                {
                    if (begin + i >= end) { if (!More()) break; continue; }
                    var c = buffer[begin + i];
                    if ((cuts == PieceCuts.Spaces ? c is ' ' or '\t' : char.IsWhiteSpace(c)) && !char.IsWhiteSpace(buffer[begin + i - 1])) { cut = i; break; }
                    i++;
                }
            }
            if (cut is not { } at)
            {
                while (More()) { }   // no cut left: the rest is one piece, as Starts leaves it
                yield return new string(buffer, begin, end - begin);
                yield break;
            }
            yield return new string(buffer, begin, at);
            begin += at;
        }
    }

    static int RunStart(string text, int index)
    {
        while (index > 0 && char.IsWhiteSpace(text[index - 1])) index--;
        return index;
    }

    static int? ParagraphCut(string text, int from, int limit)
    {
        var blank = text.IndexOf("\n\n", from, StringComparison.Ordinal);
        if (blank < 0 || blank > limit) return null;
        var start = RunStart(text, blank);
        return start > from - 1 && start > 0 ? start : null;
    }

    static int? WhitespaceCut(string text, int from)
    {
        for (var i = Math.Max(1, from); i < text.Length; i++)
            if (char.IsWhiteSpace(text[i]) && !char.IsWhiteSpace(text[i - 1])) return i;
        return null;
    }
}
