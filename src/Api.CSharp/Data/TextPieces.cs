using System.Text;

namespace BlockwiseLR.Data;

/// <summary>
/// Cuts text where GPT-2's pre-tokenizer cannot notice: at the start of a whitespace run that follows a
/// non-whitespace character. No pre-token (letters, digits, punctuation, contractions) includes trailing
/// whitespace, and every whitespace pre-token starts inside a run, so tokenizing the pieces gives exactly the
/// tokens of the whole text (tested on the built-in corpus). Paragraph breaks (a blank line) are preferred.
/// </summary>
internal static class TextPieces
{
    /// <summary>Start offsets of pieces of about <paramref name="targetChars"/> characters (the first is 0).</summary>
    public static List<int> Starts(string text, int targetChars)
    {
        var starts = new List<int> { 0 };
        var position = targetChars;
        while (position < text.Length)
        {
            var cut = ParagraphCut(text, position, position + targetChars) ?? WhitespaceCut(text, position);
            if (cut is not { } at || at >= text.Length)
                break;
            starts.Add(at);
            position = at + targetChars;
        }
        return starts;
    }

    /// <summary>The pieces of a text that arrives in blocks. With <see cref="PieceCuts.WhitespaceRuns"/> (GPT-2),
    /// exactly the cuts <see cref="Starts"/> makes in the whole text; with <see cref="PieceCuts.Spaces"/> (cl100k,
    /// o200k), the first space or tab after a non-whitespace character past the target; with None, the whole text. The
    /// cuts are made holding no more than the text since the last cut plus two pieces of lookahead (more only while no
    /// cut comes). Blocks may be reused by their producer: they are copied.</summary>
    internal static IEnumerable<string> Stream(
        IEnumerable<ReadOnlyMemory<char>> blocks,
        int targetChars,
        PieceCuts cuts = PieceCuts.WhitespaceRuns
    )
    {
        if (cuts == PieceCuts.None)
        {
            var whole = new StringBuilder();
            foreach (var block in blocks)
                whole.Append(block.Span);
            if (whole.Length > 0)
                yield return whole.ToString();
            yield break;
        }
        using var text = new Lookahead(blocks, Math.Max(1 << 16, 4 * targetChars + 4));
        while (true)
        {
            // The first paragraph break up to two targets on decides, so that much lookahead (or the end) is needed.
            var limit = targetChars + targetChars;
            text.FillTo(limit + 2);
            if (text.Length <= targetChars)
            {
                if (text.Length > 0)
                    yield return text.Take(text.Length);
                yield break; // the fill stops short of the lookahead only at the end of the text
            }
            var cut = (cuts == PieceCuts.Spaces ? null : text.ParagraphCut(targetChars, limit))
                ?? text.RunCut(targetChars, cuts);
            if (cut is not { } at)
            {
                text.FillTo(int.MaxValue); // no cut left: the rest is one piece, as Starts leaves it
                yield return text.Take(text.Length);
                yield break;
            }
            yield return text.Take(at);
        }
    }

    /// <summary>The text since the last cut and the lookahead read so far, from blocks read on demand; offsets are
    /// relative to the last cut.</summary>
    sealed class Lookahead(IEnumerable<ReadOnlyMemory<char>> blocks, int capacity) : IDisposable
    {
        readonly IEnumerator<ReadOnlyMemory<char>> source = blocks.GetEnumerator();
        char[] buffer = new char[capacity];
        int begin,
            end; // buffer[begin..end) is the text since the last cut
        bool ended;

        public int Length => end - begin;

        /// <summary>Reads one more block; false at the end of the text.</summary>
        public bool More()
        {
            if (ended)
                return false;
            if (!source.MoveNext())
            {
                ended = true;
                return false;
            }
            var block = source.Current.Span;
            if (end + block.Length > buffer.Length)
            {
                var kept = end - begin;
                if (kept + block.Length > buffer.Length / 2)
                    Array.Resize(ref buffer, Math.Max(buffer.Length * 2, 2 * (kept + block.Length)));
                Array.Copy(buffer, begin, buffer, 0, kept);
                (begin, end) = (0, kept);
            }
            block.CopyTo(buffer.AsSpan(end));
            end += block.Length;
            return true;
        }

        /// <summary>Reads until <paramref name="length"/> characters are held or the text ends.</summary>
        public void FillTo(int length)
        {
            while (Length < length && More()) { }
        }

        /// <summary>The first <paramref name="length"/> characters, cut off.</summary>
        public string Take(int length)
        {
            var piece = new string(buffer, begin, length);
            begin += length;
            return piece;
        }

        /// <summary>The cut before a paragraph break ("\n\n") between the target and the limit, trailing whitespace
        /// left with the next piece; null when there is none or it would cut before the target.</summary>
        public int? ParagraphCut(int targetChars, int limit)
        {
            var blank = buffer.AsSpan(begin + targetChars, Length - targetChars).IndexOf("\n\n".AsSpan());
            if (blank < 0 || blank + targetChars > limit)
                return null;
            var start = blank + targetChars;
            while (start > 0 && char.IsWhiteSpace(buffer[begin + start - 1]))
                start--;
            return start > targetChars - 1 ? start : null;
        }

        /// <summary>The first start of a whitespace run (a space or tab for <see cref="PieceCuts.Spaces"/>) after the
        /// target, reading more as needed; null when the text ends first.</summary>
        public int? RunCut(int targetChars, PieceCuts cuts)
        {
            for (var i = Math.Max(1, targetChars); ; i++)
            {
                while (begin + i >= end)
                    if (!More())
                        return null;
                var c = buffer[begin + i];
                var run = cuts == PieceCuts.Spaces ? c is ' ' or '\t' : char.IsWhiteSpace(c);
                if (run && !char.IsWhiteSpace(buffer[begin + i - 1]))
                    return i;
            }
        }

        public void Dispose() => source.Dispose();
    }

    static int RunStart(string text, int index)
    {
        while (index > 0 && char.IsWhiteSpace(text[index - 1]))
            index--;
        return index;
    }

    static int? ParagraphCut(string text, int from, int limit)
    {
        var blank = text.IndexOf("\n\n", from, StringComparison.Ordinal);
        if (blank < 0 || blank > limit)
            return null;
        var start = RunStart(text, blank);
        return start > from - 1 && start > 0 ? start : null;
    }

    static int? WhitespaceCut(string text, int from)
    {
        for (var i = Math.Max(1, from); i < text.Length; i++)
            if (char.IsWhiteSpace(text[i]) && !char.IsWhiteSpace(text[i - 1]))
                return i;
        return null;
    }
}
