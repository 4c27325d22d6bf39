using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Data;

namespace BlockwiseLR;

/// <summary>What `blr prepare` does.</summary>
public sealed record PrepareOptions
{
    /// <summary>Files and folders to read (or use <see cref="Builtin"/>).</summary>
    public IReadOnlyList<string> Inputs { get; init; } = [];

    /// <summary>A built-in corpus ("gutenberg") instead of <see cref="Inputs"/>.</summary>
    public string? Builtin { get; init; }

    /// <summary>The folder the shards and manifest.json are written to (required).</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>How sources are read (glob, JSON field, Parquet column).</summary>
    public CorpusOptions Corpus { get; init; } = new();

    /// <summary>Share of tokens for validation (used when <see cref="ValTokens"/> is null).</summary>
    public double ValFraction { get; init; } = ShardPreparer.DefaultValFraction;

    /// <summary>Tokens for validation, instead of a fraction.</summary>
    public long? ValTokens { get; init; }

    /// <summary>Documents are cut at paragraph breaks into chunks of about this many tokens; the val split is a
    /// seeded choice of chunks, so a corpus of a few long books still gets a representative val set.</summary>
    public int ChunkTokens { get; init; } = 8192;

    /// <summary>Tokens per train shard at most; default 100,000,000.</summary>
    public long ShardTokens { get; init; } = 100_000_000;

    /// <summary>Seed of the choice of validation chunks; default 1337.</summary>
    public ulong Seed { get; init; } = 1337;

    /// <summary>Threads that tokenize in parallel; default the number of processors.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>The tokenizer (<see cref="TextTokenizers.Create"/>): gpt2, cl100k, o200k, or a tokenizer.model,
    /// tokenizer.json, vocab.json + merges.txt (or a folder of one); ignored when <see cref="ShardPreparer.Run"/> is
    /// given a tokenizer object.</summary>
    public string Tokenizer { get; init; } = "gpt2";

    /// <summary>Replace an existing prepared dataset in <see cref="OutputDirectory"/>.</summary>
    public bool Overwrite { get; init; }

    /// <summary>Discard what an interrupted prepare of the same inputs and options left (by default it is
    /// resumed).</summary>
    public bool Restart { get; init; }
}

/// <summary>Progress: sources finished of all, documents and tokens so far.</summary>
/// <param name="SourcesDone">Sources read completely.</param>
/// <param name="Sources">Sources in all.</param>
/// <param name="Documents">Documents read so far.</param>
/// <param name="Tokens">Tokens written so far.</param>
public sealed record PrepareProgress(int SourcesDone, int Sources, long Documents, long Tokens);

/// <summary>What a prepare wrote.</summary>
/// <param name="Directory">The output folder.</param>
/// <param name="Manifest">The path of its manifest.json.</param>
/// <param name="Shards">The shard files written, train and val.</param>
/// <param name="TrainTokens">Tokens in the train split.</param>
/// <param name="ValTokens">Tokens in the val split.</param>
/// <param name="Documents">Documents read from the sources.</param>
/// <param name="Chunks">Chunks the documents were cut into (all splits).</param>
/// <param name="ValChunks">Chunks chosen for the val split.</param>
/// <param name="Seconds">Wall-clock seconds the prepare took.</param>
public sealed record PrepareResult(
    string Directory,
    string Manifest,
    IReadOnlyList<string> Shards,
    long TrainTokens,
    long ValTokens,
    long Documents,
    int Chunks,
    int ValChunks,
    double Seconds
)
{
    /// <summary>Tokens written (train and val) per wall-clock second.</summary>
    public double TokensPerSecond => (TrainTokens + ValTokens) / Seconds;

    /// <summary>What was done with the staging folder of a prepare that died here, if there was one: reused (the same
    /// inputs and options) or replaced (another command's).</summary>
    public string? StaleStaging { get; init; }

    /// <summary>Set when the output folder already held a dataset prepared from the same inputs (their content),
    /// tokenizer and options: nothing was written and this result is read from its manifest (<see cref="Seconds"/> is
    /// the time taken to check the inputs). A note for the user says so.</summary>
    public string? Reused { get; init; }
}

