using System.Security.Cryptography;
using BlockwiseLR.Training;

namespace BlockwiseLR.Tests;

/// Failures a user or the machine causes end in one line, a documented exit code, and nothing of the user's lost.
public class FailureTests(GutenbergShards gutenberg) : IClassFixture<GutenbergShards>
{
    string[] Tiny(string run, int steps = 2) =>
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
            steps.ToString(),
            "--batch-size",
            "2",
            "--seq-len",
            "8",
            "--eval-every",
            "0",
            "--eval-windows",
            "1",
            "--threads",
            "1",
            "--out",
            run,
        ];

    static Dictionary<string, string> Snapshot(string folder) =>
        Directory
            .GetFiles(folder, "*", SearchOption.AllDirectories)
            .ToDictionary(
                f => Path.GetRelativePath(folder, f),
                f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f)))
            );

    static void AssertOneLine(string error)
    {
        Assert.Single(error.Trim().Split('\n'));
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void A_second_train_into_an_existing_run_is_refused_and_leaves_every_file_of_the_first_byte_identical()
    {
        var dir = Directory.CreateTempSubdirectory("blr-existing-").FullName;
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run(Tiny(run));
            Assert.True(code == 0, error);
            var before = Snapshot(run);
            Assert.Contains("metrics.jsonl", before.Keys);

            (code, _, error) = TestPaths.Run([.. Tiny(run), "--lr", "1e-3"]);
            Assert.Equal(2, code);
            Assert.Equal(
                $"blr: --out {run}: already holds a run; resume it (--resume latest) or replace it (--overwrite)",
                error.Trim()
            );
            Assert.Equal(before, Snapshot(run));

            // From C#: the same refusal, naming the property.
            var refused = Assert.Throws<InvalidOptionException>(() =>
                Pretrainer.Run(PretrainOptions.FromJsonFile(Path.Combine(run, "options.json")))
            );
            Assert.Equal("Run.Out", refused.Option);
            Assert.Equal(before, Snapshot(run));

            // --overwrite replaces the run: its files are the new run's, and a file of the user's stays.
            File.WriteAllText(Path.Combine(run, "notes.txt"), "mine");
            (code, _, error) = TestPaths.Run([.. Tiny(run, 3), "--overwrite"]);
            Assert.True(code == 0, error);
            Assert.Equal(3, File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length);
            Assert.Equal("mine", File.ReadAllText(Path.Combine(run, "notes.txt")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Resume_refuses_options_that_change_the_trajectory_and_lists_them()
    {
        var dir = Directory.CreateTempSubdirectory("blr-resume-").FullName;
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run([.. Tiny(run, 4), "--checkpoint-every", "2"]);
            Assert.True(code == 0, error);
            var before = Snapshot(run);
            (code, _, error) = TestPaths.Run([
                .. Tiny(run, 4),
                "--batch-size",
                "4",
                "--seq-len",
                "16",
                "--resume",
                "latest",
            ]);
            Assert.Equal(2, code);
            AssertOneLine(error);
            Assert.StartsWith(
                $"blr: --resume latest: {run}/checkpoints/step_0000004 was trained with other options (--batch-size 2 -> 4; --seq-len 8 -> 16)",
                error.Trim()
            );
            Assert.Equal(before, Snapshot(run));
            // Cadences may change. The run is already complete: nothing is trained, and result.json still appears,
            // keeping what the run measured before (its speed), not null.
            var earlier = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(run, "result.json")))!;
            (code, _, error) = TestPaths.Run([
                .. Tiny(run, 4),
                "--eval-every",
                "2",
                "--keep-checkpoints",
                "3",
                "--resume",
                "latest",
            ]);
            Assert.True(code == 0, error);
            var result = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(run, "result.json")))!;
            Assert.NotNull(earlier["millisecondsPerStep"]);
            Assert.Equal(
                earlier["millisecondsPerStep"]!.GetValue<double>(),
                result["millisecondsPerStep"]!.GetValue<double>()
            );
            Assert.NotNull(result["finalValLoss"]);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_folder_the_machine_will_not_write_is_exit_5_in_one_line()
    {
        // sysfs refuses new folders even for root (chmod does not stop root; the kernel's file system does).
        var (code, _, error) = TestPaths.Run(Tiny("/sys/blr-run"));
        Assert.Equal(5, code);
        AssertOneLine(error);
        Assert.StartsWith("blr: ", error);
        Assert.Contains("/sys/blr-run", error);
        Assert.False(Directory.Exists("/sys/blr-run"));
    }

    [Fact]
    public void A_disk_that_fills_during_a_checkpoint_is_exit_5_and_leaves_no_partial_checkpoint()
    {
        // A real full disk: a 6 MiB tmpfs holds the run's logs but not its first checkpoint (about 10 MiB).
        OnTmpfs(
            "size=6m",
            nameof(A_disk_that_fills_during_a_checkpoint_is_exit_5_and_leaves_no_partial_checkpoint),
            mount =>
            {
                var run = Path.Combine(mount, "run");
                var (code, _, error) = TestPaths.Run(Tiny(run));
                Assert.Equal(5, code);
                AssertOneLine(error);
                Assert.Contains("the disk is full", error);
                var checkpoints = Path.Combine(run, "checkpoints");
                Assert.Empty(Directory.Exists(checkpoints) ? Directory.GetFileSystemEntries(checkpoints) : []);
            }
        );
    }

    /// Runs <paramref name="body"/> on a fresh tmpfs mounted with <paramref name="options"/>, or prints why not
    /// (mounting refused) and returns.
    static void OnTmpfs(string options, string test, Action<string> body)
    {
        var mount = Directory.CreateTempSubdirectory("blr-tmpfs-").FullName;
        using (var mounting = System.Diagnostics.Process.Start("mount", ["-t", "tmpfs", "-o", options, "tmpfs", mount]))
        {
            mounting.WaitForExit();
            if (mounting.ExitCode != 0)
            {
                Console.WriteLine($"SKIPPED {test}: mounting a tmpfs was refused here");
                Directory.Delete(mount);
                return;
            }
        }
        try
        {
            body(mount);
        }
        finally
        {
            using (var unmounting = System.Diagnostics.Process.Start("umount", [mount]))
                unmounting.WaitForExit();
            Directory.Delete(mount, true);
        }
    }

    [Fact]
    public void A_read_only_file_system_is_exit_5_in_one_line() =>
        OnTmpfs("size=1m,ro", nameof(A_read_only_file_system_is_exit_5_in_one_line), mount =>
        {
            var (code, _, error) = TestPaths.Run(Tiny(Path.Combine(mount, "run")));
            Assert.Equal(5, code);
            AssertOneLine(error);
            Assert.Contains("the file system is read-only", error);
            Assert.Empty(Directory.GetFileSystemEntries(mount));
        });

    [Fact]
    public void An_output_path_that_is_a_file_is_refused_and_the_file_kept()
    {
        var file = Path.Combine(Path.GetTempPath(), $"blr-file-{Guid.NewGuid():N}");
        File.WriteAllText(file, "keep me");
        try
        {
            var (code, _, error) = TestPaths.Run(Tiny(file));
            Assert.Equal(2, code);
            Assert.Equal($"blr: --out {file}: is a file; give a folder for the run", error.Trim());
            Assert.Equal("keep me", File.ReadAllText(file));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void An_unexpected_failure_is_one_line_naming_a_trace_log_outside_the_output_folder()
    {
        var dir = Directory.CreateTempSubdirectory("blr-bug-").FullName;
        try
        {
            var run = Path.Combine(dir, "run");
            using var process = TestPaths.Start(Tiny(run), fault: "bug-before-training");
            var error = process.StandardError.ReadToEnd();
            process.WaitForExit();
            Assert.Equal(1, process.ExitCode);
            AssertOneLine(error);
            var match = System.Text.RegularExpressions.Regex.Match(error, @"the trace is in (\S+\.log)");
            Assert.True(match.Success, error);
            var log = match.Groups[1].Value;
            Assert.StartsWith(Path.GetTempPath(), log);
            Assert.Contains("BLR_FAULT: bug-before-training", error);
            Assert.Contains("at BlockwiseLR.Trainer.Run", File.ReadAllText(log));
            File.Delete(log);
            Assert.False(Directory.Exists(run));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}

/// A trained tiny run and broken copies of it, for the bad-input table.
public sealed class BrokenFiles : IDisposable
{
    public BrokenFiles()
    {
        Root = Directory.CreateTempSubdirectory("blr-broken-").FullName;
        Data = Path.Combine(Root, "data");
        ShardPrepare();
        Run = Path.Combine(Root, "run");
        var (code, _, error) = TestPaths.Run([
            "train",
            "--data",
            Data,
            "--set",
            "layers=1",
            "--set",
            "width=16",
            "--set",
            "heads=2",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--seq-len",
            "8",
            "--eval-windows",
            "1",
            "--threads",
            "1",
            "--out",
            Run,
        ]);
        if (code != 0)
            throw new Exception(error);
        var checkpoint = Path.Combine(Run, "checkpoints", "step_0000002");
        // A model folder whose weights are cut short.
        Truncated = Path.Combine(Root, "truncated");
        Directory.CreateDirectory(Truncated);
        File.Copy(Path.Combine(checkpoint, "config.json"), Path.Combine(Truncated, "config.json"));
        File.WriteAllBytes(
            Path.Combine(Truncated, "model.safetensors"),
            File.ReadAllBytes(Path.Combine(checkpoint, "model.safetensors"))[..100_000]
        );
        // A run whose checkpoint state is garbage.
        Garbage = Path.Combine(Root, "garbage");
        CopyFolder(Run, Garbage);
        File.WriteAllText(Path.Combine(Garbage, "checkpoints", "step_0000002", "trainer.json"), "garbage");
        // A dataset whose first train shard's header counts one token fewer than the file holds.
        Undercount = Path.Combine(Root, "undercount");
        CopyFolder(Data, Undercount);
        var shard = Directory.GetFiles(Undercount, "train_*.bin").Order(StringComparer.Ordinal).First();
        using (var stream = new FileStream(shard, FileMode.Open, FileAccess.ReadWrite))
        {
            var header = new byte[12];
            stream.ReadExactly(header);
            stream.Position = 8;
            stream.Write(BitConverter.GetBytes(BitConverter.ToInt32(header, 8) - 1));
        }
        UndercountShard = shard;
        // Datasets whose manifest.json is garbage, or lists no train shards.
        GarbageManifest = Path.Combine(Root, "garbage-manifest");
        CopyFolder(Data, GarbageManifest);
        File.WriteAllText(Path.Combine(GarbageManifest, "manifest.json"), "{ not json");
        EmptyManifest = Path.Combine(Root, "empty-manifest");
        CopyFolder(Data, EmptyManifest);
        File.WriteAllText(Path.Combine(EmptyManifest, "manifest.json"), "{}");
        // A safetensors file whose header length points past its end.
        LongHeader = Path.Combine(Root, "long-header.safetensors");
        File.WriteAllBytes(LongHeader, [.. BitConverter.GetBytes(1_000_000L), .. "{}"u8.ToArray()]);
        // A model whose blr-tokenizer.json is garbage; one whose SentencePiece tokenizer.model is empty.
        GarbageTokenizer = Path.Combine(Root, "garbage-tokenizer");
        CopyFolder(checkpoint, GarbageTokenizer);
        File.WriteAllText(Path.Combine(GarbageTokenizer, "blr-tokenizer.json"), "garbage");
        EmptyTokenizer = Path.Combine(Root, "empty-tokenizer");
        CopyFolder(checkpoint, EmptyTokenizer);
        File.WriteAllText(
            Path.Combine(EmptyTokenizer, "blr-tokenizer.json"),
            """{"Name":"sentencepiece","VocabSize":4000,"EndOfText":0,"Files":["tokenizer.model"]}"""
        );
        File.WriteAllBytes(Path.Combine(EmptyTokenizer, "tokenizer.model"), []);
        EmptyModelFile = Path.Combine(Root, "empty.model");
        File.WriteAllBytes(EmptyModelFile, []);
        Whitespace = Path.Combine(Root, "whitespace.txt");
        File.WriteAllText(Whitespace, "   \n\n \t \n\n   \n");
        TwiceConfig = Path.Combine(Root, "twice.json");
        File.WriteAllText(TwiceConfig, """{"training":{"steps":3,"steps":4}}""");
        CaseConfig = Path.Combine(Root, "case.json");
        File.WriteAllText(CaseConfig, """{"training":{"Steps":3}}""");
        PlainFile = Path.Combine(Root, "plain-file");
        File.WriteAllText(PlainFile, "keep me");
        MakeIntegrityFiles(checkpoint);
        LrConfig = Path.Combine(Root, "lr.json");
        File.WriteAllText(LrConfig, """{"schedule":{"lr":1e308}}""");
        ThreadsConfig = Path.Combine(Root, "threads.json");
        File.WriteAllText(ThreadsConfig, """{"training":{"threads":100000}}""");
    }

    /// Files for the integrity rows (issue 24): a .gz cut at half, a text file, a dataset of the 4K tokenizer and
    /// copies of it whose tokenizer.model is changed or missing, a run whose metrics.jsonl is damaged before its
    /// last line, a run that stopped before its first checkpoint, a model whose header says I32 for an F32 tensor.
    void MakeIntegrityFiles(string checkpoint)
    {
        var book = BlockwiseLR.Data.Corpus.Builtin("gutenberg").Documents.First().Text[..60_000];
        Text = Path.Combine(Root, "plain.txt");
        File.WriteAllText(Text, book);
        var gz = new MemoryStream();
        using (var zip = new System.IO.Compression.GZipStream(gz, System.IO.Compression.CompressionLevel.Optimal))
            zip.Write(System.Text.Encoding.UTF8.GetBytes(book));
        HalfGz = Path.Combine(Root, "half.txt.gz");
        File.WriteAllBytes(HalfGz, gz.ToArray()[..(int)(gz.ToArray().Length / 2)]);
        // Twenty documents, so that both splits get chunks.
        var documents = Path.Combine(Root, "docs.jsonl");
        File.WriteAllLines(
            documents,
            Enumerable
                .Range(0, 20)
                .Select(i => System.Text.Json.JsonSerializer.Serialize(new { text = book.Substring(i * 3000, 3000) }))
        );
        Tok4k = Path.Combine(Root, "data4k");
        BlockwiseLR.ShardPreparer.Run(
            new BlockwiseLR.PrepareOptions
            {
                Inputs = [documents],
                Tokenizer = "gutenberg-bpe4k",
                ValFraction = 0.1,
                OutputDirectory = Tok4k,
            }
        );
        ChangedTok = Path.Combine(Root, "changed-tokenizer");
        CopyFolder(Tok4k, ChangedTok);
        File.AppendAllText(Path.Combine(ChangedTok, "tokenizer.model"), "x");
        MissingTok = Path.Combine(Root, "missing-tokenizer");
        CopyFolder(Tok4k, MissingTok);
        File.Delete(Path.Combine(MissingTok, "tokenizer.model"));
        TornMid = Path.Combine(Root, "torn-mid");
        CopyFolder(Run, TornMid);
        var metrics = File.ReadAllLines(Path.Combine(Run, "metrics.jsonl"));
        File.WriteAllLines(Path.Combine(TornMid, "metrics.jsonl"), [metrics[0][..40], .. metrics[1..]]);
        NoCheckpoint = Path.Combine(Root, "no-checkpoint");
        CopyFolder(Run, NoCheckpoint);
        Directory.Delete(Path.Combine(NoCheckpoint, "checkpoints"), true);
        File.Delete(Path.Combine(NoCheckpoint, "result.json"));
        I32 = Path.Combine(Root, "i32");
        CopyFolder(checkpoint, I32);
        var weights = Path.Combine(I32, "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        var header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)BitConverter.ToInt64(bytes, 0));
        var at =
            8
            + header.IndexOf(
                "\"F32\"",
                header.IndexOf("\"transformer.wte.weight\"", StringComparison.Ordinal),
                StringComparison.Ordinal
            );
        bytes[at + 1] = (byte)'I'; // "F32" -> "I32": the same size, so the header stays valid
        File.WriteAllBytes(weights, bytes);
    }

    void ShardPrepare() =>
        BlockwiseLR.ShardPreparer.Run(new BlockwiseLR.PrepareOptions { Builtin = "gutenberg", OutputDirectory = Data });

    static void CopyFolder(string from, string to)
    {
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(dir.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, file.Replace(from, to));
    }

    public string Root { get; }
    public string Data { get; }
    public string Run { get; }
    public string Truncated { get; }
    public string Garbage { get; }
    public string LongHeader { get; }
    public string Undercount { get; }
    public string GarbageManifest { get; }
    public string EmptyManifest { get; }
    public string UndercountShard { get; }
    public string Text { get; private set; } = "";
    public string HalfGz { get; private set; } = "";
    public string Tok4k { get; private set; } = "";
    public string ChangedTok { get; private set; } = "";
    public string MissingTok { get; private set; } = "";
    public string TornMid { get; private set; } = "";
    public string NoCheckpoint { get; private set; } = "";
    public string I32 { get; private set; } = "";
    public string GarbageTokenizer { get; }
    public string EmptyTokenizer { get; }
    public string EmptyModelFile { get; }
    public string Whitespace { get; }
    public string TwiceConfig { get; }
    public string CaseConfig { get; }
    public string PlainFile { get; }
    public string LrConfig { get; }
    public string ThreadsConfig { get; }

    public void Dispose() => Directory.Delete(Root, true);
}

public class BadInputTests(BrokenFiles files) : IClassFixture<BrokenFiles>
{
    string Fill(string text) =>
        text.Replace("{data}", files.Data)
            .Replace("{run}", files.Run)
            .Replace("{truncated}", files.Truncated)
            .Replace("{garbage}", files.Garbage)
            .Replace("{long}", files.LongHeader)
            .Replace("{root}", files.Root)
            .Replace("{garbageManifest}", files.GarbageManifest)
            .Replace("{emptyManifest}", files.EmptyManifest)
            .Replace("{undercount}", files.Undercount)
            .Replace("{undercountShard}", files.UndercountShard)
            .Replace("{text}", files.Text)
            .Replace("{halfGz}", files.HalfGz)
            .Replace("{tok4k}", files.Tok4k)
            .Replace("{changedTok}", files.ChangedTok)
            .Replace("{missingTok}", files.MissingTok)
            .Replace("{tornMid}", files.TornMid)
            .Replace("{noCheckpoint}", files.NoCheckpoint)
            .Replace("{i32}", files.I32)
            .Replace("{garbageTokenizer}", files.GarbageTokenizer)
            .Replace("{emptyTokenizer}", files.EmptyTokenizer)
            .Replace("{emptyModelFile}", files.EmptyModelFile)
            .Replace("{whitespace}", files.Whitespace)
            .Replace("{twiceConfig}", files.TwiceConfig)
            .Replace("{caseConfig}", files.CaseConfig)
            .Replace("{plainFile}", files.PlainFile)
            .Replace("{lrConfig}", files.LrConfig)
            .Replace("{threadsConfig}", files.ThreadsConfig);

    const string NoCuda = "CUDA is not available to libtorch: the loaded libtorch has no CUDA, or no GPU is visible";
    const string Train =
        "train --data {data} --set layers=1 --set width=16 --set heads=2 --steps 2 --batch-size 2 --seq-len 8 --eval-windows 1 --threads 1";

    /// Each case: the command, its exit code, the start of its one line (after "blr: "), and a folder that must not
    /// exist after.
    public static TheoryData<string, int, string, string> Cases =>
        new()
        {
            { Train + " --out {root}/o1 --lr nan", 2, "--lr NaN: must be a finite number > 0", "{root}/o1" },
            { Train + " --out {root}/o2 --lr 1e400", 2, "--lr Infinity: must be a finite number > 0", "{root}/o2" },
            {
                Train + " --out {root}/o3 --grad-clip nan",
                2,
                "--grad-clip NaN: must be a finite number >= 0",
                "{root}/o3"
            },
            {
                Train + " --out {root}/o4 --weight-decay -5",
                2,
                "--weight-decay -5: must be a finite number >= 0",
                "{root}/o4"
            },
            { Train + " --out {root}/o5 --floor nan", 2, "--floor NaN: must be a finite number >= 0", "{root}/o5" },
            { Train + " --out {root}/o6 --checkpoint-every -1", 2, "--checkpoint-every -1: must be >= 0", "{root}/o6" },
            { Train + " --out {root}/o7 --threads 0", 2, "--threads 0: must be >= 1", "{root}/o7" },
            { Train + " --out {root}/o8 --peak-tflops foo", 2, "--peak-tflops foo: give TFLOP/s", "{root}/o8" },
            {
                Train + " --out {root}/o9 --init-from {truncated}",
                2,
                "{truncated}/model.safetensors: truncated",
                "{root}/o9"
            },
            { Train + " --out {root}/o10 --init-from /nonexistent", 2, "/nonexistent: not a model", "{root}/o10" },
            {
                Train + " --out {garbage} --resume latest",
                2,
                "{garbage}/checkpoints/step_0000002/trainer.json: not a trainer state",
                "{root}/never"
            },
            {
                Train + " --out {root}/o11 --resume latest",
                2,
                "--resume latest: {root}/o11 has no checkpoint to resume",
                "{root}/o11"
            },
            {
                Train + " --out {root}/o12 --micro-batch-size 3",
                2,
                "--micro-batch-size 3: must divide the batch size (2)",
                "{root}/o12"
            },
            { Train + " --out {root}/o13 --device cuda:x", 2, "--device cuda:x: unknown device", "{root}/o13" },
            {
                Train + " --out {root}/o14 --schedule cosin",
                2,
                "--schedule cosin: unknown schedule 'cosin'",
                "{root}/o14"
            },
            {
                Train + " --out {root}/o15 --precision fp8",
                2,
                "--precision fp8: unknown precision 'fp8'",
                "{root}/o15"
            },
            {
                Train + " --out {root}/o16 --ratios auto --auto-smoothing 1",
                2,
                "--auto-smoothing 1: must be a finite number >= 0 and < 1",
                "{root}/o16"
            },
            {
                Train + " --out {root}/o24 --auto-alpha 0.5 --ratios paper",
                2,
                "--auto-alpha 0.5: applies only to auto ratios (--ratios auto), not emb=10,pe=1,qk=8,vo=4,ffn=6,norm=1",
                "{root}/o24"
            },
            {
                Train + " --out {root}/o25 --ratios auto --alpha",
                2,
                "--alpha true: makes a block's warmup ratio x longer, but auto ratios change during the run",
                "{root}/o25"
            },
            { "sample --model-dir {truncated}", 2, "{truncated}/model.safetensors: truncated", "{root}/never" },
            {
                "sample --model-dir {run} --temperature nan",
                2,
                "--temperature NaN: must be 0 (greedy) or a finite number >= 0.01",
                "{root}/never"
            },
            { "sample --model-dir {run} --threads 0", 2, "--threads 0: must be >= 1", "{root}/never" },
            {
                "eval --model-dir {truncated} --data {data}",
                2,
                "{truncated}/model.safetensors: truncated",
                "{root}/never"
            },
            { "eval --model-dir {run} --data {data} --threads 0", 2, "--threads 0: must be >= 1", "{root}/never" },
            {
                "export-hf --from {truncated} --out {root}/e1",
                2,
                "{truncated}/model.safetensors: truncated",
                "{root}/e1"
            },
            {
                "import-hf --from {truncated} --out {root}/e2",
                2,
                "{truncated}/model.safetensors: truncated",
                "{root}/e2"
            },
            { "blocks {long}", 2, "{long}: header length 1000000 at byte 0 is not valid", "{root}/never" },
            { "blocks {root}", 2, "{root}: is a folder; give a .safetensors file", "{root}/never" },
            {
                "plot --run {run} --out {root}",
                2,
                "--out {root}: is a folder; give the path of a .png file",
                "{root}/never"
            },
            {
                "plot --run {run} --sharpness --out {root}/s.png",
                2,
                "{run}/metrics.jsonl: no sharpness entries; train with --sharpness-every N",
                "{root}/s.png"
            },
            {
                "schedule --steps 100 --ratios auto",
                2,
                "--ratios auto: auto ratios are set from measured sharpness during training",
                "{root}/never"
            },
            { "prepare --builtin gutenberg --threads 0 --out {root}/p1", 2, "--threads 0: must be >= 1", "{root}/p1" },
            {
                "prepare --builtin gutenberg --seed 7 --out {data}",
                2,
                "{data}: already holds a prepared dataset",
                "{root}/never"
            },
            {
                "demo --out {run}",
                2,
                "--out {run}: holds files blr demo did not write (checkpoints, evals.csv, metrics.jsonl, ...)",
                "{run}/data"
            },
            {
                "compare --data {data} --steps 2 --out {run}",
                2,
                "--out {run}: holds files blr compare did not write",
                "{run}/adamw-2N"
            },
            {
                "train --data {garbageManifest} --set layers=1 --set width=16 --set heads=2 --steps 2 --batch-size 2 --seq-len 8 --out {root}/o18",
                2,
                "{garbageManifest}/manifest.json: not valid JSON (line 1)",
                "{root}/o18"
            },
            {
                "train --data {emptyManifest} --set layers=1 --set width=16 --set heads=2 --steps 2 --batch-size 2 --seq-len 8 --out {root}/o19",
                2,
                "{emptyManifest}/manifest.json: no shards.train list",
                "{root}/o19"
            },
            {
                Train + " --out {root}/o20 --config {root}/none.json",
                2,
                "--config {root}/none.json: file not found",
                "{root}/o20"
            },
            { Train + " --out {root}/o21 --model gpt5", 2, "--model gpt5: unknown model 'gpt5'", "{root}/o21" },
            {
                Train + " --out {root}/o22 --set heads=3",
                2,
                "--set layers=1,width=16,heads=3: width 16 is not divisible by heads 3",
                "{root}/o22"
            },
            {
                Train + " --out {root}/o23 --resume {root}/nowhere",
                2,
                "--resume {root}/nowhere: not a checkpoint (no trainer.json)",
                "{root}/o23"
            },
            {
                "sample --model-dir {run} --top-p 0",
                2,
                "--top-p 0: must be a finite number > 0 and <= 1",
                "{root}/never"
            },
            { "sample --model-dir {run} --top-k -1", 2, "--top-k -1: must be >= 0", "{root}/never" },
            {
                "eval --model-dir {run}",
                2,
                "--data: give a prepared dataset (its val split) or a text file, one of them",
                "{root}/never"
            },
            {
                "sharpness --run {run} --data {data} --steps 99",
                2,
                "{run}: no checkpoints at the steps asked for",
                "{root}/never"
            },
            { "blocks {run}/options.json", 2, "{run}/options.json: header length", "{root}/never" },
            { "demo --threads 0 --out {root}/d1", 2, "--threads 0: must be >= 1", "{root}/d1" },
            { "sharpness --run {run} --data {data} --threads 0", 2, "--threads 0: must be >= 1", "{root}/never" },
            {
                "export-hf --from {run} --out {run}/checkpoints/step_0000002",
                2,
                "--out {run}/checkpoints/step_0000002: already holds a model; choose another folder or pass --overwrite",
                "{root}/never"
            },
            // --device on every command that computes: resolved once, before anything is written (no GPU here).
            { Train + " --out {root}/g1 --device cuda", 3, NoCuda, "{root}/g1" },
            { "eval --model-dir {run} --data {data} --device cuda", 3, NoCuda, "{root}/never" },
            { "sample --model-dir {run} --device cuda:1", 3, NoCuda, "{root}/never" },
            { "sharpness --run {run} --data {data} --device cuda", 3, NoCuda, "{root}/never" },
            { "compare --data {data} --steps 2 --out {root}/g2 --device cuda", 3, NoCuda, "{root}/g2" },
            { "demo --quick --out {root}/g3 --device cuda", 3, NoCuda, "{root}/g3" },
            { "doctor --device cuda", 3, NoCuda, "{root}/never" },
            {
                "doctor --device cuda:x",
                2,
                "--device cuda:x: unknown device 'cuda:x' (known: cpu, cuda, cuda:N)",
                "{root}/never"
            },
            { Train + " --out {root}/g4 --device cuda:-1", 2, "--device cuda:-1: unknown device", "{root}/g4" },
            {
                "train --data {undercount} --set layers=1 --set width=16 --set heads=2 --steps 2 --batch-size 2 --seq-len 8 --out {root}/o17",
                2,
                "{undercountShard}: the header (byte 8) says",
                "{root}/o17"
            },
        };

    /// Issue 24's integrity cases: every file a command reads is checked before it is trusted.
    public static TheoryData<string, int, string, string> IntegrityCases =>
        new()
        {
            { "prepare --input {halfGz} --out {root}/i1", 2, "{halfGz}: not a whole gzip file (the ", "{root}/i1" },
            {
                "prepare --input {text} --input {root}/./plain.txt --out {root}/i2",
                2,
                "{root}/./plain.txt: named twice (also as {text}: both are {text})",
                "{root}/i2"
            },
            {
                "train --data {changedTok} --set layers=1 --set width=16 --set heads=2 --steps 2 --batch-size 2 --seq-len 8 --out {root}/i3",
                2,
                "{changedTok}/tokenizer.model: changed since {changedTok}/manifest.json recorded it",
                "{root}/i3"
            },
            {
                "train --data {missingTok} --set layers=1 --set width=16 --set heads=2 --steps 2 --batch-size 2 --seq-len 8 --out {root}/i4",
                2,
                "{missingTok}/tokenizer.model: missing",
                "{root}/i4"
            },
            {
                "eval --model-dir {run} --data {tok4k}",
                2,
                "--data {tok4k}: was prepared with the sentencepiece (4,000 ids",
                "{root}/never"
            },
            {
                "sharpness --run {run} --data {tok4k}",
                2,
                "--data {tok4k}: was prepared with the sentencepiece (4,000 ids",
                "{run}/sharpness.csv"
            },
            {
                Train + " --out {tornMid} --resume latest",
                2,
                "{tornMid}/metrics.jsonl: line 1 is not a whole metrics line, and more lines follow it",
                "{root}/never"
            },
            {
                "plot --train --run {tornMid} --out {root}/i5.png",
                2,
                "{tornMid}/metrics.jsonl: line 1 is not a whole metrics line",
                "{root}/i5.png"
            },
            {
                "eval --model-dir {i32} --data {data}",
                2,
                "{i32}/model.safetensors: tensor transformer.wte.weight is I32, but it loads into F32",
                "{root}/never"
            },
            {
                Train + " --out {noCheckpoint} --resume latest",
                2,
                "--resume latest: {noCheckpoint} has no checkpoint to resume",
                "{noCheckpoint}/checkpoints"
            },
        };

    static readonly int Cores = Environment.ProcessorCount;

    /// <summary>Issue 24's ranges, memory, tokenizer files, .NET messages and config keys.</summary>
    public static TheoryData<string, int, string, string> RangeCases =>
        new()
        {
            {
                Train + " --out {root}/r1 --threads 100000",
                2,
                $"--threads 100000: must be >= 1 and <= {4 * Cores} (4 x this machine's {Cores} cores)",
                "{root}/r1"
            },
            {
                "prepare --builtin gutenberg --threads 100000 --out {root}/r2",
                2,
                "--threads 100000: must be >= 1 and <= ",
                "{root}/r2"
            },
            {
                "eval --model-dir {run} --data {data} --threads 100000",
                2,
                "--threads 100000: must be >= 1 and <= ",
                "{root}/never"
            },
            {
                "schedule --steps 100 --points 2000000000",
                2,
                "--points 2000000000: must be >= 0 and <= 10000",
                "{root}/never"
            },
            {
                Train + " --out {root}/r3 --lr 3.4e37",
                2,
                "--lr 3.4E+37: must be a finite number > 0 and <= 100",
                "{root}/r3"
            },
            {
                Train + " --out {root}/r4 --lr 3.4e37 --optimizer adamw",
                2,
                "--lr 3.4E+37: must be a finite number > 0 and <= 100",
                "{root}/r4"
            },
            {
                Train + " --out {root}/r5 --ratios emb=1e37",
                2,
                "--ratios emb=1e37: ratios 'emb=1e37': emb=1e37 must be a finite number > 0 and <= 1000",
                "{root}/r5"
            },
            {
                Train + " --out {root}/r6 --weight-decay 1e308",
                2,
                "--weight-decay 1E+308: must be a finite number >= 0 and <= 100",
                "{root}/r6"
            },
            {
                "schedule --steps 100 --lr 1e308",
                2,
                "--lr 1E+308: must be a finite number > 0 and <= 100",
                "{root}/never"
            },
            {
                "sample --model-dir {run} --temperature 1e308",
                2,
                "--temperature 1E+308: must be 0 (greedy) or a finite number >= 0.01 and <= 100",
                "{root}/never"
            },
            {
                "sample --model-dir {run} --temperature 1e-300",
                2,
                "--temperature 1E-300: must be 0 (greedy) or a finite number >= 0.01",
                "{root}/never"
            },
            {
                Train + " --out {root}/r7 --batch-size 100000000",
                2,
                "--batch-size 100000000: must be >= 1 and <= 1048576",
                "{root}/r7"
            },
            {
                Train + " --out {root}/r8 --set vocab=2000000000",
                2,
                "--set layers=1,width=16,heads=2,vocab=2000000000: the model needs about",
                "{root}/r8"
            },
            {
                Train + " --out {root}/r9 --set width=1000000",
                2,
                "--set layers=1,width=1000000,heads=2: the model needs about",
                "{root}/r9"
            },
            {
                Train + " --out {root}/r10 --batch-size 1048576 --micro-batch-size 1048576",
                2,
                "--micro-batch-size 1048576: a step needs about",
                "{root}/r10"
            },
            {
                "eval --model-dir {garbageTokenizer} --text {text}",
                2,
                "{garbageTokenizer}/blr-tokenizer.json: not a tokenizer record",
                "{root}/never"
            },
            {
                "sample --model-dir {garbageTokenizer}",
                2,
                "{garbageTokenizer}/blr-tokenizer.json: not a tokenizer record",
                "{root}/never"
            },
            {
                "export-hf --from {garbageTokenizer} --out {root}/r11",
                2,
                "{garbageTokenizer}/blr-tokenizer.json: not a tokenizer record",
                "{root}/r11"
            },
            {
                "sample --model-dir {emptyTokenizer}",
                2,
                "{emptyTokenizer}/tokenizer.model: empty, not a SentencePiece model",
                "{root}/never"
            },
            {
                "export-hf --from {emptyTokenizer} --out {root}/r12",
                2,
                "{emptyTokenizer}/tokenizer.model: empty, not a SentencePiece model",
                "{root}/r12"
            },
            {
                "prepare --input {text} --tokenizer {emptyModelFile} --out {root}/r13",
                2,
                "{emptyModelFile}: empty, not a SentencePiece model",
                "{root}/r13"
            },
            { "prepare --input {whitespace} --out {root}/r14", 2, "the corpus has no text", "{root}/r14" },
            {
                Train + " --out {root}/r15 --config {twiceConfig}",
                2,
                "{twiceConfig}: training.steps: is given twice",
                "{root}/r15"
            },
            {
                Train + " --out {root}/r16 --config {caseConfig}",
                2,
                "{caseConfig}: training.steps = 3: unknown option 'training.Steps'; keys are case-sensitive: write training.steps",
                "{root}/r16"
            },
            {
                "import-hf --from {run}/checkpoints/step_0000002 --out {plainFile}/x",
                2,
                "{plainFile}: is a file, not a folder",
                "{root}/never"
            },
            {
                "eval --model-dir {run} --text {root}/nowhere/x.txt",
                2,
                "--text {root}/nowhere/x.txt: a folder on this path does not exist",
                "{root}/never"
            },
            {
                "sharpness --run {run} --data {data} --steps x",
                2,
                "--steps x: 'x' is not a step number",
                "{root}/never"
            },
            {
                "blocks --block-rules {root}/nowhere/rules {long}",
                2,
                "--block-rules {root}/nowhere/rules: a folder on this path does not exist",
                "{root}/never"
            },
        };

    /// Issue 24 item 7 and 9: inputs that were taken and gave a silently wrong result.
    public static TheoryData<string, int, string, string> SilentCases =>
        new()
        {
            {
                Train + " --out {root}/s1 --optimizer adamw --ratios auto",
                2,
                "--ratios auto: applies only to the blockwise optimizers; adamw gives every block the base LR",
                "{root}/s1"
            },
            {
                Train + " --out {root}/s2 --optimizer lion --ratios paper",
                2,
                "--ratios emb=10,pe=1,qk=8,vo=4,ffn=6,norm=1: applies only to the blockwise optimizers; lion gives",
                "{root}/s2"
            },
            {
                Train + " --out {root}/s3 --optimizer adamw --auto-alpha 0.5",
                2,
                "--auto-alpha 0.5: applies only to the blockwise optimizers; adamw gives every block the base LR",
                "{root}/s3"
            },
            {
                Train + " --out {root}/s4 --optimizer adam-mini --auto-every 5",
                2,
                "--auto-every 5: applies only to the blockwise optimizers; adam-mini gives every block the base LR",
                "{root}/s4"
            },
            {
                Train + " --out {root}/s5 --ratios uniform --auto-noise off",
                2,
                "--auto-noise \"off\": applies only to auto ratios (--ratios auto)",
                "{root}/s5"
            },
            // Zero batches measured nothing and replaced the run's sharpness.csv and .png with it.
            {
                "sharpness --run {run} --data {data} --batches 0",
                2,
                "--batches 0: must be >= 1",
                "{run}/sharpness.csv"
            },
            {
                "sharpness --run {run} --data {data} --batch-size 0",
                2,
                "--batch-size 0: must be >= 1",
                "{run}/sharpness.csv"
            },
            {
                "sharpness --run {run} --data {data} --seq-len -3",
                2,
                "--seq-len -3: must be >= 1",
                "{run}/sharpness.csv"
            },
            {
                Train + " --out {run} --resume latest --overwrite",
                2,
                "--overwrite: replaces the run that --resume latest continues; give one of them",
                "{root}/never"
            },
            {
                "prepare --builtin gutenberg --val-fraction 5 --val-tokens 1000 --out {root}/p2",
                2,
                "--val-fraction 5: must be a finite number >= 0 and < 1",
                "{root}/p2"
            },
            {
                "prepare --builtin gutenberg --val-fraction 0.03 --val-tokens 1000 --out {root}/p3",
                2,
                "--val-fraction 0.03: give --val-fraction or --val-tokens (1000), not both",
                "{root}/p3"
            },
            {
                "sharpness --run {run} --data {data} --seq-len 100000",
                2,
                "--seq-len 100000: must be in 1..",
                "{run}/sharpness.csv"
            },
        };

    /// <summary>Issue 24's remaining cases, one row each: the LR, threads and .NET-message cases on the commands
    /// and sources the other tables do not try (a config file, adamw, every command with --threads, --out that is
    /// a file), Argu's parse refusals in blr's form, and the tokenizer files on the commands left.</summary>
    public static TheoryData<string, int, string, string> MoreCases =>
        new()
        {
            {
                Train + " --out {root}/m1 --lr 3.4e38 --optimizer adamw",
                2,
                "--lr 3.4E+38: must be a finite number > 0 and <= 100",
                "{root}/m1"
            },
            {
                Train + " --out {root}/m2 --lr 1e308",
                2,
                "--lr 1E+308: must be a finite number > 0 and <= 100",
                "{root}/m2"
            },
            {
                Train + " --out {root}/m3 --config {lrConfig}",
                2,
                "{lrConfig}: schedule.lr = 1E+308: must be a finite number > 0 and <= 100",
                "{root}/m3"
            },
            {
                "train --data {data} --set layers=1 --set width=16 --set heads=2 --steps 2 --batch-size 2 --seq-len 8 --out {root}/m4 --config {threadsConfig}",
                2,
                "{threadsConfig}: training.threads = 100000: must be >= 1 and <= ",
                "{root}/m4"
            },
            // --threads 100000 on every command that has --threads (train, prepare and eval are in RangeCases).
            {
                "sample --model-dir {run} --threads 100000",
                2,
                "--threads 100000: must be >= 1 and <= ",
                "{root}/never"
            },
            {
                "sharpness --run {run} --data {data} --threads 100000",
                2,
                "--threads 100000: must be >= 1 and <= ",
                "{run}/sharpness.csv"
            },
            {
                "demo --quick --threads 100000 --out {root}/m5",
                2,
                "--threads 100000: must be >= 1 and <= ",
                "{root}/m5"
            },
            {
                "compare --data {data} --steps 2 --threads 100000 --out {root}/m6",
                2,
                "--threads 100000: must be >= 1 and <= ",
                "{root}/m6"
            },
            // --out that is a file: one line naming it, never "check the disk".
            {
                Train + " --out {plainFile}",
                2,
                "--out {plainFile}: is a file; give a folder for the run",
                "{root}/never"
            },
            {
                "prepare --builtin gutenberg --out {plainFile}",
                2,
                "{plainFile}: is a file; --out takes a folder",
                "{root}/never"
            },
            {
                "export-hf --from {run} --out {plainFile}",
                2,
                "--out {plainFile}: is a file, not a folder; give a folder, or move the file",
                "{root}/never"
            },
            {
                "demo --quick --out {plainFile}",
                2,
                "--out {plainFile}: is a file; give a folder for the run",
                "{root}/never"
            },
            {
                "compare --data {data} --steps 2 --out {plainFile}",
                2,
                "--out {plainFile}: is a file; give a folder for the run",
                "{root}/never"
            },
            // Values Argu cannot read: the flag and value first, what it takes with its range, where the help is.
            {
                Train + " --out {root}/m7 --steps x",
                2,
                "--steps x: must be a whole number >= 1 (at most 2147483647); see blr train --help",
                "{root}/m7"
            },
            {
                Train + " --out {root}/m8 --checkpoint-every 99999999999",
                2,
                "--checkpoint-every 99999999999: must be a whole number >= 0 (at most 2147483647); see blr train --help",
                "{root}/m8"
            },
            {
                Train + " --out {root}/m9 --lr x",
                2,
                "--lr x: must be a number > 0 and <= 100; see blr train --help",
                "{root}/m9"
            },
            {
                "schedule --steps 100 --points x",
                2,
                "--points x: must be a whole number >= 0 and <= 10000; see blr schedule --help",
                "{root}/never"
            },
            {
                "sample --model-dir {run} --temperature x",
                2,
                "--temperature x: must be 0 (greedy) or a number >= 0.01 and <= 100; see blr sample --help",
                "{root}/never"
            },
            {
                Train + " --out {root}/m10 --stepz 3",
                2,
                "--stepz: not an option of blr train; see blr train --help",
                "{root}/m10"
            },
            { "plot --run {run}", 2, "--out: is required; see blr plot --help", "{root}/never" },
            // Tokenizer files on the commands and flags the other tables leave out.
            {
                "eval --model-dir {garbageTokenizer} --data {data}",
                2,
                "{garbageTokenizer}/blr-tokenizer.json: not a tokenizer record",
                "{root}/never"
            },
            {
                "prepare --builtin gutenberg --tokenizer {emptyTokenizer} --out {root}/m11",
                2,
                "{emptyTokenizer}/tokenizer.model: empty, not a SentencePiece model",
                "{root}/m11"
            },
            // A resume that changes the micro-batch changes the trajectory (a resume at another number of
            // processes keeps the checkpoint's: DataParallelTests).
            {
                Train + " --out {run} --resume latest --micro-batch-size 1",
                2,
                "--resume latest: {run}/checkpoints/step_0000002 was trained with other options (--micro-batch-size 2 -> 1)",
                "{root}/never"
            },
            {
                "sharpness --run {run} --data {data} --batch-size 100000000",
                2,
                "--batch-size 100000000: must be >= 1 and <= 1048576",
                "{run}/sharpness.csv"
            },
        };

    /// <summary>ModelConfigs' argument errors name their C# argument (ParamName, issue 25): the CLI's line says the
    /// problem without .NET's " (Parameter 'overrides')".</summary>
    public static TheoryData<string, int, string, string> ConventionCases =>
        new()
        {
            { "inspect --model gpt2-tiny --heads 5", 2, "width 128 is not divisible by heads 5", "{root}/none" },
            { "inspect --model gpt2-nope", 2, "unknown model 'gpt2-nope' (known: gpt2-tiny", "{root}/none" },
        };

    [Theory]
    [MemberData(nameof(Cases))]
    [MemberData(nameof(IntegrityCases))]
    [MemberData(nameof(RangeCases))]
    [MemberData(nameof(SilentCases))]
    [MemberData(nameof(MoreCases))]
    [MemberData(nameof(ConventionCases))]
    public void Bad_input_is_one_line_with_its_exit_code_and_writes_nothing(
        string command,
        int exit,
        string line,
        string absent
    )
    {
        var (code, output, error) = TestPaths.Run(Fill(command).Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.True(code == exit, $"exit {code}: {error}{output}");
        Assert.Single(error.Trim().Split('\n'));
        Assert.StartsWith("blr: " + Fill(line), error.Trim());
        Assert.DoesNotContain("   at ", error);
        Assert.DoesNotContain("Exception", error);
        foreach (var phrase in DotNetPhrases)
            Assert.DoesNotContain(phrase, error);
        Assert.False(Directory.Exists(Fill(absent)) || File.Exists(Fill(absent)), $"{Fill(absent)} was written");
    }

    /// <summary>Words of .NET's own exception messages, which must never reach a user (Cli Failures translates
    /// them).</summary>
    static readonly string[] DotNetPhrases =
    [
        "Could not find a part of the path",
        "was not in a correct format",
        "An item with the same key",
        "Access to the path",
        "(Parameter '",
        "The JSON value",
        "JsonSerializer",
        "Object reference not set",
        "Value was either too large or too small",
        "Specified argument",
        "check the disk",
        "internal error",
    ];

    /// <summary>A run whose loss stops being finite ends with exit 4 and still writes result.json, recording the
    /// divergence (the README's "every run writes result.json").</summary>
    [Fact]
    public void A_diverged_run_writes_result_json_recording_the_divergence()
    {
        var output = Path.Combine(files.Root, "diverged");
        var (code, _, error) = TestPaths.Run(
            Fill(
                    Train
                        + $" --out {output} --steps 4 --lr 100 --grad-clip 0 --ratios emb=1000,qk=1000,vo=1000,ffn=1000,norm=1000"
                )
                .Split(' ', StringSplitOptions.RemoveEmptyEntries)
        );
        Assert.True(code == 4, $"exit {code}: {error}");
        var result = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(output, "result.json")))!;
        Assert.Equal(error.Trim(), "blr: " + result["diverged"]!.GetValue<string>());
    }

    /// <summary>Every numeric flag of every subcommand shows its range in --help (from the core's table, which the
    /// checks read too): the flags are found by reflection over the CLI's Argu unions, the text in `blr CMD
    /// --help`.</summary>
    [Fact]
    public void Every_numeric_flag_of_every_subcommand_shows_its_range_in_help()
    {
        var cli = System.Reflection.Assembly.LoadFrom(TestPaths.Blr());
        var blrArgs = cli.GetType("BlockwiseLR.Cli.Arguments+BlrArgs", throwOnError: true)!;
        Type[] numeric = [typeof(int), typeof(long), typeof(ulong), typeof(double)];
        var checkedFlags = 0;
        foreach (
            var command in Microsoft.FSharp.Reflection.FSharpType.GetUnionCases(
                blrArgs,
                Microsoft.FSharp.Core.FSharpOption<System.Reflection.BindingFlags>.None
            )
        )
        {
            var fields = command.GetFields();
            if (fields.Length != 1 || !fields[0].PropertyType.IsGenericType)
                continue;
            var union = fields[0].PropertyType.GetGenericArguments()[0];
            var name = command.Name.ToLowerInvariant().Replace('_', '-');
            var (code, help, error) = TestPaths.Run([name, "--help"]);
            Assert.True(code == 0, $"{name} --help: exit {code}: {error}");
            foreach (
                var flag in Microsoft.FSharp.Reflection.FSharpType.GetUnionCases(
                    union,
                    Microsoft.FSharp.Core.FSharpOption<System.Reflection.BindingFlags>.None
                )
            )
            {
                var flagFields = flag.GetFields();
                if (flagFields.Length != 1 || !numeric.Contains(flagFields[0].PropertyType))
                    continue;
                var option = "--" + flag.Name.ToLowerInvariant().Replace('_', '-');
                // The flag's usage: its line and the indented lines that continue it.
                var lines = help.Split('\n');
                var at = Array.FindIndex(lines, l => l.TrimStart().StartsWith(option + " ", StringComparison.Ordinal));
                Assert.True(at >= 0, $"{name} --help lists no {option}");
                var usage = System.Text.RegularExpressions.Regex.Replace(
                    string.Join(
                        " ",
                        lines.Skip(at).TakeWhile((l, i) => i == 0 || l.StartsWith("     ", StringComparison.Ordinal))
                    ),
                    @"\s+",
                    " "
                );
                Assert.True(
                    System.Text.RegularExpressions.Regex.IsMatch(usage, @"range: (0 \([a-z]+\) or )?[<>]=? -?[0-9]"),
                    $"{name} {option} shows no range: {usage}"
                );
                checkedFlags++;
            }
        }
        Assert.True(checkedFlags > 40, $"only {checkedFlags} numeric flags found");
    }
}

/// `prepare` killed mid-way: the same command resumes where the last block was recorded and ends byte for byte as
/// an uninterrupted run; another command replaces the leftovers; --restart discards them.
public class PrepareKillTests
{
    // Tiny limits: pieces of 256 characters and blocks of 256 chunks of about 64 tokens, shards of 20,000 tokens, so
    // the built-in corpus streams through about 190 blocks and 160 shards, and a kill lands mid-stream.
    static readonly Dictionary<string, string> Limits = new() { ["BLR_PREPARE_LIMITS"] = "pieces=256,block=256" };
    static readonly string[] Small = ["--chunk-tokens", "64", "--shard-tokens", "20000"];

    static string[] Prepare(string output, params string[] extra) =>
        ["prepare", "--builtin", "gutenberg", "--out", output, .. Small, .. extra];

    static void KillAfterBlock(string output, int block, params string[] extra)
    {
        using var process = TestPaths.Start(
            Prepare(output, extra),
            fault: $"hang-after-block@{block}",
            environment: Limits
        );
        var line = process.StandardError.ReadLineAsync();
        if (!line.Wait(TimeSpan.FromMinutes(2)))
        {
            process.Kill();
            throw new TimeoutException("prepare never reached the fault point");
        }
        Assert.Equal($"BLR_FAULT: hang-after-block at step {block}", line.Result);
        process.Kill(); // SIGKILL while held after the block's state was saved: no cleanup runs
        process.WaitForExit();
    }

    static Dictionary<string, string> Files(string folder) =>
        Directory
            .GetFiles(folder)
            .ToDictionary(f => Path.GetFileName(f), f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int signal);

    /// <summary>Ctrl-C of prepare says in one line how to go on, exits 130, and the same command then resumes
    /// (issue 24: it printed nothing).</summary>
    [Fact]
    public void Ctrl_c_of_prepare_says_how_to_resume_and_the_same_command_resumes()
    {
        var dir = Directory.CreateTempSubdirectory("blr-prepare-int-").FullName;
        try
        {
            var output = Path.Combine(dir, "out");
            using (var process = TestPaths.Start(Prepare(output), fault: "hang-after-block@3", environment: Limits))
            {
                var line = process.StandardError.ReadLineAsync();
                Assert.True(line.Wait(TimeSpan.FromMinutes(2)), "prepare never reached the fault point");
                Assert.Equal("BLR_FAULT: hang-after-block at step 3", line.Result);
                Assert.Equal(0, kill(process.Id, 2)); // SIGINT, as the terminal sends on Ctrl-C
                Assert.True(process.WaitForExit(60_000), "prepare did not stop after SIGINT");
                Assert.Equal(130, process.ExitCode);
                Assert.Equal(
                    "blr: prepare interrupted; run the same command again to resume where it stopped (--restart starts over)",
                    process.StandardError.ReadToEnd().Trim()
                );
            }
            var (code, output2, error) = TestPaths.Run(Prepare(output), Limits);
            Assert.True(code == 0, error);
            Assert.Contains("resumed an interrupted prepare of the same inputs after block 3", output2);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void The_same_prepare_after_a_sigkill_resumes_and_ends_byte_for_byte_like_an_uninterrupted_one()
    {
        var dir = Directory.CreateTempSubdirectory("blr-prepare-kill-").FullName;
        try
        {
            var reference = Path.Combine(dir, "reference");
            var (code, _, error) = TestPaths.Run(Prepare(reference), Limits);
            Assert.True(code == 0, error);
            var expected = Files(reference);
            Assert.True(expected.Keys.Count(k => k.StartsWith("train_")) > 100, "the shards did not rotate");
            Assert.True(expected.Keys.Count(k => k.StartsWith("val_")) > 2, "the val shards did not rotate");

            var killed = Path.Combine(dir, "killed");
            KillAfterBlock(killed, 40);
            var staging = Assert.Single(Directory.GetDirectories(killed, ".prepare-*"));
            Assert.True(File.Exists(Path.Combine(staging, "state.json")));
            (code, var output, error) = TestPaths.Run(Prepare(killed), Limits);
            Assert.True(code == 0, error);
            Assert.Contains("resumed an interrupted prepare of the same inputs after block 40", output);
            Assert.Empty(Directory.GetDirectories(killed, ".prepare-*"));
            var actual = Files(killed);
            Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
            Assert.All(expected, kv => Assert.Equal(kv.Value, actual[kv.Key])); // shards, chunk index and manifest

            var other = Path.Combine(dir, "other");
            KillAfterBlock(other, 3);
            (code, output, error) = TestPaths.Run(Prepare(other, "--seed", "7"), Limits);
            Assert.True(code == 0, error);
            Assert.Contains("removed the staging folder of an interrupted prepare of other inputs or options", output);
            Assert.Empty(Directory.GetDirectories(other, ".prepare-*"));

            var restarted = Path.Combine(dir, "restarted");
            KillAfterBlock(restarted, 3);
            (code, output, error) = TestPaths.Run(Prepare(restarted, "--restart"), Limits);
            Assert.True(code == 0, error);
            Assert.Contains("discarded the staging folder of an interrupted prepare of the same inputs", output);
            var again = Files(restarted);
            Assert.All(expected, kv => Assert.Equal(kv.Value, again[kv.Key]));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
