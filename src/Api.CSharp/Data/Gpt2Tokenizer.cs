using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace BlockwiseLR.Data;

/// <summary>GPT-2's BPE (tiktoken's "gpt2": ids 0..50256, &lt;|endoftext|&gt; = 50256) through
/// Microsoft.ML.Tokenizers. Thread-safe. A literal "&lt;|endoftext|&gt;" inside a document encodes as the
/// separator id (as tiktoken's encode with allowed_special="all"); decoding gives the same text back.</summary>
public sealed class Gpt2Tokenizer : ITextTokenizer
{
    static readonly Lazy<Gpt2Tokenizer> Shared = new(() => new Gpt2Tokenizer());
    readonly Tokenizer tokenizer = TiktokenTokenizer.CreateForModel("gpt2");

    /// <summary>The one shared instance (loading the vocabulary once).</summary>
    public static Gpt2Tokenizer Instance => Shared.Value;

    /// <inheritdoc/>
    public string Name => "gpt2";

    /// <inheritdoc/>
    public int VocabSize => 50257;

    /// <inheritdoc/>
    public int EndOfText => 50256;

    /// <inheritdoc/>
    public PieceCuts Cuts => PieceCuts.WhitespaceRuns;

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text) => Specials.Encode(tokenizer, text, EndOfText);

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids) ?? "";

    /// <summary>Words the bulk encoder's cache holds at most.</summary>
    internal const int CacheWords = 1 << 20;

    /// <summary>GPT-2's pre-tokenizer pattern (tiktoken's r50k_base).</summary>
    const string PreTokenPattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>GPT-2's BPE runs on each pre-token (regex piece) on its own, so the ids of a text are the ids of
    /// its pre-tokens laid end to end. Natural text repeats pre-tokens (words) constantly: caching their ids,
    /// shared by all threads, skips most BPE work and allocation. Each thread matches with its own Regex
    /// instance (one shared instance does not scale across threads), and a text holding the special
    /// &lt;|endoftext|&gt; goes through the library whole. Tested to give exactly <see cref="Encode"/>'s ids on
    /// the built-in corpus.</summary>
    public Func<string, IReadOnlyList<int>> BulkEncoder()
    {
        var cache = new ConcurrentDictionary<string, int[]>(Environment.ProcessorCount, 1 << 16);
        var lookup = cache.GetAlternateLookup<ReadOnlySpan<char>>();
        var regex = new ThreadLocal<Regex>(() =>
            new Regex(PreTokenPattern, RegexOptions.Compiled | RegexOptions.CultureInvariant)
        );
        return text =>
        {
            if (text.Contains(Specials.EndOfText, StringComparison.Ordinal))
                return Encode(text);
            var ids = new List<int>(text.Length / 3 + 8);
            foreach (var match in regex.Value!.EnumerateMatches(text))
            {
                var piece = text.AsSpan(match.Index, match.Length);
                if (!lookup.TryGetValue(piece, out var pieceIds))
                {
                    pieceIds = [.. tokenizer.EncodeToIds(piece, considerPreTokenization: false)];
                    // Capped (about 120 MB at 1M words): when full it starts again, so a vocabulary that keeps
                    // growing stays cached as it goes and memory does not grow with the corpus.
                    if (cache.Count >= CacheWords)
                        cache.Clear();
                    lookup.TryAdd(piece, pieceIds);
                }
                ids.AddRange(pieceIds);
            }
            return ids;
        };
    }
}
