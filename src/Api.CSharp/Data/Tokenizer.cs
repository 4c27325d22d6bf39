using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

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
    int VocabSize { get; }
    /// <summary>The id that separates documents.</summary>
    int EndOfText { get; }
    IReadOnlyList<int> Encode(string text);
    string Decode(IEnumerable<int> ids);

    /// <summary>An encoder for one bulk job (e.g. a `blr prepare` run): may keep caches for the job's lifetime;
    /// thread-safe; gives exactly <see cref="Encode"/>'s ids.</summary>
    Func<string, IReadOnlyList<int>> BulkEncoder() => Encode;

    /// <summary>Where its texts may be cut (<see cref="PieceCuts.None"/> unless the tokenizer says otherwise).</summary>
    PieceCuts Cuts => PieceCuts.None;
}

/// <summary>GPT-2's BPE (tiktoken's "gpt2": ids 0..50256, &lt;|endoftext|&gt; = 50256) through
/// Microsoft.ML.Tokenizers. Thread-safe. A literal "&lt;|endoftext|&gt;" inside a document encodes as the
/// separator id (as tiktoken's encode with allowed_special="all"); decoding gives the same text back.</summary>
public sealed class Gpt2Tokenizer : ITextTokenizer
{
    static readonly Lazy<Gpt2Tokenizer> Shared = new(() => new Gpt2Tokenizer());
    readonly Tokenizer tokenizer = TiktokenTokenizer.CreateForModel("gpt2");

    public static Gpt2Tokenizer Instance => Shared.Value;

    public string Name => "gpt2";
    public int VocabSize => 50257;
    public int EndOfText => 50256;
    public PieceCuts Cuts => PieceCuts.WhitespaceRuns;
    public IReadOnlyList<int> Encode(string text) => Specials.Encode(tokenizer, text, EndOfText);
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
        var regex = new ThreadLocal<Regex>(() => new Regex(PreTokenPattern, RegexOptions.Compiled | RegexOptions.CultureInvariant));
        return text =>
        {
            if (text.Contains(Specials.EndOfText, StringComparison.Ordinal)) return Encode(text);
            var ids = new List<int>(text.Length / 3 + 8);
            foreach (var match in regex.Value!.EnumerateMatches(text))
            {
                var piece = text.AsSpan(match.Index, match.Length);
                if (!lookup.TryGetValue(piece, out var pieceIds))
                {
                    pieceIds = [.. tokenizer.EncodeToIds(piece, considerPreTokenization: false)];
                    // Capped (about 120 MB at 1M words): when full it starts again, so a vocabulary that keeps
                    // growing stays cached as it goes and memory does not grow with the corpus.
                    if (cache.Count >= CacheWords) cache.Clear();
                    lookup.TryAdd(piece, pieceIds);
                }
                ids.AddRange(pieceIds);
            }
            return ids;
        };
    }
}

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

    static readonly Lazy<TiktokenTextTokenizer> SharedCl100k = new(() => new("cl100k", "cl100k_base", 100_277, 100_257));
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

/// <summary>A literal &lt;|endoftext|&gt; in a text is the separator id (tiktoken's allowed_special="all"). Handled here
/// rather than by Microsoft.ML.Tokenizers: in a full test run (many tokenizers made and used on other threads) its
/// tiktoken encoder was once seen to tokenize the special as plain text.</summary>
static class Specials
{
    public const string EndOfText = "<|endoftext|>";

    public static IReadOnlyList<int> Encode(Tokenizer tokenizer, string text, int endOfText)
    {
        if (!text.Contains(EndOfText, StringComparison.Ordinal)) return tokenizer.EncodeToIds(text);
        var ids = new List<int>();
        var parts = text.Split(EndOfText);
        for (var i = 0; i < parts.Length; i++)
        {
            if (i > 0) ids.Add(endOfText);
            if (parts[i].Length > 0) ids.AddRange(tokenizer.EncodeToIds(parts[i]));
        }
        return ids;
    }
}