/// <summary>
/// Corpus -> llm.c token shards, streamed: documents separated by &lt;|endoftext|&gt; (each document starts with it,
/// as in llm.c), read as they come (text in blocks, .jsonl by line, .parquet by row group), tokenized on all cores in
/// whitespace-aligned pieces (exactly the whole-text tokens), cut into chunks of about
/// <see cref="PrepareOptions.ChunkTokens"/>. Chunks are decided in blocks of 1,024 as the stream passes: a seeded
/// choice of each block's chunks goes to the val shards, the rest to the train shards, which rotate at
/// <see cref="PrepareOptions.ShardTokens"/>. Memory is bounded by one block of tokens, one batch of pieces and the
/// tokenizer's word cache, never by the corpus. Everything is written into a staging folder named from the inputs
/// and options; after each block the job records how far it got, so the same command after a kill resumes there,
/// and the shards, chunk index and manifest are moved into place at the end: a failure leaves no dataset behind.
/// </summary>
public static class ShardPreparer
{
    internal const double DefaultValFraction = 0.03;

    /// <summary>Characters per tokenizer piece, chunks per val-choice block (the built-in corpus, 386 chunks, is one
    /// block, so its val split is the whole-corpus choice of earlier versions), characters per parallel batch.
    /// BLR_PREPARE_LIMITS=pieces=N,block=M sets the first two smaller, for tests of rotation and resume.</summary>
    internal sealed record Limits(int PieceChars, int BlockChunks, int BatchChars)
    {
        public static Limits Default { get; } = new(16_384, 1024, 4 << 20);

        public static Limits FromEnvironment()
        {
            var limits = Default;
            foreach (
                var part in (Environment.GetEnvironmentVariable("BLR_PREPARE_LIMITS") ?? "").Split(
                    ',',
                    StringSplitOptions.RemoveEmptyEntries
                )
            )
            {
                var kv = part.Split('=');
                if (kv.Length == 2 && int.TryParse(kv[1], out var n) && n > 0)
                    limits = kv[0] switch
                    {
                        "pieces" => limits with { PieceChars = n },
                        "block" => limits with { BlockChunks = n },
                        _ => limits,
                    };
            }
            return limits;
        }

        /// <summary>A chunk closes at the first piece boundary at or past <see cref="PrepareOptions.ChunkTokens"/>,
        /// so pieces are at most 2 x ChunkTokens characters (about half a chunk of English tokens): the default 8,192
        /// keeps pieces of 16,384; smaller chunks get smaller pieces instead of one piece's 4,000 tokens.</summary>
        public Limits ForChunks(int chunkTokens) =>
            this with
            {
                PieceChars = (int)Math.Min(PieceChars, Math.Max(1, 2L * chunkTokens)),
            };
    }

