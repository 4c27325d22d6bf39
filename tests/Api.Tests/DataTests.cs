using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using FsCheck;
using FsCheck.Fluent;
using Parquet;
using Parquet.Schema;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

/// A prepared copy of the built-in corpus, shared by the tests that read it.
public sealed class GutenbergShards : IDisposable
{
    public GutenbergShards()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("blr-gutenberg-").FullName;
        Result = ShardPreparer.Run(new PrepareOptions { Builtin = "gutenberg", OutputDirectory = Directory });
    }

    public string Directory { get; }
    public PrepareResult Result { get; }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}

public class DataTests(GutenbergShards gutenberg) : IClassFixture<GutenbergShards>
{
    static string Temp() => Directory.CreateTempSubdirectory("blr-data-").FullName;

    [Fact]
    public void Builtin_corpus_round_trips_and_matches_whole_text_tokenization()
    {
        var tokenizer = Gpt2Tokenizer.Instance;
        var documents = Corpus.Builtin("gutenberg").Documents.ToList();
        Assert.Equal(18, documents.Count);
        // Reassemble corpus order from the chunk index: each chunk came from train or val, in order.
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(gutenberg.Directory, "manifest.json")))!;
        Assert.StartsWith("chunks.tsv", manifest["chunk_index"]!.GetValue<string>());
        Assert.Contains("uint16", manifest["format"]!.GetValue<string>());
        Assert.Equal(
            manifest["chunks"]!.GetValue<long>(),
            File.ReadLines(Path.Combine(gutenberg.Directory, "chunks.tsv")).Count()
        );
        var corpus = PreparedCorpus.InOrder(gutenberg.Directory);
        // Text -> shards -> decode gives the cleaned text, each document after <|endoftext|>.
        Assert.Equal(string.Concat(documents.Select(d => "<|endoftext|>" + d.Text)), tokenizer.Decode(corpus));
        // Parallel, paragraph-aligned pieces give exactly the tokens of tokenizing each whole book.
        var expected = documents.SelectMany(d => new[] { tokenizer.EndOfText }.Concat(tokenizer.Encode(d.Text)));
        Assert.True(expected.SequenceEqual(corpus), "pieces tokenize differently from whole documents");
        Assert.Equal(corpus.Count, gutenberg.Result.TrainTokens + gutenberg.Result.ValTokens);
        Assert.InRange(gutenberg.Result.ValTokens, 0.03 * corpus.Count, 0.03 * corpus.Count + 8192 + 1);
    }

    [Theory]
    [InlineData(50257, 20240520, 1, 2)]
    [InlineData(100277, 20240801, 7, 4)]
    public void Written_shards_have_the_exact_llmc_header_bytes(int vocab, int magic, int version, int width)
    {
        var dir = Temp();
        try
        {
            var path = Path.Combine(dir, "train_000000.bin");
            using (var writer = new TokenShardWriter(path, vocab))
                writer.Write([1, 2, 50256]);
            var bytes = File.ReadAllBytes(path);
            var expected = new byte[1024 + 3 * width];
            BinaryPrimitives.WriteInt32LittleEndian(expected, magic);
            BinaryPrimitives.WriteInt32LittleEndian(expected.AsSpan(4), version);
            BinaryPrimitives.WriteInt32LittleEndian(expected.AsSpan(8), 3);
            for (var i = 0; i < 3; i++)
            {
                var token = new[] { 1, 2, 50256 }[i];
                if (width == 2)
                    BinaryPrimitives.WriteUInt16LittleEndian(expected.AsSpan(1024 + 2 * i), (ushort)token);
                else
                    BinaryPrimitives.WriteUInt32LittleEndian(expected.AsSpan(1024 + 4 * i), (uint)token);
            }
            Assert.Equal(expected, bytes);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// A shard built byte by byte: header ints, then little-endian tokens.
    static byte[] HandMadeShard(int magic, int version, int count, int width, uint[] tokens)
    {
        var bytes = new byte[1024 + tokens.Length * width];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, magic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), version);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), count);
        for (var i = 0; i < tokens.Length; i++)
            if (width == 2)
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(1024 + 2 * i), (ushort)tokens[i]);
            else
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(1024 + 4 * i), tokens[i]);
        return bytes;
    }

    [Theory]
    [InlineData(20240520, 1, 2, new uint[] { 0, 7, 65535, 300 })]
    [InlineData(20240801, 7, 4, new uint[] { 0, 7, 65536, 100276 })]
    public void A_hand_built_shard_reads_back(int magic, int version, int width, uint[] tokens)
    {
        var dir = Temp();
        try
        {
            var path = Path.Combine(dir, "x_train_000001.bin");
            File.WriteAllBytes(path, HandMadeShard(magic, version, tokens.Length, width, tokens));
            using var shard = TokenShard.Open(path);
            Assert.Equal(tokens.Length, shard.Count);
            Assert.Equal(width, shard.BytesPerToken);
            Assert.Equal(tokens.Select(t => (int)t), PreparedCorpus.Tokens(shard));
            var window = new long[2];
            shard.CopyTo(2, window);
            Assert.Equal([tokens[2], tokens[3]], window.Select(t => (uint)t));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Raw_nanogpt_bin_files_are_read_as_bare_uint16()
    {
        var dir = Temp();
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "train.bin"), [5, 0, 1, 1, 255, 255]);
            using var data = TokenDataset.Open(dir, "train");
            Assert.Equal([5, 257, 65535], PreparedCorpus.Tokens(data.Shards[0]));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void The_sampler_never_repeats_a_window_within_an_epoch()
    {
        using var train = TokenDataset.Open(gutenberg.Directory, "train");
        var sampler = new BatchSampler(train, seqLen: 256, seed: 7);
        var seen = new HashSet<long>();
        while (sampler.Position.Epoch == 0 && sampler.Position.Index < sampler.WindowsPerEpoch)
            foreach (var w in sampler.NextWindows((int)Math.Min(16, sampler.WindowsPerEpoch - sampler.Position.Index)))
                Assert.True(seen.Add(w), $"window {w} repeated");
        Assert.Equal(sampler.WindowsPerEpoch, seen.Count);
        Assert.Equal(Sampling.windowsIn(256, train.Tokens), sampler.WindowsPerEpoch);
        var nextEpoch = sampler.NextWindows(16);
        Assert.Equal(1, sampler.Position.Epoch);
        Assert.NotEqual(Sampling.permutation(7, 0, sampler.WindowsPerEpoch).Take(16), nextEpoch);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(37)]
    [InlineData(380)] // into epoch 1: epoch 0 has 2,986 windows of 1024 tokens, 373.25 batches of 8
    public void Resuming_from_a_saved_position_gives_the_same_next_100_batches(int before)
    {
        using var train = TokenDataset.Open(gutenberg.Directory, "train");
        var original = new BatchSampler(train, seqLen: 1024, seed: 3);
        for (var i = 0; i < before; i++)
            original.Next(8);
        var saved = original.Position;
        var resumed = new BatchSampler(train, seqLen: 1024, seed: 3, start: saved);
        for (var i = 0; i < 100; i++)
        {
            using var scope = NewDisposeScope();
            var (x1, y1) = original.Next(8);
            var (x2, y2) = resumed.Next(8);
            Assert.True(
                x1.equal(x2).all().item<bool>() && y1.equal(y2).all().item<bool>(),
                $"batch {i} after position {saved}"
            );
            // Targets are the inputs shifted by one token.
            Assert.True(x1[.., 1..].equal(y1[.., ..^1]).all().item<bool>());
        }
    }

    [Fact]
    public void Validation_windows_are_the_first_non_overlapping_windows_every_time()
    {
        using var val = TokenDataset.Open(gutenberg.Directory, "val");
        var first = Windows.Validation(val, 128, 4, 10).Select(b => b.Inputs).ToList();
        var second = Windows.Validation(val, 128, 4, 10).Select(b => b.Inputs).ToList();
        Assert.Equal([4L, 4L, 2L], first.Select(x => x.shape[0]));
        Assert.All(first.Zip(second), p => Assert.True(p.First.equal(p.Second).all().item<bool>()));
        var expected = new long[128];
        val.Shards[0].CopyTo(128, expected); // window 1 starts at token 128
        Assert.Equal(expected, first[0][1].data<long>().ToArray());
    }

    // ---- bad input: one line naming the file (and line, offset or token), nothing half-written ----

    static DataInputException PrepareFails(string dir, PrepareOptions options)
    {
        var error = Assert.Throws<DataInputException>(() => ShardPreparer.Run(options));
        Assert.DoesNotContain('\n', error.Message);
        var output = options.OutputDirectory;
        if (Directory.Exists(output))
            Assert.Empty(Directory.GetFileSystemEntries(output));
        return error;
    }

    static PrepareOptions Options(string dir, params string[] inputs) =>
        new() { Inputs = inputs, OutputDirectory = Path.Combine(dir, "out") };

    [Fact]
    public void Bad_input_missing_file_or_folder()
    {
        var dir = Temp();
        try
        {
            Assert.Equal(
                $"{dir}/nope.txt: no such file or folder",
                PrepareFails(dir, Options(dir, $"{dir}/nope.txt")).Message
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Bad_input_folder_without_matching_files()
    {
        var dir = Temp();
        try
        {
            Directory.CreateDirectory($"{dir}/texts");
            File.WriteAllText($"{dir}/texts/a.md", "hello");
            Assert.Equal(
                $"{dir}/texts: no files match '*.txt' (searched recursively); set Glob",
                PrepareFails(dir, Options(dir, $"{dir}/texts")).Message
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Bad_input_empty_corpus()
    {
        var dir = Temp();
        try
        {
            File.WriteAllText($"{dir}/empty.txt", "");
            Assert.Equal(
                "the corpus is empty: 1 source(s) hold no text",
                PrepareFails(dir, Options(dir, $"{dir}/empty.txt")).Message
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// The streamed cutter against the whole-text one (TextPieces.Starts, the definition): the same pieces for any
    /// text, piece size and way of delivering the text in blocks.
    [Fact]
    public void Pieces_of_a_streamed_text_are_the_pieces_of_the_whole_text()
    {
        string[] fragments = ["word", " ", "  ", "\n", "\n\n", "\t", "Ünïcödé", "😀", ".", "12345", " \n\n ", "x"];
        var texts = Gen.ListOf(Gen.Elements(fragments)).Select(parts => string.Concat(parts.ToArray()));
        var cases =
            from text in texts
            from target in Gen.Choose(1, 40)
            from block in Gen.Choose(1, 70)
            select (text, target, block);
        Prop.ForAll(cases.ToArbitrary(), c =>
            {
                var (text, target, block) = c;
                var starts = TextPieces.Starts(text, target);
                var expected =
                    text.Length == 0
                        ? []
                        : starts
                            .Select((start, i) => text[start..(i + 1 < starts.Count ? starts[i + 1] : text.Length)])
                            .ToList();
                var blocks = Enumerable
                    .Range(0, (text.Length + block - 1) / block)
                    .Select(i => text.AsMemory(i * block, Math.Min(block, text.Length - i * block)));
                var streamed = TextPieces.Stream(blocks, target).ToList();
                return expected.SequenceEqual(streamed);
            })
            .Check(Config.QuickThrowOnFailure.WithMaxTest(500));
    }

    /// A text file is read in blocks of 1 MiB: an invalid byte past the first block is still named at its offset,
    /// and a file of many blocks gives the tokens of its whole text.
    [Fact]
    public void A_text_file_of_many_blocks_streams_to_its_whole_text_tokens_and_names_a_late_bad_byte()
    {
        var dir = Temp();
        try
        {
            var text = string.Concat(
                Enumerable
                    .Range(0, 60_000)
                    .Select(i => $"Line {i} of the long file, ünïcödé 😀.\n" + (i % 7 == 0 ? "\n" : ""))
            );
            var bytes = Encoding.UTF8.GetBytes(text);
            Assert.True(bytes.Length > 2 * (1 << 20));
            File.WriteAllBytes($"{dir}/long.txt", bytes);
            var result = ShardPreparer.Run(Options(dir, $"{dir}/long.txt") with { OutputDirectory = $"{dir}/out" });
            using var train = TokenDataset.Open($"{dir}/out", "train");
            using var val = TokenDataset.Open($"{dir}/out", "val");
            Assert.Equal(1 + Gpt2Tokenizer.Instance.Encode(text).Count, result.TrainTokens + result.ValTokens);

            var late = (1 << 20) + 12_345;
            var broken = bytes.ToArray();
            broken[late] = 0xFF;
            File.WriteAllBytes($"{dir}/broken.txt", broken);
            Assert.Equal(
                $"{dir}/broken.txt: invalid UTF-8 at byte offset {late}; fix the file or set ReplaceInvalidUtf8",
                PrepareFails(dir, Options(dir, $"{dir}/broken.txt") with { OutputDirectory = $"{dir}/out2" }).Message
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Bad_input_invalid_utf8_unless_replacement_is_asked_for()
    {
        var dir = Temp();
        try
        {
            var text = string.Concat(Enumerable.Repeat("Some words here.\n\n", 2000));
            File.WriteAllBytes(
                $"{dir}/bad.txt",
                [.. Encoding.UTF8.GetBytes("ok "), 0xFF, .. Encoding.UTF8.GetBytes(text)]
            );
            Assert.Equal(
                $"{dir}/bad.txt: invalid UTF-8 at byte offset 3; fix the file or set ReplaceInvalidUtf8",
                PrepareFails(dir, Options(dir, $"{dir}/bad.txt")).Message
            );
            var replaced = ShardPreparer.Run(
                Options(dir, $"{dir}/bad.txt") with
                {
                    Corpus = new CorpusOptions { ReplaceInvalidUtf8 = true },
                    ChunkTokens = 256,
                    ValTokens = 300,
                }
            );
            Assert.True(replaced.TrainTokens > 0);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// A UTF-8 byte-order mark (EF BB BF) that opens a text, .gz or .jsonl file is not text: the prepared tokens
    /// are those of the same file without it, and eval's text file reads without it.
    [Fact]
    public void A_byte_order_mark_opening_a_text_file_is_not_tokenized()
    {
        var dir = Temp();
        try
        {
            byte[] bom = [0xEF, 0xBB, 0xBF];
            var text = string.Concat(Enumerable.Range(0, 300).Select(i => $"Line {i} says something.\n\n"));
            var line = System.Text.Json.JsonSerializer.Serialize(new { text });
            var files = new Dictionary<string, byte[]>
            {
                ["a.txt"] = Encoding.UTF8.GetBytes(text),
                ["a.jsonl"] = Encoding.UTF8.GetBytes(line + "\n" + line + "\n"),
            };
            using (
                var gz = new System.IO.Compression.GZipStream(
                    File.Create($"{dir}/bom.txt.gz"),
                    System.IO.Compression.CompressionLevel.Fastest
                )
            )
                gz.Write([.. bom, .. files["a.txt"]]);
            var expected = new[] { Gpt2Tokenizer.Instance.EndOfText }
                .Concat(Gpt2Tokenizer.Instance.Encode(text))
                .ToList();
            List<int> Prepared(string input)
            {
                var output = $"{dir}/out-{Path.GetFileName(input)}";
                ShardPreparer.Run(
                    Options(dir, input) with
                    {
                        OutputDirectory = output,
                        ValFraction = 0.5,
                        ChunkTokens = 64,
                    }
                );
                return PreparedCorpus.InOrder(output);
            }
            foreach (var (name, bytes) in files)
            {
                File.WriteAllBytes($"{dir}/{name}", bytes);
                File.WriteAllBytes($"{dir}/bom-{name}", [.. bom, .. bytes]);
                var plain = Prepared($"{dir}/{name}");
                Assert.Equal(plain, Prepared($"{dir}/bom-{name}"));
                Assert.Equal(name == "a.txt" ? expected : [.. expected, .. expected], plain);
            }
            Assert.Equal(expected, Prepared($"{dir}/bom.txt.gz"));
            Assert.Equal(text, Corpus.Read($"{dir}/bom-a.txt", new CorpusOptions()).Single().Text);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// Chunks close at the first piece boundary at or past ChunkTokens: a small ChunkTokens gives chunks of about
    /// that size (pieces of at most 2 x ChunkTokens characters), not one piece's 4,000 tokens; the default keeps
    /// the pieces (and so the datasets) of earlier versions.
    [Theory]
    [InlineData(64)]
    [InlineData(1000)]
    public void Chunk_tokens_below_a_piece_are_honoured(int chunkTokens)
    {
        var dir = Temp();
        try
        {
            var result = ShardPreparer.Run(
                new PrepareOptions
                {
                    Builtin = "gutenberg",
                    OutputDirectory = dir + "/out",
                    ChunkTokens = chunkTokens,
                }
            );
            var chunks = File.ReadLines($"{dir}/out/chunks.tsv").Select(l => l.Split('\t')).ToList();
            // Every chunk but a document's last reaches ChunkTokens; together they average well under 2x it.
            var inner = chunks.Where((c, i) => i + 1 < chunks.Count && chunks[i + 1][0] == c[0]).ToList();
            Assert.All(inner, c => Assert.True(long.Parse(c[2]) >= chunkTokens, string.Join(" ", c)));
            Assert.InRange(inner.Average(c => long.Parse(c[2])), chunkTokens, 1.6 * chunkTokens);
            Assert.Equal(chunks.Count, result.Chunks);
            var manifest = JsonNode.Parse(File.ReadAllText($"{dir}/out/manifest.json"))!["options"]!;
            Assert.Equal(2 * chunkTokens, manifest["piece_chars"]!.GetValue<int>());
            Assert.Equal(
                16_384,
                JsonNode.Parse(File.ReadAllText(Path.Combine(gutenberg.Directory, "manifest.json")))!["options"]![
                    "piece_chars"
                ]!.GetValue<int>()
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Bad_input_jsonl_line_that_is_not_json_or_lacks_the_field()
    {
        var dir = Temp();
        try
        {
            File.WriteAllText($"{dir}/a.jsonl", "{\"text\": \"fine\"}\n{not json\n");
            Assert.StartsWith(
                $"{dir}/a.jsonl: line 2 (byte offset 17) is not JSON: ",
                PrepareFails(dir, Options(dir, $"{dir}/a.jsonl")).Message
            );
            File.WriteAllText($"{dir}/a.jsonl", "{\"text\": \"fine\"}\n{\"body\": \"x\"}\n");
            Assert.Equal(
                $"{dir}/a.jsonl: line 2 (byte offset 17) has no string field 'text'; set JsonField",
                PrepareFails(dir, Options(dir, $"{dir}/a.jsonl")).Message
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    static void WriteParquet(string path, string column, string[] values)
    {
        var field = new DataField<string>(column);
        using var stream = File.Create(path);
        var writer = ParquetWriter
            .CreateAsync(new ParquetSchema(field), stream, null, false, default)
            .GetAwaiter()
            .GetResult();
        using (var group = writer.CreateRowGroup())
            group.WriteAsync(field, values, null).GetAwaiter().GetResult();
        writer.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Fact]
    public void Parquet_rows_are_documents_and_a_missing_column_is_named()
    {
        var dir = Temp();
        try
        {
            var paragraphs = Enumerable
                .Range(0, 400)
                .Select(i => $"Row {i} says something.\n\nAnd then more.")
                .ToArray();
            WriteParquet($"{dir}/a.parquet", "body", paragraphs);
            Assert.Equal(
                $"{dir}/a.parquet: no column 'text' (columns: body); set ParquetColumn",
                PrepareFails(dir, Options(dir, $"{dir}/a.parquet")).Message
            );
            var result = ShardPreparer.Run(
                Options(dir, $"{dir}/a.parquet") with
                {
                    Corpus = new CorpusOptions { ParquetColumn = "body" },
                    ChunkTokens = 64,
                }
            );
            Assert.Equal(400, result.Documents);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Bad_input_shard_with_a_wrong_magic_or_version()
    {
        var dir = Temp();
        try
        {
            File.WriteAllBytes($"{dir}/train_000000.bin", HandMadeShard(123, 1, 1, 2, [1]));
            var magic = Assert.Throws<DataInputException>(() => TokenDataset.Open(dir, "train"));
            Assert.Equal(
                $"{dir}/train_000000.bin: magic 123 at byte 0 is not an llm.c shard (20240520 for uint16 or 20240801 for uint32 tokens); for a raw nanoGPT file name it train.bin / val.bin",
                magic.Message
            );
            File.WriteAllBytes($"{dir}/train_000000.bin", HandMadeShard(20240520, 3, 1, 2, [1]));
            var version = Assert.Throws<DataInputException>(() => TokenDataset.Open(dir, "train"));
            Assert.Equal(
                $"{dir}/train_000000.bin: header version 3 at byte 4 does not go with magic 20240520 (expected 1)",
                version.Message
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Bad_input_truncated_shard()
    {
        var dir = Temp();
        try
        {
            File.WriteAllBytes($"{dir}/val_000000.bin", HandMadeShard(20240520, 1, 100, 2, [1, 2, 3]));
            var error = Assert.Throws<DataInputException>(() => TokenDataset.Open(dir, "val"));
            Assert.Equal(
                $"{dir}/val_000000.bin: truncated: the header (byte 8) says 100 tokens but only 3 follow; prepare the data again",
                error.Message
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Bad_input_token_id_at_or_above_the_vocabulary()
    {
        var dir = Temp();
        try
        {
            File.WriteAllBytes($"{dir}/train_000000.bin", HandMadeShard(20240520, 1, 4, 2, [1, 49, 50, 2]));
            var error = Assert.Throws<DataInputException>(() => TokenDataset.Open(dir, "train", vocabSize: 50));
            Assert.Equal(
                $"{dir}/train_000000.bin: token 2 is 50, at or above the vocabulary size 50; was the shard made with another tokenizer?",
                error.Message
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Bad_input_seq_len_longer_than_the_data()
    {
        using var val = TokenDataset.Open(gutenberg.Directory, "val");
        var error = Assert.Throws<DataInputException>(() => new BatchSampler(val, seqLen: 200_000, seed: 1));
        Assert.Equal(
            $"{gutenberg.Directory} (val): sequence length 200000 is longer than the data: a window needs 200001 tokens and the largest shard has {val.Tokens}; use a shorter SeqLen or more data",
            error.Message
        );
    }

    [Fact]
    public void Bad_input_empty_val_split()
    {
        var dir = Temp();
        try
        {
            File.WriteAllText($"{dir}/a.txt", string.Concat(Enumerable.Repeat("Words and more words.\n\n", 500)));
            Assert.Equal(
                "the val split is empty: give ValFraction > 0 or ValTokens > 0",
                PrepareFails(dir, Options(dir, $"{dir}/a.txt") with { ValFraction = 0, ChunkTokens = 100 }).Message
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void The_cli_exits_non_zero_with_one_line_on_bad_input()
    {
        var blr = TestPaths.Blr();
        var info = new ProcessStartInfo(
            "dotnet",
            [
                blr,
                "prepare",
                "--input",
                "/nonexistent/corpus.txt",
                "--out",
                Path.Combine(Path.GetTempPath(), "blr-never"),
            ]
        )
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.Equal(2, process.ExitCode);
        Assert.Equal("blr: /nonexistent/corpus.txt: no such file or folder\n", stderr);
        Assert.False(Directory.Exists(Path.Combine(Path.GetTempPath(), "blr-never")));
    }

    [Fact]
    public void The_cli_says_the_options_a_data_message_suggests_as_its_flags()
    {
        var dir = Directory.CreateTempSubdirectory("blr-data-cli-").FullName;
        try
        {
            var out_ = Path.Combine(dir, "out");
            var (code, _, error) = TestPaths.Run(["prepare", "--input", dir, "--out", out_]);
            Assert.Equal(2, code);
            Assert.Equal($"blr: {dir}: no files match '*.txt' (searched recursively); set --glob", error.Trim());
            (code, _, error) = TestPaths.Run(["prepare", "--input", dir, "--builtin", "gutenberg", "--out", out_]);
            Assert.Equal(2, code);
            Assert.Equal("blr: --builtin gutenberg: give --input or a --builtin corpus, not both", error.Trim());
            (code, _, error) = TestPaths.Run(["prepare", "--builtin", "gutenberg", "--threads", "0", "--out", out_]);
            Assert.Equal(2, code);
            Assert.StartsWith("blr: --threads 0: must be >= 1 and <= ", error.Trim());
            Assert.False(Directory.Exists(out_));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