/// <summary>What a prepared dataset, a checkpoint and an exported model record of their tokenizer: its kind (a built-in
/// name, or sentencepiece, tokenizer.json, vocab+merges), vocabulary, the id written before each document, and for
/// the file kinds the files (copied beside the shards and into every checkpoint) with the SHA-256 of their bytes.</summary>
public sealed record TokenizerRecord(string Name, int VocabSize, int EndOfText, IReadOnlyList<string>? Files = null, string? Sha256 = null)
{
    public static TokenizerRecord Of(ITextTokenizer tokenizer)
    {
        var files = TextTokenizers.FilesOf(tokenizer);
        return files.Count == 0
            ? new(tokenizer.Name, tokenizer.VocabSize, tokenizer.EndOfText)
            : new(tokenizer.Name, tokenizer.VocabSize, tokenizer.EndOfText, files.Select(f => f.Name).ToList(),
                  Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(files.SelectMany(f => File.ReadAllBytes(f.From)).ToArray())));
    }

    public bool Equals(TokenizerRecord? other) =>
        other is not null && Name == other.Name && VocabSize == other.VocabSize && EndOfText == other.EndOfText && Sha256 == other.Sha256
        && (Files ?? []).SequenceEqual(other.Files ?? []);

    public override int GetHashCode() => HashCode.Combine(Name, VocabSize, EndOfText, Sha256);
}

/// <summary>The tokenizers by name or file, and the tokenizer a dataset or a model was made with.</summary>
public static class TextTokenizers
{
    /// <summary>The built-in names: gpt2 (the default), cl100k, o200k, and gutenberg-bpe4k (a LLaMA-style
    /// SentencePiece BPE of 4,000 pieces trained on the built-in corpus: small models spend their steps on the
    /// Transformer instead of a 50K-row embedding; the main job uses it).</summary>
    public static IReadOnlyList<string> Names { get; } = ["gpt2", "cl100k", "o200k", BuiltinSmall];

    /// <summary>The built-in SentencePiece tokenizer's name.</summary>
    public const string BuiltinSmall = "gutenberg-bpe4k";

    /// <summary>The file beside a model's config.json that names its tokenizer (checkpoints and export-hf write it;
    /// a model folder without one is taken to use GPT-2's).</summary>
    public const string ModelFile = "blr-tokenizer.json";

    /// <summary>A built-in name (gpt2, cl100k, o200k, gutenberg-bpe4k), or a path: a SentencePiece <c>*.model</c>, a Hugging Face
    /// <c>tokenizer.json</c>, <c>vocab.json</c> (with <c>merges.txt</c> beside it) or GPT-2's <c>encoder.json</c>
    /// (with <c>vocab.bpe</c>), or a folder holding one of these.</summary>
    public static ITextTokenizer Create(string spec)
    {
        switch (spec.ToLowerInvariant())
        {
            case "gpt2": return Gpt2Tokenizer.Instance;
            case "cl100k" or "cl100k_base": return TiktokenTextTokenizer.Cl100k;
            case "o200k" or "o200k_base": return TiktokenTextTokenizer.O200k;
            case BuiltinSmall: return new SentencePieceTextTokenizer(BuiltinFile(BuiltinSmall + ".model"));
        }
        if (Directory.Exists(spec))
        {
            foreach (var name in new[] { "tokenizer.json", "tokenizer.model", "vocab.json", "encoder.json" })
                if (File.Exists(Path.Combine(spec, name))) return Create(Path.Combine(spec, name));
            throw new InvalidOptionException("Tokenizer", spec, "is a folder without tokenizer.json, tokenizer.model, vocab.json + merges.txt or encoder.json + vocab.bpe");
        }
        if (!File.Exists(spec))
            throw new InvalidOptionException("Tokenizer", spec, $"is neither a tokenizer here ({string.Join(", ", Names)}) nor a tokenizer file or folder");
        var file = Path.GetFileName(spec).ToLowerInvariant();
        var folder = Path.GetDirectoryName(Path.GetFullPath(spec))!;
        if (file.EndsWith(".model", StringComparison.Ordinal)) return new SentencePieceTextTokenizer(spec);
        if (file is "vocab.json" or "encoder.json")
        {
            var merges = Path.Combine(folder, file == "vocab.json" ? "merges.txt" : "vocab.bpe");
            if (!File.Exists(merges)) throw new InvalidOptionException("Tokenizer", spec, $"needs {Path.GetFileName(merges)} beside it (the BPE merges)");
            return new VocabMergesTokenizer(spec, merges);
        }
        if (file.EndsWith(".json", StringComparison.Ordinal)) return new HfTextTokenizer(spec);
        throw new InvalidOptionException("Tokenizer", spec, "is not a tokenizer file (*.model, tokenizer.json, vocab.json, encoder.json)");
    }