    /// <summary>Reads, tokenizes and shards a corpus as <paramref name="options"/> say (what <c>blr prepare</c> does).
    /// An identical prepared dataset already in the output folder is reused; an interrupted prepare of the same inputs
    /// is resumed unless <see cref="PrepareOptions.Restart"/>.</summary>
    /// <param name="options">What to read, where to write and how.</param>
    /// <param name="progress">Reports sources, documents and tokens done; null for none.</param>
    /// <param name="tokenizer">A tokenizer object to use instead of <see cref="PrepareOptions.Tokenizer"/> (not
    /// disposed here); null to make it from the options.</param>
    /// <returns>The folder, shards and counts written.</returns>
    public static PrepareResult Run(
        PrepareOptions options,
        IProgress<PrepareProgress>? progress = null,
        ITextTokenizer? tokenizer = null
    )
    {
        ArgumentNullException.ThrowIfNull(options);
        // A tokenizer made here from the options is disposed here (file tokenizers hold native handles and temporary
        // files).
        var made = tokenizer is null;
        tokenizer ??= TextTokenizers.Create(options.Tokenizer);
        using var owned = made ? tokenizer as IDisposable : null;
        var record = TokenizerRecord.Of(tokenizer);
        var files = TextTokenizers.FilesOf(tokenizer);
        Validate(options);
        var limits = Limits.FromEnvironment().ForChunks(options.ChunkTokens);
        var clock = Stopwatch.StartNew();
        var (sources, documentsOf) = Sources(options);
        var output = Path.GetFullPath(options.OutputDirectory);
        // The same prepare a second time finds its dataset in place: it is the result (other inputs still refused).
        if (!options.Overwrite && Existing(output, options, record, limits, sources, clock) is { } existing)
            return existing;
        var created = CheckOutput(output, options.Overwrite);
        // The staging folder is named from the inputs (their content hashes), the tokenizer and the options that
        // shape the output, and a lock file the running prepare holds locked: the same command after a kill resumes
        // from it; another command replaces it; a live one is left alone.
        var staging = Path.Combine(output, $".prepare-{StagingKey(options, sources, record, limits)}");
        var (stale, held) = ClaimStaging(output, staging, options.Restart);
        var succeeded = false;
        try
        {
            using var job = new StreamJob(options, tokenizer, limits, staging);
            job.Run(sources, documentsOf, progress);
            BlockwiseLR.Training.FaultInjection.Hang("hang-during-prepare", 0);
            foreach (var (from, name) in files)
                File.Copy(from, Path.Combine(staging, name), overwrite: true);
            var manifest = Manifest(options, record, limits, sources, job);
            File.WriteAllText(
                Path.Combine(staging, "manifest.json"),
                manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true })
            );
            var shards = Commit(staging, output, options.Overwrite, files.Select(f => f.Name));
            succeeded = true;
            return new PrepareResult(
                output,
                Path.Combine(output, "manifest.json"),
                shards,
                job.Train.Tokens,
                job.Val.Tokens,
                job.Documents,
                checked((int)job.Chunks),
                checked((int)job.ValChunks),
                clock.Elapsed.TotalSeconds
            )
            {
                StaleStaging = stale ?? job.Resumed,
            };
        }
        finally
        {
            held.Dispose();
            if (Directory.Exists(staging))
                Directory.Delete(staging, recursive: true);
            // A failed run into a folder it made leaves no empty folder behind.
            if (
                !succeeded
                && created
                && Directory.Exists(output)
                && !Directory.EnumerateFileSystemEntries(output).Any()
            )
                Directory.Delete(output);
        }
    }

    static string StagingKey(
        PrepareOptions o,
        IReadOnlyList<SourceFile> sources,
        TokenizerRecord tokenizer,
        Limits limits
    )
    {
        var text =
            string.Join("\n", sources.Select(s => $"{s.Path}\t{s.Sha256}"))
            + "\n"
            + System.Text.Json.JsonSerializer.Serialize(
                new
                {
                    o.Builtin,
                    o.Corpus,
                    o.ValFraction,
                    o.ValTokens,
                    o.ChunkTokens,
                    o.ShardTokens,
                    o.Seed,
                    Tokenizer = tokenizer,
                    limits.PieceChars,
                    limits.BlockChunks,
                }
            );
        return Convert
            .ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)))[..16]
            .ToLowerInvariant();
    }

    /// <summary>Takes the staging folder for this process, after dealing with any other staging folder in the
    /// output: a live prepare's is refused, a dead one's is kept when it is ours to resume (and
    /// <paramref name="restart"/> is not set) or removed. A prepare holds its folder's lock file open with an
    /// exclusive lock (flock on Unix, a share mode on Windows) for as long as it runs: the system drops the lock when
    /// the process ends, however it ends, so a lock nobody holds is stale whatever process id it names (ids are
    /// reused).</summary>
    static (string? Stale, FileStream Lock) ClaimStaging(string output, string staging, bool restart)
    {
        string? stale = null;
        foreach (var other in Directory.GetDirectories(output, ".prepare-*"))
        {
            var lockFile = Path.Combine(other, "lock");
            using (var taken = TryLock(lockFile))
                if (taken is null)
                    throw new DataInputException(
                        $"{output}: another prepare{OwnerOf(other)} is working here ({Path.GetFileName(other)}); "
                            + $"wait for it or stop it"
                    );
            if (other == staging && !restart)
                continue; // resumed by the job
            stale =
                other == staging
                    ? $"discarded the staging folder of an interrupted prepare of the same inputs "
                        + $"({Path.GetFileName(other)}): Restart"
                    : $"removed the staging folder of an interrupted prepare of other inputs or options "
                        + $"({Path.GetFileName(other)})";
            Directory.Delete(other, recursive: true);
        }
        Directory.CreateDirectory(staging);
        var held = TryLock(Path.Combine(staging, "lock"))
            ?? throw new DataInputException(
                $"{output}: another prepare is working here ({Path.GetFileName(staging)}); wait for it or stop it"
            );
        // The process id is for people (and the message above); the lock is what counts.
        File.WriteAllText(
            Path.Combine(staging, "owner"),
            Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)
        );
        return (stale, held);
    }

    /// <summary>The lock file opened with an exclusive lock, or null while another open handle holds it (a live
    /// prepare, in this process or another). A folder without one (a prepare killed before it took it, or an older
    /// version's) gets one.</summary>
    static FileStream? TryLock(string path)
    {
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException) when (File.Exists(path))
        {
            return null;
        }
    }

    static string OwnerOf(string staging)
    {
        try
        {
            var text = File.ReadAllText(Path.Combine(staging, "owner")).Trim();
            return int.TryParse(text, out var pid) ? $" (process {pid})" : "";
        }
        catch (IOException)
        {
            return "";
        }
    }

    static void Validate(PrepareOptions o)
    {
        if (o.Builtin is not null && o.Inputs.Count > 0)
            throw new InvalidOptionException(nameof(o.Builtin), o.Builtin, "give Inputs or a Builtin corpus, not both");
        Ranges.Check(nameof(o.Threads), "threads", o.Threads);
        Ranges.Check(nameof(o.ChunkTokens), "chunk-tokens", o.ChunkTokens);
        Ranges.Check(nameof(o.ShardTokens), "shard-tokens", o.ShardTokens);
        if (o.ValTokens is { } valTokens)
            Ranges.Check(nameof(o.ValTokens), "val-tokens", valTokens);
        Ranges.Check(nameof(o.ValFraction), "val-fraction", o.ValFraction);
        // Two ways to size the val split: a fraction set beside ValTokens would be ignored.
        if (o.ValTokens is not null && o.ValFraction != DefaultValFraction)
            throw new InvalidOptionException(
                nameof(o.ValFraction),
                o.ValFraction.ToString(System.Globalization.CultureInfo.InvariantCulture),
                $"give ValFraction or ValTokens ({o.ValTokens}), not both: they are two ways to size the val split"
            );
    }

    static (IReadOnlyList<SourceFile>, Func<SourceFile, IEnumerable<StreamedDocument>>) Sources(PrepareOptions o)
    {
        if (o.Builtin is { } name)
        {
            var (documents, source) = Corpus.Builtin(name);
            return ([source], _ => documents.Select(d => new StreamedDocument(d.Location, [d.Text.AsMemory()])));
        }
        return (Corpus.Resolve(o.Inputs, o.Corpus), s => Corpus.Stream(s.Path, o.Corpus));
    }

    /// <summary>Whether the output folder was made now.</summary>
    static bool CheckOutput(string output, bool overwrite)
    {
        if (File.Exists(output))
            throw new DataInputException($"{output}: is a file; OutputDirectory takes a folder", "OutputDirectory");
        if (!Directory.Exists(output))
        {
            Directory.CreateDirectory(output);
            return true;
        }
        var existing = Directory
            .GetFiles(output, "*.bin")
            .Append(Path.Combine(output, "manifest.json"))
            .Where(File.Exists)
            .ToList();
        if (existing.Count > 0 && !overwrite)
            throw new DataInputException(
                $"{output}: already holds a prepared dataset ({Path.GetFileName(existing[0])}); choose another "
                    + $"OutputDirectory or set Overwrite",
                "OutputDirectory",
                "Overwrite"
            );
        return false;
    }

    internal const string ChunkIndex = "chunks.tsv";

    /// <summary>One streaming prepare in its staging folder: pieces tokenized in parallel batches, consumed in order
    /// into the current block of chunks; each full block decided (val or train), written to the shards and the
    /// chunk index, and recorded in state.json, from which a later job with the same staging folder resumes.</summary>
    sealed class StreamJob : IDisposable
    {
        readonly PrepareOptions options;
        readonly ITextTokenizer tokenizer;
        readonly Limits limits;
        readonly string staging;
        readonly FileStream index;
        readonly List<int> blockTokens = [];
        readonly List<(long Document, int Index, long Tokens)> blockChunks = [];
        int block;
        long skip; // pieces already in the shards of the job this one resumes
        (long Document, int Index, int Start, bool Closed) open = (-1, 0, 0, true);

        public StreamJob(PrepareOptions options, ITextTokenizer tokenizer, Limits limits, string staging)
        {
            (this.options, this.tokenizer, this.limits, this.staging) = (options, tokenizer, limits, staging);
            Train = new ShardStream(staging, "train", options.ShardTokens, tokenizer.VocabSize);
            Val = new ShardStream(staging, "val", options.ShardTokens, tokenizer.VocabSize);
            index = new FileStream(
                Path.Combine(staging, ChunkIndex),
                FileMode.OpenOrCreate,
                FileAccess.Write,
                FileShare.None,
                1 << 16
            );
            var statePath = Path.Combine(staging, "state.json");
            if (File.Exists(statePath))
                Load(JsonNode.Parse(File.ReadAllText(statePath))!);
            else
            {
                foreach (var stray in Directory.GetFiles(staging, "*.bin"))
                    File.Delete(stray);
                index.SetLength(0);
            }
        }

        public ShardStream Train { get; }
        public ShardStream Val { get; }
        public long Documents { get; private set; }
        public long Chunks { get; private set; }
        public long ValChunks { get; private set; }

        /// <summary>Set when this job went on from an interrupted one.</summary>
        public string? Resumed { get; private set; }

        void Load(JsonNode state)
        {
            block = state["block"]!.GetValue<int>();
            skip = state["pieces"]!.GetValue<long>();
            Chunks = state["chunks"]!.GetValue<long>();
            ValChunks = state["val_chunks"]!.GetValue<long>();
            var last = state["last_chunk"]!.AsArray();
            open = (last[0]!.GetValue<long>(), last[1]!.GetValue<int>(), 0, true);
            var keep = Train.Resume(state["train"]!).Concat(Val.Resume(state["val"]!)).ToHashSet();
            foreach (var stray in Directory.GetFiles(staging, "*.bin").Where(f => !keep.Contains(Path.GetFileName(f))))
                File.Delete(stray);
            index.SetLength(state["index_bytes"]!.GetValue<long>());
            index.Position = index.Length;
            Resumed =
                $"resumed an interrupted prepare of the same inputs after block {block} "
                + $"({Train.Tokens + Val.Tokens:N0} tokens)";
        }

        void Save(long pieces)
        {
            Train.Sync();
            Val.Sync();
            index.Flush(flushToDisk: true);
            var state = new JsonObject
            {
                ["block"] = block,
                ["pieces"] = pieces,
                ["chunks"] = Chunks,
                ["val_chunks"] = ValChunks,
                ["last_chunk"] = new JsonArray(open.Document, open.Index),
                ["train"] = Train.State(),
                ["val"] = Val.State(),
                ["index_bytes"] = index.Length,
            };
            var path = Path.Combine(staging, "state.json");
            File.WriteAllText(path + ".tmp", state.ToJsonString());
            File.Move(path + ".tmp", path, overwrite: true);
        }

        /// <summary>Whether a piece read so far holds more than whitespace.</summary>
        bool sawText;

        public void Run(
            IReadOnlyList<SourceFile> sources,
            Func<SourceFile, IEnumerable<StreamedDocument>> documentsOf,
            IProgress<PrepareProgress>? progress
        )
        {
            var encode = tokenizer.BulkEncoder();
            var pending = new List<(long Document, string Text, long Piece)>();
            var pendingChars = 0L;
            long piece = 0,
                document = 0;
            var source = 0;

            void Flush()
            {
                var encoded = new IReadOnlyList<int>[pending.Count];
                Parallel.For(0, pending.Count, new ParallelOptions { MaxDegreeOfParallelism = options.Threads }, i =>
                    encoded[i] = encode(pending[i].Text)
                );
                for (var i = 0; i < pending.Count; i++)
                    Consume(pending[i].Document, encoded[i], pending[i].Piece);
                pending.Clear();
                pendingChars = 0;
                progress?.Report(
                    new PrepareProgress(source, sources.Count, document, Train.Tokens + Val.Tokens + blockTokens.Count)
                );
            }

            for (var s = 0; s < sources.Count; s++)
            {
                source = s;
                foreach (var doc in documentsOf(sources[s]))
                {
                    var any = false;
                    foreach (var text in TextPieces.Stream(doc.Blocks, limits.PieceChars, tokenizer.Cuts))
                    {
                        any = true;
                        if (piece++ < skip)
                            continue; // in the shards already: read past, not tokenized
                        sawText |= !string.IsNullOrWhiteSpace(text);
                        pending.Add((document, text, piece - 1));
                        pendingChars += text.Length;
                        if (pendingChars >= limits.BatchChars)
                            Flush();
                    }
                    if (any)
                        document++;
                }
                Flush();
                progress?.Report(
                    new PrepareProgress(s + 1, sources.Count, document, Train.Tokens + Val.Tokens + blockTokens.Count)
                );
            }
            Documents = document;
            Close(piece);
            if (blockChunks.Count > 0)
                FinishBlock();
            if (Chunks == 0)
                throw new DataInputException($"the corpus is empty: {sources.Count} source(s) hold no text");
            Train.Close();
            Val.Close();
        }

        void Consume(long document, IReadOnlyList<int> encoded, long piece)
        {
            if (document != open.Document)
            {
                Close(piece);
                open = (document, 0, blockTokens.Count, false);
                blockTokens.Add(tokenizer.EndOfText);
            }
            else if (open.Closed || blockTokens.Count - open.Start >= options.ChunkTokens)
            {
                Close(piece);
                open = (document, open.Index + 1, blockTokens.Count, false);
            }
            blockTokens.AddRange(encoded);
        }

        /// <summary>Closes the open chunk; a block that is full then is decided and written, and the job's place
        /// (the piece that opens the next chunk) saved.</summary>
        void Close(long piece)
        {
            if (open.Closed)
                return;
            blockChunks.Add((open.Document, open.Index, blockTokens.Count - open.Start));
            open.Closed = true;
            if (blockChunks.Count == limits.BlockChunks)
            {
                FinishBlock();
                Save(piece);
                BlockwiseLR.Training.FaultInjection.Hang("hang-after-block", block);
            }
        }

        void FinishBlock()
        {
            if (block == 0 && !sawText && skip == 0)
                throw new DataInputException(
                    "the corpus has no text: its documents hold only whitespace; give files with text"
                );
            var sizes = blockChunks.Select(c => c.Tokens).ToArray();
            var target = options.ValTokens is { } wanted
                ? (block == 0 ? wanted : 0)
                : (long)Math.Round(options.ValFraction * sizes.Sum());
            // A later block may give val nothing.
            var val =
                block > 0 && (target <= 0 || sizes.Length < 2)
                    ? new HashSet<int>()
                    : SamplingRules
                        .ChooseValChunksInBlock(options.Seed, block, sizes, target)
                        .OrThrow(reason => new DataInputException(reason, "ValFraction", "ValTokens", "ChunkTokens"));
            var tokens = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(blockTokens);
            var lines = new System.Text.StringBuilder();
            var at = 0;
            for (var c = 0; c < blockChunks.Count; c++)
            {
                var (document, indexInDocument, count) = blockChunks[c];
                var toVal = val.Contains(c);
                (toVal ? Val : Train).Write(tokens.Slice(at, (int)count));
                at += (int)count;
                lines.Append(
                    System.Globalization.CultureInfo.InvariantCulture,
                    $"{document}\t{indexInDocument}\t{count}\t{(toVal ? "val" : "train")}\n"
                );
            }
            index.Write(System.Text.Encoding.ASCII.GetBytes(lines.ToString()));
            Chunks += blockChunks.Count;
            ValChunks += val.Count;
            blockChunks.Clear();
            blockTokens.Clear();
            open.Start = 0;
            block++;
        }

        public void Dispose()
        {
            index.Dispose();
            Train.Dispose();
            Val.Dispose();
        }
    }

    internal sealed record ShardFile(string Name, long Tokens);

    /// <summary>A split written as consecutive shards of at most shardTokens tokens; its state (the shards done and
    /// the one being written) can be saved and resumed.</summary>
    internal sealed class ShardStream(string folder, string split, long shardTokens, int vocabSize) : IDisposable
    {
        readonly List<ShardFile> done = [];
        TokenShardWriter? current;

        public IReadOnlyList<ShardFile> Done => done;
        public long Tokens => done.Sum(s => s.Tokens) + (current?.Count ?? 0);

        public void Write(ReadOnlySpan<int> tokens)
        {
            while (tokens.Length > 0)
            {
                current ??= new TokenShardWriter(Path.Combine(folder, $"{split}_{done.Count:D6}.bin"), vocabSize);
                var room = (int)Math.Min(tokens.Length, shardTokens - current.Count);
                current.Write(tokens[..room]);
                tokens = tokens[room..];
                if (current.Count == shardTokens)
                    Finish();
            }
        }

        void Finish()
        {
            if (current is null)
                return;
            current.Dispose();
            done.Add(new ShardFile(Path.GetFileName(current.Path), current.Count));
            current = null;
        }

        public void Sync() => current?.Sync();

        public JsonObject State() =>
            new()
            {
                ["done"] = new JsonArray(done.Select(s => (JsonNode)new JsonArray(s.Name, s.Tokens)).ToArray()),
                ["current"] = current is null ? null : new JsonArray(Path.GetFileName(current.Path), current.Count),
            };

        /// <summary>Takes up a saved state; returns the files it keeps.</summary>
        public IEnumerable<string> Resume(JsonNode state)
        {
            foreach (var s in state["done"]!.AsArray())
                done.Add(new ShardFile(s![0]!.GetValue<string>(), s[1]!.GetValue<long>()));
            if (state["current"] is JsonArray c)
                current = TokenShardWriter.Resume(
                    Path.Combine(folder, c[0]!.GetValue<string>()),
                    vocabSize,
                    c[1]!.GetValue<long>()
                );
            return done.Select(s => s.Name).Concat(current is null ? [] : [Path.GetFileName(current.Path)]).ToList();
        }

        public void Close() => Finish();

        public void Dispose() => current?.Dispose();
    }

    static JsonObject Manifest(
        PrepareOptions o,
        TokenizerRecord tokenizer,
        Limits limits,
        IReadOnlyList<SourceFile> sources,
        StreamJob job
    ) =>
        new()
        {
            ["format"] =
                tokenizer.VocabSize <= 65536
                    ? "llm.c token shards (header: 256 int32, magic 20240520 version 1 = uint16 tokens)"
                    : "llm.c token shards (header: 256 int32, magic 20240801 version 7 = uint32 tokens)",
            ["tokenizer"] = TextTokenizers.ToJson(tokenizer),
            ["documents"] = job.Documents,
            ["train_tokens"] = job.Train.Tokens,
            ["val_tokens"] = job.Val.Tokens,
            ["shards"] = new JsonObject
            {
                ["train"] = new JsonArray(
                    job.Train.Done.Select(s => (JsonNode)new JsonObject { ["file"] = s.Name, ["tokens"] = s.Tokens })
                        .ToArray()
                ),
                ["val"] = new JsonArray(
                    job.Val.Done.Select(s => (JsonNode)new JsonObject { ["file"] = s.Name, ["tokens"] = s.Tokens })
                        .ToArray()
                ),
            },
            ["sources"] = new JsonArray(
                sources
                    .Select(s =>
                        (JsonNode)
                            new JsonObject
                            {
                                ["path"] = s.Path,
                                ["bytes"] = s.Bytes,
                                ["sha256"] = s.Sha256,
                            }
                    )
                    .ToArray()
            ),
            ["options"] = ShapingOptions(o, limits),
            ["chunks"] = job.Chunks,
            ["val_chunks"] = job.ValChunks,
            // In corpus order, one line per chunk: which split it went to, so the corpus can be reassembled from the
            // shards.
            ["chunk_index"] =
                $"{ChunkIndex}: document, index in document, tokens, split (tab-separated, one line per chunk, in "
                + $"corpus order)",
        };

    /// <summary>The options that shape a dataset, as its manifest records them.</summary>
    static JsonObject ShapingOptions(PrepareOptions o, Limits limits) =>
        new()
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
            ["piece_chars"] = limits.PieceChars,
            ["block_chunks"] = limits.BlockChunks,
        };

    /// <summary>The result of the dataset already in <paramref name="output"/> when its manifest records the same
    /// sources (path and SHA-256), tokenizer and shaping options as this prepare and every shard it lists is there;
    /// null otherwise (then <see cref="CheckOutput"/> refuses a folder holding another dataset).</summary>
    static PrepareResult? Existing(
        string output,
        PrepareOptions o,
        TokenizerRecord tokenizer,
        Limits limits,
        IReadOnlyList<SourceFile> sources,
        Stopwatch clock
    )
    {
        var path = Path.Combine(output, "manifest.json");
        if (!File.Exists(path))
            return null;
        try
        {
            var manifest = JsonNode.Parse(File.ReadAllText(path))!;
            var recordedSources = manifest["sources"]!
                .AsArray()
                .Select(s => (s!["path"]!.GetValue<string>(), s["sha256"]!.GetValue<string>()));
            if (
                !recordedSources.SequenceEqual(sources.Select(s => (s.Path, s.Sha256)))
                || !JsonNode.DeepEquals(manifest["tokenizer"], TextTokenizers.ToJson(tokenizer))
                || !JsonNode.DeepEquals(manifest["options"], ShapingOptions(o, limits))
            )
                return null;
            var shards = new[] { manifest["shards"]!["train"], manifest["shards"]!["val"] }
                .SelectMany(split => split!.AsArray())
                .Select(shard => Path.Combine(output, shard!["file"]!.GetValue<string>()))
                .Order(StringComparer.Ordinal)
                .ToList();
            if (!shards.All(File.Exists) || !File.Exists(Path.Combine(output, ChunkIndex)))
                return null;
            return new PrepareResult(
                output,
                path,
                shards,
                manifest["train_tokens"]!.GetValue<long>(),
                manifest["val_tokens"]!.GetValue<long>(),
                manifest["documents"]!.GetValue<long>(),
                manifest["chunks"]!.GetValue<int>(),
                manifest["val_chunks"]!.GetValue<int>(),
                clock.Elapsed.TotalSeconds
            )
            {
                Reused =
                    $"{output} already holds this dataset (the same inputs, tokenizer and options): reused it; set "
                    + "Overwrite to prepare it again",
            };
        }
        catch (Exception e)
            when (e
                    is JsonException
                        or InvalidOperationException
                        or NullReferenceException
                        or FormatException
                        or IOException
            )
        {
            return null; // not a manifest this version reads: CheckOutput refuses the folder
        }
    }

    /// <summary>Moves the staged shards and chunk index, and then the manifest, into place, removing an old dataset
    /// first when overwriting.</summary>
    /// <summary>What an earlier prepare wrote into <paramref name="output"/>, which an overwrite removes: its manifest
    /// and chunk index, its shards (blr's names and the ones its manifest lists) and the tokenizer files its manifest
    /// records. Nothing else: a file blr did not write stays.</summary>
    static IEnumerable<string> EarlierOutput(string output)
    {
        var names = new HashSet<string>(StringComparer.Ordinal) { "manifest.json", ChunkIndex };
        names.UnionWith(
            Directory
                .GetFiles(output, "*.bin")
                .Select(Path.GetFileName)
                .Where(n => System.Text.RegularExpressions.Regex.IsMatch(n!, @"^(train|val)_[0-9]{6}\.bin$"))!
        );
        try
        {
            var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "manifest.json")));
            var listed = new[] { manifest?["shards"]?["train"], manifest?["shards"]?["val"] }
                .SelectMany(split => split?.AsArray() ?? [])
                .Select(shard => shard?["file"]?.GetValue<string>())
                .Concat(manifest?["tokenizer"]?["files"]?.AsArray().Select(f => f?.GetValue<string>()) ?? []);
            // Names only: a manifest that names a path elsewhere removes nothing there.
            names.UnionWith(listed.OfType<string>().Where(n => n.Length > 0 && Path.GetFileName(n) == n));
        }
        catch (Exception e)
            when (e
                    is IOException
                        or UnauthorizedAccessException
                        or JsonException
                        or InvalidOperationException
                        or FormatException
            ) { }
        return names.Select(n => Path.Combine(output, n));
    }

    static List<string> Commit(string staging, string output, bool overwrite, IEnumerable<string> tokenizerFiles)
    {
        if (overwrite)
            foreach (var old in EarlierOutput(output).Where(File.Exists))
                File.Delete(old);
        var shards = new List<string>();
        foreach (var file in Directory.GetFiles(staging, "*.bin").Order(StringComparer.Ordinal))
        {
            var target = Path.Combine(output, Path.GetFileName(file));
            File.Move(file, target);
            shards.Add(target);
        }
        File.Move(Path.Combine(staging, ChunkIndex), Path.Combine(output, ChunkIndex), overwrite);
        foreach (var file in tokenizerFiles)
            File.Move(Path.Combine(staging, file), Path.Combine(output, file), overwrite: true);
        File.Move(Path.Combine(staging, "manifest.json"), Path.Combine(output, "manifest.json"));
        return shards;
    }
}
