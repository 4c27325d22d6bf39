using System.Collections.Concurrent;

namespace BlockwiseLR.Data;

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

    /// <summary>A built-in name (gpt2, cl100k, o200k, gutenberg-bpe4k), or a path: a SentencePiece <c>*.model</c>, a
    /// Hugging Face <c>tokenizer.json</c>, <c>vocab.json</c> (with <c>merges.txt</c> beside it) or GPT-2's
    /// <c>encoder.json</c> (with <c>vocab.bpe</c>), or a folder holding one of these.</summary>
    public static ITextTokenizer Create(string spec)
    {
        switch (spec.ToLowerInvariant())
        {
            case "gpt2":
                return Gpt2Tokenizer.Instance;
            case "cl100k" or "cl100k_base":
                return TiktokenTextTokenizer.Cl100k;
            case "o200k" or "o200k_base":
                return TiktokenTextTokenizer.O200k;
            case BuiltinSmall:
                return new SentencePieceTextTokenizer(BuiltinFile(BuiltinSmall + ".model"));
        }
        if (Directory.Exists(spec))
        {
            foreach (var name in new[] { "tokenizer.json", "tokenizer.model", "vocab.json", "encoder.json" })
                if (File.Exists(Path.Combine(spec, name)))
                    return Create(Path.Combine(spec, name));
            throw new InvalidOptionException(
                "Tokenizer",
                spec,
                "is a folder without tokenizer.json, tokenizer.model, vocab.json + merges.txt or encoder.json + "
                    + "vocab.bpe"
            );
        }
        if (!File.Exists(spec))
            throw new InvalidOptionException(
                "Tokenizer",
                spec,
                $"is neither a tokenizer here ({string.Join(", ", Names)}) nor a tokenizer file or folder"
            );
        var file = Path.GetFileName(spec).ToLowerInvariant();
        var folder = Path.GetDirectoryName(Path.GetFullPath(spec))!;
        if (file.EndsWith(".model", StringComparison.Ordinal))
            return Readable(spec, "a SentencePiece model", () => new SentencePieceTextTokenizer(spec));
        if (file is "vocab.json" or "encoder.json")
        {
            var merges = Path.Combine(folder, file == "vocab.json" ? "merges.txt" : "vocab.bpe");
            if (!File.Exists(merges))
                throw new InvalidOptionException(
                    "Tokenizer",
                    spec,
                    $"needs {Path.GetFileName(merges)} beside it (the BPE merges)"
                );
            return Readable(spec, "a BPE vocabulary", () => new VocabMergesTokenizer(spec, merges));
        }
        if (file.EndsWith(".json", StringComparison.Ordinal))
            return Readable(spec, "a Hugging Face tokenizer.json", () => new HfTextTokenizer(spec));
        throw new InvalidOptionException(
            "Tokenizer",
            spec,
            "is not a tokenizer file (*.model, tokenizer.json, vocab.json, encoder.json)"
        );
    }

    /// <summary>A tokenizer read from <paramref name="path"/>; a file that is empty or not what it should be is a
    /// <see cref="DataInputException"/> naming it (the machine refusing to read it stays an I/O error).</summary>
    static ITextTokenizer Readable(string path, string what, Func<ITextTokenizer> read)
    {
        try
        {
            return read();
        }
        catch (Exception e)
            when (e
                    is not (
                        DataInputException
                        or InvalidOptionException
                        or IOException
                        or UnauthorizedAccessException
                        or OutOfMemoryException
                    )
            )
        {
            var size = new FileInfo(path).Length;
            throw new DataInputException(
                $"{path}: {(size == 0 ? "empty" : "damaged")}, not {what}; give the tokenizer file its tokenizer wrote "
                    + "(or copy it again from where it was prepared)"
            );
        }
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
            if (
                File.Exists(path)
                && Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path)))
                    == hash
            )
                return path;
            Directory.CreateDirectory(folder);
            var temporary = $"{path}.{Guid.NewGuid():N}.tmp";
            File.WriteAllBytes(temporary, bytes);
            File.Move(temporary, path, overwrite: true);
            return path;
        });

    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> BuiltinFiles = new();

    /// <summary>The files a tokenizer is made from, each with the name it is stored under beside shards and
    /// checkpoints.</summary>
    internal static IReadOnlyList<(string From, string Name)> FilesOf(ITextTokenizer tokenizer) =>
        tokenizer switch
        {
            SentencePieceTextTokenizer sp => [(sp.Path, "tokenizer.model")],
            HfTextTokenizer hf => [(hf.Path, "tokenizer.json")],
            VocabMergesTokenizer bpe => [(bpe.VocabPath, "vocab.json"), (bpe.MergesPath, "merges.txt")],
            _ => [],
        };

    /// <summary>The tokenizer a record names, its files (if any) in <paramref name="folder"/>.</summary>
    public static ITextTokenizer Load(TokenizerRecord record, string folder)
    {
        if (record.Files is not { Count: > 0 } files)
            return Create(record.Name);
        Verify(record, folder, ModelFile);
        var paths = files.Select(f => Path.Combine(folder, f)).ToList();
        return record.Name switch
        {
            "vocab+merges" => new VocabMergesTokenizer(paths[0], paths[1]),
            _ => Create(paths[0]),
        };
    }

    /// <summary>Checks the tokenizer files a record lists in <paramref name="folder"/>: each there, and their bytes
    /// the SHA-256 the record (in <paramref name="recordedIn"/>) holds; one missing or changed is a
    /// <see cref="DataInputException"/> naming it. A changed file would tokenize differently from the shards, and a
    /// run would train a model whose samples decode with the wrong pieces.</summary>
    internal static void Verify(TokenizerRecord record, string folder, string recordedIn)
    {
        if (record.Files is not { Count: > 0 } files)
            return;
        var paths = files.Select(f => Path.Combine(folder, f)).ToList();
        if (paths.FirstOrDefault(p => !File.Exists(p)) is { } missing)
            throw new DataInputException(
                $"{missing}: missing; the {record.Name} tokenizer's files travel with the data and the model, copy "
                    + $"it back"
            );
        if (record.Sha256 is null)
            return; // recorded before SHA-256s were
        var actual = Convert.ToHexStringLower(
            System.Security.Cryptography.SHA256.HashData(paths.SelectMany(File.ReadAllBytes).ToArray())
        );
        if (actual != record.Sha256)
            throw new DataInputException(
                $"{string.Join(" + ", paths)}: changed since {Path.Combine(folder, recordedIn)} recorded it (SHA-256 "
                    + $"{actual[..12]}..., recorded {record.Sha256[..Math.Min(12, record.Sha256.Length)]}...); copy "
                    + $"back the {record.Name} tokenizer it was made with, or prepare the data again"
            );
    }

    /// <summary>The tokenizer a model folder was trained with: the record its <see cref="ModelFile"/> holds, else
    /// GPT-2's.</summary>
    internal static TokenizerRecord RecordOfModel(string folder)
    {
        var path = Path.Combine(folder, ModelFile);
        if (!File.Exists(path))
            return TokenizerRecord.Of(Gpt2Tokenizer.Instance);
        return ReadModelRecord(path);
    }

    /// <summary>Refuses a prepared dataset whose tokenizer is not the model's: a model evaluated on tokens of another
    /// vocabulary prints a loss that means nothing. A model that records its tokenizer (<see cref="ModelFile"/>:
    /// every checkpoint and export of a run on prepared data) must have the data's exactly (name, vocabulary, end of
    /// text, files' SHA-256). One that does not (a Hugging Face import) must at least have the data tokenizer's
    /// vocabulary, padded as models pad it (to at most the next multiple of 1,024: 50,277 to 50,432, 151,665 to
    /// 151,936). Data without a manifest (raw shards) are not checked here.</summary>
    internal static void RequireModelTokenizer(string modelFolder, string dataFolder)
    {
        if (OfDataset(dataFolder) is not { } data)
            return;
        if (!File.Exists(Path.Combine(modelFolder, ModelFile)))
        {
            var vocab = Models.HfFormat.ReadConfig(modelFolder).Vocab;
            if (vocab >= data.VocabSize && vocab <= (data.VocabSize + 1023) / 1024 * 1024)
                return;
            throw new InvalidOptionException(
                "Data",
                dataFolder,
                $"was prepared with the {Describe(data)} tokenizer, but the model {modelFolder} has a vocabulary of "
                    + $"{vocab:N0}; give data prepared with the model's tokenizer"
            );
        }
        var model = RecordOfModel(modelFolder);
        if (!model.Equals(data))
            throw new InvalidOptionException(
                "Data",
                dataFolder,
                $"was prepared with the {Describe(data)} tokenizer, but the model {modelFolder} uses "
                    + $"{Describe(model)}; give data prepared with the model's tokenizer"
            );
    }

    static string Describe(TokenizerRecord r)
    {
        var files = r.Sha256 is { } sha ? $", SHA-256 {sha[..Math.Min(12, sha.Length)]}..." : "";
        return $"{r.Name} ({r.VocabSize:N0} ids{files})";
    }

    /// <summary>The tokenizer a prepared dataset's manifest.json records (null: no manifest, e.g. raw nanoGPT files,
    /// or one without a readable tokenizer entry, which opening the dataset reports).</summary>
    public static TokenizerRecord? OfDataset(string folder)
    {
        var path = Path.Combine(folder, "manifest.json");
        if (!File.Exists(path))
            return null;
        try
        {
            var tokenizer = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))?["tokenizer"];
            if (tokenizer?["name"] is null || tokenizer["vocab_size"] is null || tokenizer["end_of_text"] is null)
                return null;
            return new TokenizerRecord(
                tokenizer["name"]!.GetValue<string>(),
                tokenizer["vocab_size"]!.GetValue<int>(),
                tokenizer["end_of_text"]!.GetValue<int>(),
                tokenizer["files"]?.AsArray().Select(f => f!.GetValue<string>()).ToList(),
                tokenizer["sha256"]?.GetValue<string>()
            );
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    /// <summary>A record as the manifest's tokenizer entry.</summary>
    internal static System.Text.Json.Nodes.JsonObject ToJson(TokenizerRecord record) =>
        new()
        {
            ["name"] = record.Name,
            ["vocab_size"] = record.VocabSize,
            ["end_of_text"] = record.EndOfText,
            ["files"] = record.Files is null
                ? null
                : new System.Text.Json.Nodes.JsonArray(
                    record.Files.Select(f => (System.Text.Json.Nodes.JsonNode)f).ToArray()
                ),
            ["sha256"] = record.Sha256,
        };

    /// <summary>The tokenizer of a model folder: the one its <see cref="ModelFile"/> names, else GPT-2's.</summary>
    public static ITextTokenizer ForModel(string folder)
    {
        var path = Path.Combine(folder, ModelFile);
        if (!File.Exists(path))
            return Gpt2Tokenizer.Instance;
        return Load(ReadModelRecord(path), folder);
    }

    /// <summary>A model folder's <see cref="ModelFile"/>; one that is not a tokenizer record is a
    /// <see cref="DataInputException"/> naming it.</summary>
    public static TokenizerRecord ReadModelRecord(string path)
    {
        TokenizerRecord? record;
        try
        {
            record = System.Text.Json.JsonSerializer.Deserialize<TokenizerRecord>(File.ReadAllText(path));
        }
        catch (System.Text.Json.JsonException)
        {
            record = null;
        }
        if (record is null || string.IsNullOrEmpty(record.Name) || record.VocabSize < 1)
            throw new DataInputException(
                $"{path}: not a tokenizer record (JSON naming the model's tokenizer); write the model again (blr "
                    + "export-hf, or train), or delete the file to use GPT-2's tokenizer"
            );
        return record;
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
