using System.Security.Cryptography;
using BlockwiseLR.Training;

namespace BlockwiseLR.Tests;

/// Failures a user or the machine causes end in one line, a documented exit code, and nothing of the user's lost.
public class FailureTests(GutenbergShards gutenberg) : IClassFixture<GutenbergShards>
{
    string[] Tiny(string run, int steps = 2) =>
    [
        "train", "--data", gutenberg.Directory, "--set", "layers=1", "--set", "width=16", "--set", "heads=2", "--steps", steps.ToString(),
        "--batch-size", "2", "--seq-len", "8", "--eval-every", "0", "--eval-windows", "1", "--threads", "1", "--out", run,
    ];

    static Dictionary<string, string> Snapshot(string folder) =>
        Directory.GetFiles(folder, "*", SearchOption.AllDirectories)
            .ToDictionary(f => Path.GetRelativePath(folder, f), f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));

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
            Assert.Equal($"blr: --out {run}: already holds a run; resume it (--resume latest) or replace it (--overwrite)", error.Trim());
            Assert.Equal(before, Snapshot(run));

            // From C#: the same refusal, naming the property.
            var refused = Assert.Throws<InvalidOptionException>(() => Pretrainer.Run(PretrainOptions.FromJsonFile(Path.Combine(run, "options.json"))));
            Assert.Equal("Out", refused.Option);
            Assert.Equal(before, Snapshot(run));

            // --overwrite replaces the run: its files are the new run's, and a file of the user's stays.
            File.WriteAllText(Path.Combine(run, "notes.txt"), "mine");
            (code, _, error) = TestPaths.Run([.. Tiny(run, 3), "--overwrite"]);
            Assert.True(code == 0, error);
            Assert.Equal(3, File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length);
            Assert.Equal("mine", File.ReadAllText(Path.Combine(run, "notes.txt")));
        }
        finally { Directory.Delete(dir, true); }
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
            (code, _, error) = TestPaths.Run([.. Tiny(run, 4), "--batch-size", "4", "--seq-len", "16", "--resume", "latest"]);
            Assert.Equal(2, code);
            AssertOneLine(error);
            Assert.StartsWith($"blr: --resume latest: {run}/checkpoints/step_0000004 was trained with other options (batchSize 2 -> 4; seqLen 8 -> 16)", error.Trim());
            Assert.Equal(before, Snapshot(run));
            // Cadences may change.
            (code, _, error) = TestPaths.Run([.. Tiny(run, 4), "--eval-every", "2", "--keep-checkpoints", "3", "--resume", "latest"]);
            Assert.True(code == 0, error);
        }
        finally { Directory.Delete(dir, true); }
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
        finally { File.Delete(file); }
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
            Assert.Contains("at BlockwiseLR.Training.Trainer.Run", File.ReadAllText(log));
            File.Delete(log);
            Assert.False(Directory.Exists(run));
        }
        finally { Directory.Delete(dir, true); }
    }
}
