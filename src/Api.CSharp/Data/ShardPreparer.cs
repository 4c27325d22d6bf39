using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using Microsoft.FSharp.Collections;

namespace BlockwiseLR.Data;

/// <summary>What `blr prepare` does.</summary>
public sealed record PrepareOptions
{
    /// <summary>Files and folders to read (or use <see cref="Builtin"/>).</summary>
    public IReadOnlyList<string> Inputs { get; init; } = [];
    /// <summary>A built-in corpus ("gutenberg") instead of <see cref="Inputs"/>.</summary>
    public string? Builtin { get; init; }
    public required string OutputDirectory { get; init; }
    public CorpusOptions Corpus { get; init; } = new();
    /// <summary>Share of tokens for validation (used when <see cref="ValTokens"/> is null).</summary>
    public double ValFraction { get; init; } = 0.03;
    /// <summary>Tokens for validation, instead of a fraction.</summary>
    public long? ValTokens { get; init; }
    /// <summary>Documents are cut at paragraph breaks into chunks of about this many tokens; the val split is a
    /// seeded choice of chunks, so a corpus of a few long books still gets a representative val set.</summary>
    public int ChunkTokens { get; init; } = 8192;
    public long ShardTokens { get; init; } = 100_000_000;
    public ulong Seed { get; init; } = 1337;
    public int Threads { get; init; } = Environment.ProcessorCount;
    /// <summary>Replace an existing prepared dataset in <see cref="OutputDirectory"/>.</summary>
    public bool Overwrite { get; init; }
}

/// <summary>Progress: sources finished of all, documents and tokens so far.</summary>
public sealed record PrepareProgress(int SourcesDone, int Sources, long Documents, long Tokens);

public sealed record PrepareResult(
    string Directory, string Manifest, IReadOnlyList<string> Shards, long TrainTokens, long ValTokens,
    long Documents, int Chunks, int ValChunks, double Seconds)
{
    public double TokensPerSecond => (TrainTokens + ValTokens) / Seconds;

    /// <summary>What was done with the staging folder of a prepare that died here, if there was one: reused (the same
    /// inputs and options) or replaced (another command's).</summary>
    public string? StaleStaging { get; init; }
}

/// <summary>
/// Corpus -> llm.c token shards: documents separated by &lt;|endoftext|&gt; (each document starts with it, as in
/// llm.c), tokenized on all cores in paragraph-aligned pieces (exactly the whole-text tokens), cut into chunks of
/// about <see cref="PrepareOptions.ChunkTokens"/>, a seeded choice of chunks written to val shards and the rest
/// to train shards, with a manifest.json. Everything is written into a staging folder and moved into place at
/// the end: a failure leaves no shard or manifest behind.
/// </summary>
public static class ShardPreparer
{
    const int PieceChars = 16_384;
    const int BatchChars = 4 << 20;

    sealed record Chunk(int Document, int IndexInDocument, long Offset, long Tokens);