    /// <summary>A tokenizer file embedded in this library, as a file (file tokenizers are read from, and copied beside
    /// shards and checkpoints from, a path): written once per process into the user's temp folder under its SHA-256,
    /// through a uniquely named temporary file and a rename, so processes and threads that start together never read
    /// half a file; a file already there is used only if its own SHA-256 is the resource's.</summary>
    static string BuiltinFile(string name) => BuiltinFiles.GetOrAdd(name, static name =>
    {
        using var resource = typeof(TextTokenizers).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"the built-in tokenizer {name} is missing from this build");
        using var buffer = new MemoryStream();
        resource.CopyTo(buffer);
        var bytes = buffer.ToArray();
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
        var folder = Path.Combine(Path.GetTempPath(), $"blr-tokenizers-{Environment.UserName}", hash[..16]);
        var path = Path.Combine(folder, name);
        if (File.Exists(path) && Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path))) == hash) return path;
        Directory.CreateDirectory(folder);
        var temporary = $"{path}.{Guid.NewGuid():N}.tmp";
        File.WriteAllBytes(temporary, bytes);
        File.Move(temporary, path, overwrite: true);
        return path;
    });

    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> BuiltinFiles = new();

    /// <summary>The files a tokenizer is made from, each with the name it is stored under beside shards and checkpoints.</summary>
    internal static IReadOnlyList<(string From, string Name)> FilesOf(ITextTokenizer tokenizer) => tokenizer switch
    {
        SentencePieceTextTokenizer sp => [(sp.Path, "tokenizer.model")],
        HfTextTokenizer hf => [(hf.Path, "tokenizer.json")],
        VocabMergesTokenizer bpe => [(bpe.VocabPath, "vocab.json"), (bpe.MergesPath, "merges.txt")],
        _ => [],
    };

    /// <summary>The tokenizer a record names, its files (if any) in <paramref name="folder"/>.</summary>
    public static ITextTokenizer Load(TokenizerRecord record, string folder)
    {
        if (record.Files is not { Count: > 0 } files) return Create(record.Name);
        var paths = files.Select(f => Path.Combine(folder, f)).ToList();
        if (paths.FirstOrDefault(p => !File.Exists(p)) is { } missing)
            throw new DataInputException($"{missing}: missing; the {record.Name} tokenizer's files travel with the data and the model, copy it back");
        return record.Name switch
        {
            "vocab+merges" => new VocabMergesTokenizer(paths[0], paths[1]),
            _ => Create(paths[0]),
        };
    }

    /// <summary>The tokenizer a prepared dataset's manifest.json records (null: no manifest, e.g. raw nanoGPT files,
    /// or one without a readable tokenizer entry, which opening the dataset reports).</summary>
    public static TokenizerRecord? OfDataset(string folder)
    {
        var path = Path.Combine(folder, "manifest.json");
        if (!File.Exists(path)) return null;
        try
        {
            var tokenizer = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))?["tokenizer"];
            if (tokenizer?["name"] is null || tokenizer["vocab_size"] is null || tokenizer["end_of_text"] is null) return null;
            return new TokenizerRecord(tokenizer["name"]!.GetValue<string>(), tokenizer["vocab_size"]!.GetValue<int>(), tokenizer["end_of_text"]!.GetValue<int>(),
                tokenizer["files"]?.AsArray().Select(f => f!.GetValue<string>()).ToList(), tokenizer["sha256"]?.GetValue<string>());
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException) { return null; }
    }

    /// <summary>A record as the manifest's tokenizer entry.</summary>
    internal static System.Text.Json.Nodes.JsonObject ToJson(TokenizerRecord record) => new()
    {
        ["name"] = record.Name, ["vocab_size"] = record.VocabSize, ["end_of_text"] = record.EndOfText,
        ["files"] = record.Files is null ? null : new System.Text.Json.Nodes.JsonArray(record.Files.Select(f => (System.Text.Json.Nodes.JsonNode)f).ToArray()),
        ["sha256"] = record.Sha256,
    };

    /// <summary>The tokenizer of a model folder: the one its <see cref="ModelFile"/> names, else GPT-2's.</summary>
    public static ITextTokenizer ForModel(string folder)
    {
        var path = Path.Combine(folder, ModelFile);
        if (!File.Exists(path)) return Gpt2Tokenizer.Instance;
        var record = System.Text.Json.JsonSerializer.Deserialize<TokenizerRecord>(File.ReadAllText(path))
            ?? throw new DataInputException($"{path}: empty; it should name the model's tokenizer");
        return Load(record, folder);
    }

    /// <summary>Writes <see cref="ModelFile"/> into a model folder, with the tokenizer's files copied from
    /// <paramref name="filesFrom"/> (a dataset or another model folder).</summary>
    public static void WriteForModel(string folder, TokenizerRecord record, string? filesFrom = null)
    {
        File.WriteAllText(Path.Combine(folder, ModelFile), System.Text.Json.JsonSerializer.Serialize(record));
        if (filesFrom is not null)
            foreach (var file in record.Files ?? [])
                File.Copy(Path.Combine(filesFrom, file), Path.Combine(folder, file), overwrite: true);
    }
}
