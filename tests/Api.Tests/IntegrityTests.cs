using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using BlockwiseLR.Data;

namespace BlockwiseLR.Tests;

/// Issue 24: every file a command reads is checked before it is trusted; what a torn file leaves behind resumes.
public class IntegrityTests(GutenbergShards gutenberg) : IClassFixture<GutenbergShards>
{
    static string Temp() => Directory.CreateTempSubdirectory("blr-integrity-").FullName;

    static byte[] Gzip(string text)
    {
        var packed = new MemoryStream();
        using (var zip = new GZipStream(packed, CompressionLevel.Optimal))
            zip.Write(Encoding.UTF8.GetBytes(text));
        return packed.ToArray();
    }

    static string Book(int chars) => Corpus.Builtin("gutenberg").Documents.First().Text[..chars];

    [Fact]
    public void Crc32_is_gzips()
    {
        // The standard check value of CRC-32/ISO-HDLC, and what GZipStream writes into a trailer.
        Assert.Equal(0xCBF43926u, Crc32.Of("123456789"u8));
        var text = Book(100_000);
        var packed = Gzip(text);
        Assert.Equal(BitConverter.ToUInt32(packed, packed.Length - 8), Crc32.Of(Encoding.UTF8.GetBytes(text)));
    }

    [Fact]
    public void A_gz_reads_whole_or_is_refused_when_cut_short_and_several_members_read_as_one_file()
    {
        var dir = Temp();
        try
        {
            var text = Book(200_000);
            var packed = Gzip(text);
            var whole = Path.Combine(dir, "whole.txt.gz");
            File.WriteAllBytes(whole, packed);
            Assert.Equal(text, Assert.Single(Corpus.Read(whole, new CorpusOptions())).Text);

            // Cut anywhere (half, inside the trailer, one byte short), a .gz is refused naming the file.
            foreach (var keep in new[] { packed.Length / 2, packed.Length - 4, packed.Length - 1, 30 })
            {
                var cut = Path.Combine(dir, $"cut{keep}.txt.gz");
                File.WriteAllBytes(cut, packed[..keep]);
                var e = Assert.Throws<DataInputException>(() => Corpus.Read(cut, new CorpusOptions()).ToList());
                Assert.StartsWith($"{cut}: not", e.Message);
            }
            // The same through the .jsonl reader, which reads line by line.
            var lines = string.Join("\n", Enumerable.Range(0, 50).Select(i => $"{{\"text\":\"document {i}\"}}"));
            var jsonl = Gzip(lines);
            var cutJsonl = Path.Combine(dir, "cut.jsonl.gz");
            File.WriteAllBytes(cutJsonl, jsonl[..(jsonl.Length / 2)]);
            Assert.Throws<DataInputException>(() => Corpus.Read(cutJsonl, new CorpusOptions()).ToList());

            // cat a.gz b.gz: two members, read through as one file (GZipStream does), checked against the last
            // member's trailer.
            var tail = Book(300_000)[200_000..];
            var two = Path.Combine(dir, "two.txt.gz");
            File.WriteAllBytes(two, [.. packed, .. Gzip(tail)]);
            Assert.Equal(text + tail, Assert.Single(Corpus.Read(two, new CorpusOptions())).Text);
            var twoCut = Path.Combine(dir, "two-cut.txt.gz");
            File.WriteAllBytes(twoCut, [.. packed, .. Gzip(tail)[..^3]]);
            Assert.Throws<DataInputException>(() => Corpus.Read(twoCut, new CorpusOptions()).ToList());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_whole_gz_prepares_the_tokens_of_its_text_and_a_cut_one_leaves_no_folder()
    {
        var dir = Temp();
        try
        {
            var text = Book(100_000);
            var plain = Path.Combine(dir, "book.txt");
            File.WriteAllText(plain, text);
            var gz = Path.Combine(dir, "book.txt.gz");
            File.WriteAllBytes(gz, Gzip(text));
            var fromText = ShardPreparer.Run(
                new PrepareOptions { Inputs = [plain], OutputDirectory = Path.Combine(dir, "a") }
            );
            var fromGz = ShardPreparer.Run(
                new PrepareOptions { Inputs = [gz], OutputDirectory = Path.Combine(dir, "b") }
            );
            Assert.Equal(
                PreparedCorpus.InOrder(Path.Combine(dir, "a")),
                PreparedCorpus.InOrder(Path.Combine(dir, "b"))
            );
            Assert.Equal(fromText.TrainTokens, fromGz.TrainTokens);

            var half = Path.Combine(dir, "half.txt.gz");
            File.WriteAllBytes(half, Gzip(text)[..(Gzip(text).Length / 2)]);
            var (code, _, error) = TestPaths.Run(["prepare", "--input", half, "--out", Path.Combine(dir, "c")]);
            Assert.Equal(2, code);
            Assert.StartsWith($"blr: {half}: not a whole gzip file", error.Trim());
            Assert.False(Directory.Exists(Path.Combine(dir, "c")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void The_same_input_by_two_spellings_is_refused_and_distinct_inputs_are_not()
    {
        var dir = Temp();
        try
        {
            var a = Path.Combine(dir, "a.txt");
            File.WriteAllText(a, "alpha");
            var b = Path.Combine(dir, "b.txt");
            File.WriteAllText(b, "beta");
            Assert.Equal(2, Corpus.Resolve([a, b], new CorpusOptions()).Count);
            var e = Assert.Throws<DataInputException>(() =>
                Corpus.Resolve([a, Path.Combine(dir, ".", "a.txt")], new CorpusOptions())
            );
            Assert.Contains("named twice", e.Message);
            // A folder and a file inside it name that file twice too.
            Assert.Throws<DataInputException>(() => Corpus.Resolve([dir, b], new CorpusOptions()));
            // A relative spelling of the same file.
            var relative = Path.GetRelativePath(Environment.CurrentDirectory, a);
            Assert.Throws<DataInputException>(() => Corpus.Resolve([a, relative], new CorpusOptions()));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    string[] Train(string run, params string[] extra) =>
        [
            "train",
            "--data",
            gutenberg.Directory,
            "--set",
            "layers=1",
            "--set",
            "width=16",
            "--set",
            "heads=2",
            "--steps",
            "4",
            "--batch-size",
            "2",
            "--seq-len",
            "8",
            "--eval-windows",
            "1",
            "--eval-every",
            "2",
            "--checkpoint-every",
            "2",
            "--keep-checkpoints",
            "3",
            "--threads",
            "1",
            "--out",
            run,
            .. extra,
        ];

    /// A metrics line without what varies from run to run (time, speed).
    static string Trajectory(JsonNode line) =>
        new JsonObject
        {
            ["step"] = line["step"]!.DeepClone(),
            ["loss"] = line["loss"]!.DeepClone(),
            ["lr"] = line["lr"]!.DeepClone(),
            ["grad_norm"] = line["grad_norm"]!.DeepClone(),
        }.ToJsonString();

    static List<string> Trajectories(string run) =>
        File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => Trajectory(JsonNode.Parse(l)!)).ToList();

    static void CopyFolder(string from, string to)
    {
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(dir.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, file.Replace(from, to));
    }

    [Fact]
    public void A_torn_last_metrics_line_is_dropped_on_resume_and_by_plot_and_the_run_ends_as_an_uninterrupted_one()
    {
        var dir = Temp();
        try
        {
            var reference = Path.Combine(dir, "reference");
            var (code, _, error) = TestPaths.Run(Train(reference));
            Assert.True(code == 0, error);

            // Power lost after the checkpoint at step 2, while step 3's lines were being written: the files end
            // mid-line, and the step-4 checkpoint never was.
            var torn = Path.Combine(dir, "torn");
            CopyFolder(reference, torn);
            Directory.Delete(Path.Combine(torn, "checkpoints", "step_0000004"), true);
            File.Delete(Path.Combine(torn, "result.json"));
            File.WriteAllText(Path.Combine(torn, "checkpoints", "latest"), "step_0000002");
            var metrics = File.ReadAllLines(Path.Combine(reference, "metrics.jsonl"));
            Assert.Equal(4, metrics.Length);
            File.WriteAllText(
                Path.Combine(torn, "metrics.jsonl"),
                string.Join("\n", metrics[..3]) + "\n" + metrics[3][..(metrics[3].Length / 2)]
            );
            var evals = File.ReadAllLines(Path.Combine(reference, "evals.csv"));
            Assert.Equal(["step", "2", "4"], evals.Select(l => l.Split(',')[0]));
            File.WriteAllText(Path.Combine(torn, "evals.csv"), string.Join("\n", evals[..2]) + "\n" + evals[2][..6]);

            // plot reads what is whole.
            Assert.Equal(3, Training.MetricsWriter.ReadMetrics(Path.Combine(torn, "metrics.jsonl")).Count);
            Assert.Equal(
                [(2, double.Parse(evals[1].Split(',')[1], System.Globalization.CultureInfo.InvariantCulture))],
                Training.MetricsWriter.ReadEvals(Path.Combine(torn, "evals.csv"))
            );
            foreach (var kind in new[] { "--train", "--run" })
            {
                var png = Path.Combine(dir, $"plot{kind}.png");
                string[] plot = kind == "--train" ? ["plot", "--train", "--run", torn] : ["plot", "--run", torn];
                (code, _, error) = TestPaths.Run([.. plot, "--out", png]);
                Assert.True(code == 0, error);
                Assert.True(new FileInfo(png).Length > 0);
            }

            (code, _, error) = TestPaths.Run(Train(torn, "--resume", "latest"));
            Assert.True(code == 0, error);
            Assert.Equal(Trajectories(reference), Trajectories(torn));
            Assert.Equal(evals, File.ReadAllLines(Path.Combine(torn, "evals.csv")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_run_that_stopped_before_its_first_checkpoint_is_replaced_by_the_same_command_and_one_with_a_checkpoint_is_not()
    {
        var dir = Temp();
        try
        {
            var reference = Path.Combine(dir, "reference");
            var (code, _, error) = TestPaths.Run(Train(reference));
            Assert.True(code == 0, error);

            // Killed before its first checkpoint: options.json and the first lines of metrics, nothing to resume.
            var stopped = Path.Combine(dir, "stopped");
            Directory.CreateDirectory(stopped);
            File.Copy(Path.Combine(reference, "options.json"), Path.Combine(stopped, "options.json"));
            File.WriteAllLines(
                Path.Combine(stopped, "metrics.jsonl"),
                File.ReadAllLines(Path.Combine(reference, "metrics.jsonl"))[..1]
            );
            (code, _, error) = TestPaths.Run(Train(stopped, "--resume", "latest"));
            Assert.Equal(2, code);
            Assert.Contains(
                "its run stopped before its first checkpoint; run the same command without --resume",
                error
            );

            (code, var output, error) = TestPaths.Run(Train(stopped));
            Assert.True(code == 0, error);
            Assert.Contains($"replaced the run in {stopped}: it stopped before its first checkpoint", output + error);
            Assert.Equal(Trajectories(reference), Trajectories(stopped));

            // A run with a checkpoint is still the user's to resume or overwrite.
            (code, _, error) = TestPaths.Run(Train(reference));
            Assert.Equal(2, code);
            Assert.Contains("already holds a run", error);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Eval_takes_data_of_the_models_tokenizer_and_refuses_another_with_or_without_the_models_record()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run(Train(run));
            Assert.True(code == 0, error);
            var book = Book(60_000);
            var documents = Path.Combine(dir, "docs.jsonl");
            File.WriteAllLines(
                documents,
                Enumerable
                    .Range(0, 20)
                    .Select(i =>
                        System.Text.Json.JsonSerializer.Serialize(new { text = book.Substring(i * 3000, 3000) })
                    )
            );
            var small = Path.Combine(dir, "data4k");
            ShardPreparer.Run(
                new PrepareOptions
                {
                    Inputs = [documents],
                    Tokenizer = "gutenberg-bpe4k",
                    ValFraction = 0.1,
                    OutputDirectory = small,
                }
            );
            // A model without its tokenizer record (as a Hugging Face import is): checked by vocabulary.
            var bare = Path.Combine(dir, "bare");
            Directory.CreateDirectory(bare);
            foreach (var file in new[] { "config.json", "model.safetensors" })
                File.Copy(Path.Combine(run, "checkpoints", "step_0000004", file), Path.Combine(bare, file));
            foreach (var model in new[] { run, bare })
            {
                (code, var output, error) = TestPaths.Run([
                    "eval",
                    "--model-dir",
                    model,
                    "--data",
                    gutenberg.Directory,
                ]);
                Assert.True(code == 0, error);
                Assert.Contains("loss", output);
                (code, _, error) = TestPaths.Run(["eval", "--model-dir", model, "--data", small]);
                Assert.Equal(2, code);
                Assert.StartsWith($"blr: --data {small}: was prepared with the sentencepiece (4,000 ids", error.Trim());
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_prepare_lock_counts_only_while_its_owner_holds_it()
    {
        var dir = Temp();
        try
        {
            var text = Path.Combine(dir, "book.txt");
            File.WriteAllText(text, Book(50_000));
            string[] Prepare(string output) => ["prepare", "--input", text, "--out", output];

            // An older prepare's lock naming a live process that is not a prepare (this test): stale.
            var named = Path.Combine(dir, "named");
            var staging = Path.Combine(named, ".prepare-0123456789abcdef");
            Directory.CreateDirectory(staging);
            File.WriteAllText(Path.Combine(staging, "lock"), $"{Environment.ProcessId}");
            var (code, output, error) = TestPaths.Run(Prepare(named));
            Assert.True(code == 0, error);
            Assert.Contains("removed the staging folder of an interrupted prepare", output);
            Assert.Empty(Directory.GetDirectories(named, ".prepare-*"));

            // A lock held open by a live owner: refused, and its folder left alone; released, it is stale.
            var held = Path.Combine(dir, "held");
            staging = Path.Combine(held, ".prepare-0123456789abcdef");
            Directory.CreateDirectory(staging);
            File.WriteAllText(Path.Combine(staging, "owner"), $"{Environment.ProcessId}");
            using (new FileStream(Path.Combine(staging, "lock"), FileMode.Create, FileAccess.ReadWrite, FileShare.None))
            {
                (code, _, error) = TestPaths.Run(Prepare(held));
                Assert.Equal(2, code);
                Assert.StartsWith(
                    $"blr: {held}: another prepare (process {Environment.ProcessId}) is working here",
                    error.Trim()
                );
                Assert.True(Directory.Exists(staging));
                Assert.False(File.Exists(Path.Combine(held, "manifest.json")));
            }
            (code, _, error) = TestPaths.Run(Prepare(held));
            Assert.True(code == 0, error);
            Assert.Empty(Directory.GetDirectories(held, ".prepare-*"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