    public static PrepareResult Run(PrepareOptions options, IProgress<PrepareProgress>? progress = null, ITextTokenizer? tokenizer = null)
    {
        tokenizer ??= Gpt2Tokenizer.Instance;
        Validate(options);
        var clock = Stopwatch.StartNew();
        var (sources, documentsOf) = Sources(options);
        var output = Path.GetFullPath(options.OutputDirectory);
        var created = CheckOutput(output, options.Overwrite);
        // The staging folder is named from the inputs (their content hashes) and the options that shape the output,
        // and holds a lock with the live process's id: the same command after a kill finds it again; another
        // command replaces it; a live one is left alone.
        var staging = Path.Combine(output, $".prepare-{StagingKey(options, sources)}");
        var stale = ClaimStaging(output, staging);
        var succeeded = false;
        try
        {
            var allTokens = Path.Combine(staging, "all.tokens");
            var (chunks, documents) = Tokenize(sources, documentsOf, tokenizer, options, allTokens, progress);
            BlockwiseLR.Training.FaultInjection.Hang("hang-during-prepare", 0);
            var total = chunks.Sum(c => c.Tokens);
            if (total == 0) throw new DataInputException($"the corpus is empty: {sources.Count} source(s) hold no text");
            var target = options.ValTokens ?? (long)Math.Round(options.ValFraction * total);
            var chosen = Sampling.chooseValChunks(options.Seed, chunks.Select(c => c.Tokens).ToArray(), target);
            if (chosen.IsError) throw new DataInputException(chosen.ErrorValue, "ValFraction", "ValTokens", "ChunkTokens");
            var valChunks = chosen.ResultValue;
            var (train, val) = WriteShards(allTokens, chunks, valChunks, staging, options.ShardTokens, tokenizer.VocabSize);
            File.Delete(allTokens);
            var manifest = Manifest(options, tokenizer, sources, chunks, valChunks, train, val, documents);
            File.WriteAllText(Path.Combine(staging, "manifest.json"), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            var shards = Commit(staging, output, options.Overwrite);
            succeeded = true;
            return new PrepareResult(output, Path.Combine(output, "manifest.json"), shards,
                train.Sum(s => s.Tokens), val.Sum(s => s.Tokens), documents, chunks.Count, valChunks.Count, clock.Elapsed.TotalSeconds)
            { StaleStaging = stale };
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            // A failed run into a folder it made leaves no empty folder behind.
            if (!succeeded && created && Directory.Exists(output) && !Directory.EnumerateFileSystemEntries(output).Any()) Directory.Delete(output);
        }
    }

    static string StagingKey(PrepareOptions o, IReadOnlyList<SourceFile> sources)
    {
        var text = string.Join("\n", sources.Select(s => $"{s.Path}\t{s.Sha256}")) + "\n" + System.Text.Json.JsonSerializer.Serialize(
            new { o.Builtin, o.Corpus, o.ValFraction, o.ValTokens, o.ChunkTokens, o.ShardTokens, o.Seed });
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)))[..16].ToLowerInvariant();
    }

    /// <summary>Takes the staging folder for this process (its lock names our process id), after dealing with any
    /// other staging folder in the output: a live process's is refused, a dead one's is reused or removed.</summary>
    static string? ClaimStaging(string output, string staging)
    {
        string? stale = null;
        foreach (var other in Directory.GetDirectories(output, ".prepare-*"))
        {
            var lockFile = Path.Combine(other, "lock");
            var owner = File.Exists(lockFile) && int.TryParse(File.ReadAllText(lockFile).Trim(), out var pid) ? pid : (int?)null;
            if (owner is { } id && id != Environment.ProcessId && IsAlive(id))
                throw new DataInputException($"{output}: another prepare (process {id}) is working here ({Path.GetFileName(other)}); wait for it or stop it");
            stale = other == staging
                ? $"reused the staging folder of an interrupted prepare of the same inputs ({Path.GetFileName(other)})"
                : $"removed the staging folder of an interrupted prepare of other inputs or options ({Path.GetFileName(other)})";
            Directory.Delete(other, recursive: true);   // no partial result is resumed yet: the work starts again
        }
        Directory.CreateDirectory(staging);
        File.WriteAllText(Path.Combine(staging, "lock"), Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return stale;
    }

    static bool IsAlive(int processId)
    {
        try
        {
            using var process = Process.GetProcessById(processId);
            return !process.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    static void Validate(PrepareOptions o)
    {
        if (o.Builtin is not null && o.Inputs.Count > 0) throw new InvalidOptionException(nameof(o.Builtin), o.Builtin, "give Inputs or a Builtin corpus, not both");
        if (o.Threads < 1) throw new InvalidOptionException(nameof(o.Threads), $"{o.Threads}", "must be >= 1");
        if (o.ChunkTokens < 1) throw new InvalidOptionException(nameof(o.ChunkTokens), $"{o.ChunkTokens}", "must be >= 1");
        if (o.ShardTokens < 1 || o.ShardTokens > int.MaxValue) throw new InvalidOptionException(nameof(o.ShardTokens), $"{o.ShardTokens}", $"must be in 1..{int.MaxValue} (llm.c headers count tokens in an int32)");
        if (o.ValTokens is null && !(o.ValFraction >= 0 && o.ValFraction < 1)) throw new InvalidOptionException(nameof(o.ValFraction), o.ValFraction.ToString(System.Globalization.CultureInfo.InvariantCulture), "must be in [0, 1)");
    }

    static (IReadOnlyList<SourceFile>, Func<SourceFile, IEnumerable<Document>>) Sources(PrepareOptions o)
    {
        if (o.Builtin is { } name)
        {
            var (documents, source) = Corpus.Builtin(name);
            return ([source], _ => documents);
        }
        return (Corpus.Resolve(o.Inputs, o.Corpus), s => Corpus.Read(s.Path, o.Corpus));
    }

    /// <summary>Whether the output folder was made now.</summary>
    static bool CheckOutput(string output, bool overwrite)
    {
        if (File.Exists(output)) throw new DataInputException($"{output}: is a file; OutputDirectory takes a folder", "OutputDirectory");
        if (!Directory.Exists(output)) { Directory.CreateDirectory(output); return true; }
        var existing = Directory.GetFiles(output, "*.bin").Append(Path.Combine(output, "manifest.json")).Where(File.Exists).ToList();
        if (existing.Count > 0 && !overwrite)
            throw new DataInputException($"{output}: already holds a prepared dataset ({Path.GetFileName(existing[0])}); choose another OutputDirectory or set Overwrite", "OutputDirectory", "Overwrite");
        return false;
    }

    /// <summary>Tokenizes every document (pieces in parallel, results in order) into one staging file and
    /// returns the chunks.</summary>
    static (List<Chunk> Chunks, long Documents) Tokenize(IReadOnlyList<SourceFile> sources, Func<SourceFile, IEnumerable<Document>> documentsOf,
        ITextTokenizer tokenizer, PrepareOptions options, string allTokens, IProgress<PrepareProgress>? progress)
    {
        var chunks = new List<Chunk>();
        var encode = tokenizer.BulkEncoder();
        long offset = 0, documents = 0;
        using var writer = new TokenShardWriter(allTokens, tokenizer.VocabSize);
        var pending = new List<(int Document, string Text)>();    // pieces waiting for a parallel batch
        var pendingChars = 0L;
        var open = (Document: -1, Index: 0, Start: 0L);            // the chunk being filled

        void CloseChunk()
        {
            if (open.Document >= 0 && offset > open.Start) chunks.Add(new Chunk(open.Document, open.Index, open.Start, offset - open.Start));
        }

        void Flush()
        {
            var encoded = new IReadOnlyList<int>[pending.Count];
            Parallel.For(0, pending.Count, new ParallelOptions { MaxDegreeOfParallelism = options.Threads },
                i => encoded[i] = encode(pending[i].Text));
            for (var i = 0; i < pending.Count; i++)
            {
                var document = pending[i].Document;
                if (document != open.Document)
                {
                    CloseChunk();
                    open = (document, 0, offset);
                    writer.Write([tokenizer.EndOfText]);
                    offset++;
                }
                else if (offset - open.Start >= options.ChunkTokens)
                {
                    CloseChunk();
                    open = (document, open.Index + 1, offset);
                }
                ReadOnlySpan<int> ids = encoded[i] switch
                {
                    List<int> list => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(list),
                    int[] array => array,
                    var other => other.ToArray(),
                };
                writer.Write(ids);
                offset += ids.Length;
            }
            pending.Clear();
            pendingChars = 0;
        }

        for (var s = 0; s < sources.Count; s++)
        {
            foreach (var document in documentsOf(sources[s]))
            {
                if (document.Text.Length == 0) continue;
                var index = (int)documents++;
                var starts = TextPieces.Starts(document.Text, PieceChars);
                for (var p = 0; p < starts.Count; p++)
                {
                    var end = p + 1 < starts.Count ? starts[p + 1] : document.Text.Length;
                    pending.Add((index, document.Text[starts[p]..end]));
                    pendingChars += end - starts[p];
                }
                if (pendingChars >= BatchChars) Flush();
                progress?.Report(new PrepareProgress(s, sources.Count, documents, offset));
            }
            Flush();
            progress?.Report(new PrepareProgress(s + 1, sources.Count, documents, offset));
        }
        CloseChunk();
        return (chunks, documents);
    }

    sealed record ShardFile(string Name, long Tokens);

    static (List<ShardFile> Train, List<ShardFile> Val) WriteShards(string allTokens, List<Chunk> chunks, FSharpSet<int> valChunks,
        string staging, long shardTokens, int vocabSize)
    {
        using var source = TokenShard.Open(allTokens);
        var train = new ShardStream(staging, "train", shardTokens, vocabSize);
        var val = new ShardStream(staging, "val", shardTokens, vocabSize);
        var buffer = new long[1 << 16];
        var ints = new int[buffer.Length];
        for (var c = 0; c < chunks.Count; c++)
        {
            var target = valChunks.Contains(c) ? val : train;
            for (long done = 0; done < chunks[c].Tokens; done += buffer.Length)
            {
                var n = (int)Math.Min(buffer.Length, chunks[c].Tokens - done);
                source.CopyTo(chunks[c].Offset + done, buffer.AsSpan(0, n));
                for (var i = 0; i < n; i++) ints[i] = (int)buffer[i];
                target.Write(ints.AsSpan(0, n));
            }
        }
        return (train.Close(), val.Close());
    }

    /// <summary>A split written as consecutive shards of at most shardTokens tokens.</summary>
    sealed class ShardStream(string folder, string split, long shardTokens, int vocabSize)
    {
        readonly List<ShardFile> done = [];
        TokenShardWriter? current;

        public void Write(ReadOnlySpan<int> tokens)
        {
            while (tokens.Length > 0)
            {
                current ??= new TokenShardWriter(Path.Combine(folder, $"{split}_{done.Count:D6}.bin"), vocabSize);
                var room = (int)Math.Min(tokens.Length, shardTokens - current.Count);
                current.Write(tokens[..room]);
                tokens = tokens[room..];
                if (current.Count == shardTokens) Finish();
            }
        }

        void Finish()
        {
            if (current is null) return;
            current.Dispose();
            done.Add(new ShardFile(Path.GetFileName(current.Path), current.Count));
            current = null;
        }

        public List<ShardFile> Close()
        {
            Finish();
            return done;
        }
    }

    static JsonObject Manifest(PrepareOptions o, ITextTokenizer tokenizer, IReadOnlyList<SourceFile> sources, List<Chunk> chunks,
        FSharpSet<int> valChunks, List<ShardFile> train, List<ShardFile> val, long documents) => new()
    {
        ["format"] = "llm.c token shards (header: 256 int32, magic 20240520 version 1 = uint16 tokens)",
        ["tokenizer"] = new JsonObject { ["name"] = tokenizer.Name, ["vocab_size"] = tokenizer.VocabSize, ["end_of_text"] = tokenizer.EndOfText },
        ["documents"] = documents,
        ["train_tokens"] = train.Sum(s => s.Tokens),
        ["val_tokens"] = val.Sum(s => s.Tokens),
        ["shards"] = new JsonObject
        {
            ["train"] = new JsonArray(train.Select(s => (JsonNode)new JsonObject { ["file"] = s.Name, ["tokens"] = s.Tokens }).ToArray()),
            ["val"] = new JsonArray(val.Select(s => (JsonNode)new JsonObject { ["file"] = s.Name, ["tokens"] = s.Tokens }).ToArray()),
        },
        ["sources"] = new JsonArray(sources.Select(s => (JsonNode)new JsonObject { ["path"] = s.Path, ["bytes"] = s.Bytes, ["sha256"] = s.Sha256 }).ToArray()),
        ["options"] = new JsonObject
        {
            ["builtin"] = o.Builtin,
            ["glob"] = o.Corpus.Glob,
            ["json_field"] = o.Corpus.JsonField,
            ["parquet_column"] = o.Corpus.ParquetColumn,
            ["replace_invalid_utf8"] = o.Corpus.ReplaceInvalidUtf8,
            ["val_fraction"] = o.ValTokens is null ? o.ValFraction : null,
            ["val_tokens"] = o.ValTokens,
            ["chunk_tokens"] = o.ChunkTokens,
            ["shard_tokens"] = o.ShardTokens,
            ["seed"] = o.Seed,
        },
        // In corpus order: which split each chunk went to, so the corpus can be reassembled from the shards.
        ["chunks"] = new JsonArray(chunks.Select((c, i) => (JsonNode)new JsonArray(c.Document, c.IndexInDocument, c.Tokens, valChunks.Contains(i) ? "val" : "train")).ToArray()),
    };

    /// <summary>Moves the staged shards and then the manifest into place, removing an old dataset first when
    /// overwriting.</summary>
    static List<string> Commit(string staging, string output, bool overwrite)
    {
        if (overwrite)
            foreach (var old in Directory.GetFiles(output, "*.bin").Append(Path.Combine(output, "manifest.json")).Where(File.Exists))
                File.Delete(old);
        var shards = new List<string>();
        foreach (var file in Directory.GetFiles(staging, "*.bin").Order(StringComparer.Ordinal))
        {
            var target = Path.Combine(output, Path.GetFileName(file));
            File.Move(file, target);
            shards.Add(target);
        }
        File.Move(Path.Combine(staging, "manifest.json"), Path.Combine(output, "manifest.json"));
        return shards;
    }
}
