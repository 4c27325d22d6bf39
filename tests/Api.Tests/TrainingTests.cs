using System.Diagnostics;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Training;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

public class TrainingTests(GutenbergShards gutenberg) : IClassFixture<GutenbergShards>
{
    /// A tiny model and run, one CPU thread, so that runs are deterministic and fast.
    string[] Tiny(string output, int steps) =>
        [
            "train",
            "--data",
            gutenberg.Directory,
            "--model",
            "gpt2-tiny",
            "--set",
            "layers=1",
            "--set",
            "width=32",
            "--set",
            "heads=2",
            "--steps",
            steps.ToString(),
            "--batch-size",
            "4",
            "--micro-batch-size",
            "2",
            "--seq-len",
            "16",
            "--lr",
            "3e-3",
            "--eval-every",
            "3",
            "--eval-windows",
            "4",
            "--threads",
            "1",
            "--seed",
            "5",
            "--out",
            output,
        ];

    static string Temp() => Directory.CreateTempSubdirectory("blr-train-").FullName;

    static List<string> Losses(string run) =>
        File.ReadAllLines(Path.Combine(run, "metrics.jsonl"))
            .Select(l => JsonNode.Parse(l)!["loss"]!.ToJsonString())
            .ToList();

    static Dictionary<string, Tensor> Weights(string checkpoint) =>
        Safetensors.LoadStateDict(Path.Combine(checkpoint, "model.safetensors"));

    static void WaitFor(Func<bool> condition, Process process, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (process.HasExited)
                throw new Exception(
                    $"blr exited ({process.ExitCode}) before {what}: {process.StandardError.ReadToEnd()}"
                );
            if (clock.Elapsed > TimeSpan.FromMinutes(2))
            {
                process.Kill();
                throw new TimeoutException(what);
            }
            Thread.Sleep(50);
        }
    }

    static void AssertSameWeights(string a, string b)
    {
        var (wa, wb) = (Weights(a), Weights(b));
        Assert.Equal(wa.Keys.Order(), wb.Keys.Order());
        Assert.All(wa, kv => Assert.True(kv.Value.eq(wb[kv.Key]).all().item<bool>(), kv.Key));
    }

    [Theory]
    [InlineData("paper", "--grad-clip", "1")]
    // The smoothed sharpness, the noise averages and the ratios are part of the checkpoint (smoothing 0.5 after a
    // 1-step warmup: ratios move from step 4 on, before and after the resume).
    [InlineData("auto:every=2,smoothing=0.5", "--warmup", "1")]
    [InlineData("paper", "--noise-scale-every", "1")] // so are the noise scale's moving averages
    public void A_run_killed_after_a_checkpoint_and_resumed_equals_an_uninterrupted_run_bit_for_bit(
        string ratios,
        string option,
        string value
    )
    {
        var dir = Temp();
        try
        {
            var whole = Path.Combine(dir, "whole");
            var (code, _, error) = TestPaths.Run([.. Tiny(whole, 8), "--ratios", ratios, option, value]);
            Assert.True(code == 0, error);

            var killed = Path.Combine(dir, "killed");
            using (
                var process = TestPaths.Start(
                    [.. Tiny(killed, 8), "--ratios", ratios, option, value, "--checkpoint-every", "4"],
                    fault: "hang-after-checkpoint@4"
                )
            )
            {
                WaitFor(
                    () => File.Exists(Path.Combine(killed, "checkpoints", "latest")),
                    process,
                    "the step-4 checkpoint"
                );
                process.Kill(); // SIGKILL
                process.WaitForExit();
            }
            Assert.Equal("step_0000004", File.ReadAllText(Path.Combine(killed, "checkpoints", "latest")));
            (code, _, error) = TestPaths.Run([
                .. Tiny(killed, 8),
                "--ratios",
                ratios,
                option,
                value,
                "--checkpoint-every",
                "4",
                "--resume",
                "latest",
            ]);
            Assert.True(code == 0, error);

            Assert.Equal(8, Losses(whole).Count);
            foreach (var field in new[] { "lr", "ratio", "noise_scale" })
                Assert.Equal(
                    File.ReadAllLines(Path.Combine(whole, "metrics.jsonl"))
                        .Select(l => JsonNode.Parse(l)![field]?.ToJsonString()),
                    File.ReadAllLines(Path.Combine(killed, "metrics.jsonl"))
                        .Select(l => JsonNode.Parse(l)![field]?.ToJsonString())
                );
            if (ratios.StartsWith("auto")) // ratios that moved after the resume
                Assert.Contains(
                    File.ReadAllLines(Path.Combine(killed, "metrics.jsonl"))
                        .Select(l => JsonNode.Parse(l)!)
                        .Where(l => l["step"]!.GetValue<int>() >= 5)
                        .SelectMany(l => l["ratio"]!.AsObject().Select(kv => kv.Value!.GetValue<double>())),
                    r => r != 1
                );
            if (option == "--noise-scale-every") // after the resume there are estimates to compare
                Assert.Contains(
                    File.ReadAllLines(Path.Combine(killed, "metrics.jsonl"))
                        .Select(l => JsonNode.Parse(l)!)
                        .Where(l => l["step"]!.GetValue<int>() >= 5)
                        .SelectMany(l => l["noise_scale"]!.AsObject().Select(kv => kv.Value)),
                    v => v is not null
                );
            Assert.Equal(Losses(whole), Losses(killed)); // every per-step loss, to the last bit
            Assert.Equal(
                File.ReadAllText(Path.Combine(whole, "evals.csv")),
                File.ReadAllText(Path.Combine(killed, "evals.csv"))
            );
            AssertSameWeights(
                Path.Combine(whole, "checkpoints", "step_0000008"),
                Path.Combine(killed, "checkpoints", "step_0000008")
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_kill_while_a_checkpoint_is_written_leaves_the_previous_one_loadable()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var folder = Path.Combine(run, "checkpoints");
            using (
                var process = TestPaths.Start(
                    [.. Tiny(run, 6), "--checkpoint-every", "2"],
                    fault: "hang-during-checkpoint@4"
                )
            )
            {
                // The step-4 checkpoint is half written: its model file exists in the temporary folder.
                WaitFor(
                    () =>
                        Directory.Exists(folder)
                        && Directory
                            .GetDirectories(folder, ".tmp-step_0000004-*")
                            .Any(d => File.Exists(Path.Combine(d, "model.safetensors"))),
                    process,
                    "the half-written step-4 checkpoint"
                );
                process.Kill();
                process.WaitForExit();
            }
            Assert.Equal("step_0000002", File.ReadAllText(Path.Combine(folder, "latest")));
            Assert.False(Directory.Exists(Path.Combine(folder, "step_0000004")));
            var (code, _, error) = TestPaths.Run([.. Tiny(run, 6), "--checkpoint-every", "2", "--resume", "latest"]);
            Assert.True(code == 0, error);
            Assert.Empty(Directory.GetDirectories(folder, ".tmp-*"));
            Assert.Contains("note: removed " + Path.Combine(folder, ".tmp-step_0000004-"), error);
            Assert.Contains("a checkpoint a process died writing", error);

            var whole = Path.Combine(dir, "whole");
            (code, _, error) = TestPaths.Run(Tiny(whole, 6));
            Assert.True(code == 0, error);
            Assert.Equal(Losses(whole), Losses(run));
            AssertSameWeights(Path.Combine(whole, "checkpoints", "step_0000006"), Path.Combine(folder, "step_0000006"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// The main job in its quick mode: three arms on one seed and corpus, the table names the ratios each trained
    /// with, auto's as it reached them at the end (read from its last checkpoint); its output, redirected, names each
    /// run before its progress lines.
    [Fact]
    public void The_quick_demo_trains_adamw_the_paper_ratios_and_auto_ratios_and_reports_all_three()
    {
        var dir = Temp();
        try
        {
            var (code, output, error) = TestPaths.Run(["demo", "--quick", "--out", dir, "--threads", "1"]);
            Assert.True(code == 0, error);
            var report = File.ReadAllText(Path.Combine(dir, "report.md"));
            foreach (var label in new[] { "adamw", "blockwise-adamw-paper", "blockwise-adamw-auto" })
            {
                Assert.Contains($"| {label} |", report);
                Assert.True(File.Exists(Path.Combine(dir, label, "result.json")), label);
            }
            Assert.Matches(@"\| blockwise-adamw-auto \|.*\| auto, at the end: emb \d+\.\d\d, ffn \d+\.\d\d", report);
            Assert.Contains("| blockwise-adamw-paper |", output);
            Assert.True(File.Exists(Path.Combine(dir, "loss.png")));
            ShowsEachRunAsPlainLines(output, ["adamw", "blockwise-adamw-paper", "blockwise-adamw-auto"], 40);
            // Then the committed sweep's map, printed and drawn, and the folder is the demo's own to run again.
            Assert.Contains("Where per-block ratios pay", output);
            Assert.Matches(@"\n\s+1,024\s+[\d,]+\s+\d+\.\d\d\s+\d\.\d{3}\s+[+-]\d\.\d{3} \(", output);
            Assert.True(File.Exists(Path.Combine(dir, "map.png")));
            (code, _, error) = TestPaths.Run(["demo", "--quick", "--out", dir, "--threads", "1"]);
            Assert.True(code == 0, error);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// Progress written to a redirected output (as TestPaths.Run captures it): each run named on its own line before
    /// its progress, then plain lines (no carriage-return redraws, no ANSI escapes) whose step and percentage never go
    /// back, one about every tenth of the run, then a one-line summary with its final val loss.
    static void ShowsEachRunAsPlainLines(string output, string[] runs, int steps)
    {
        Assert.DoesNotContain('\r', output);
        Assert.DoesNotContain('\u001b', output);
        var lines = output.Split('\n').ToList();
        var starts = runs.Select(run => lines.IndexOf($"{run}: starting")).ToList();
        Assert.All(starts, s => Assert.True(s >= 0, output));
        Assert.Equal(starts.Order(), starts); // in the order they ran
        for (var i = 0; i < runs.Length; i++)
        {
            var end = i + 1 < runs.Length ? starts[i + 1] : lines.Count;
            var own = lines.Skip(starts[i] + 1).Take(end - starts[i] - 1).ToList();
            var progress = own.Select(l =>
                    System.Text.RegularExpressions.Regex.Match(l, $@"^{runs[i]}: step (\d+)/{steps} \((\d+)%\), ")
                )
                .Where(m => m.Success)
                .Select(m => (Step: int.Parse(m.Groups[1].Value), Percent: int.Parse(m.Groups[2].Value)))
                .ToList();
            // A line every tenth of the run, before the last step.
            Assert.InRange(progress.Count, 5, 10);
            for (var k = 1; k < progress.Count; k++)
                Assert.True(
                    progress[k].Step > progress[k - 1].Step && progress[k].Percent > progress[k - 1].Percent,
                    string.Join("\n", own)
                );
            // No other run's lines inside this one's, and it ends with its summary.
            Assert.DoesNotContain(own, l =>
                runs.Any(r => r != runs[i] && l.StartsWith($"{r}: ", StringComparison.Ordinal))
            );
            Assert.Single(own, l =>
                System.Text.RegularExpressions.Regex.IsMatch(
                    l,
                    $@"^{runs[i]}: done, {steps} steps in .*, val loss \d+\.\d{{4}}$"
                )
            );
        }
    }

    /// `blr schedule` shows fixed ratios: the paper's when none are given (the training default, auto, is set during
    /// a run and cannot be shown ahead), and refuses auto in one line.
    [Fact]
    public void Schedule_shows_the_paper_ratios_by_default_and_refuses_auto()
    {
        var (code, output, error) = TestPaths.Run(["schedule", "--steps", "20", "--points", "3"]);
        Assert.True(code == 0, error);
        Assert.Contains("ratios emb=10,pe=1,qk=8,vo=4,ffn=6,norm=1", output);
        (code, _, error) = TestPaths.Run(["schedule", "--steps", "20", "--ratios", "auto"]);
        Assert.Equal(2, code);
        Assert.StartsWith("blr: --ratios auto:", error.Trim());
    }

    /// A run trained with --noise-scale-every logs the whole model's and each block's noise scale on the measured
    /// steps only, and `plot --noise-scale` draws it; a batch of one sequence cannot be split and is refused.
    [Fact]
    public void Noise_scale_every_logs_the_noise_scale_on_its_steps_and_plot_draws_it()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run([.. Tiny(run, 6), "--noise-scale-every", "2"]);
            Assert.True(code == 0, error);
            var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
            Assert.Equal(
                [1, 3, 5],
                lines.Where(l => l["noise_scale"] is not null).Select(l => l["step"]!.GetValue<int>())
            );
            var keys = lines[0]["noise_scale"]!.AsObject().Select(kv => kv.Key).Order();
            Assert.Equal(["all", "emb", "ffn", "norm", "pe", "qk", "vo"], keys);
            var png = Path.Combine(dir, "noise.png");
            (code, var output, error) = TestPaths.Run(["plot", "--run", run, "--noise-scale", "--out", png]);
            Assert.True(code == 0, error);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(png)[..4]);
            Assert.Contains(png, output);
            // A last line cut short (a run killed while writing it) is left out; two plots at once are refused.
            var metrics = Path.Combine(run, "metrics.jsonl");
            File.WriteAllText(metrics, File.ReadAllText(metrics)[..^40]);
            (code, _, error) = TestPaths.Run(["plot", "--run", run, "--noise-scale", "--out", png]);
            Assert.True(code == 0, error);
            (code, _, error) = TestPaths.Run(["plot", "--run", run, "--noise-scale", "--train", "--out", png]);
            Assert.Equal(2, code);
            Assert.Contains("give one of them", error);

            (code, _, error) = TestPaths.Run([
                .. Tiny(Path.Combine(dir, "one"), 2),
                "--noise-scale-every",
                "1",
                "--batch-size",
                "1",
                "--micro-batch-size",
                "1",
            ]);
            Assert.Equal(2, code);
            Assert.Contains("--noise-scale-every", error);
            Assert.Contains("at least 2 sequences", error);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// Lion keeps no second moment and Muon none for its matrices: `sharpness --preconditioned` on their runs is one
    /// line naming the optimizer, before anything is measured or written; without the flag it measures.
    [Theory]
    [InlineData("blockwise-lion")]
    [InlineData("blockwise-muon")]
    public void Sharpness_preconditioned_refuses_a_run_without_adams_second_moment(string optimizer)
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run([.. Tiny(run, 2), "--optimizer", optimizer, "--lr", "1e-4"]);
            Assert.True(code == 0, error);
            string[] sharpness =
            [
                "sharpness",
                "--run",
                run,
                "--data",
                gutenberg.Directory,
                "--batches",
                "1",
                "--batch-size",
                "2",
                "--seq-len",
                "16",
                "--threads",
                "1",
            ];
            (code, _, error) = TestPaths.Run([.. sharpness, "--preconditioned"]);
            Assert.Equal(2, code);
            Assert.Single(error.Trim().Split('\n'));
            Assert.Contains($"trained with {optimizer}", error);
            Assert.False(File.Exists(Path.Combine(run, "sharpness.csv")));
            (code, _, error) = TestPaths.Run(sharpness);
            Assert.True(code == 0, error);
            Assert.True(File.Exists(Path.Combine(run, "sharpness.csv")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// A run trained with --sharpness-every: `plot --sharpness` draws it; `sharpness --preconditioned` measures the
    /// curvature Adam steps against from the checkpoint's optimizer state, for every block.
    [Fact]
    public void Plot_sharpness_draws_a_runs_logged_sharpness_and_sharpness_measures_the_preconditioned_curvature()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run([.. Tiny(run, 6), "--sharpness-every", "2"]);
            Assert.True(code == 0, error);
            var png = Path.Combine(dir, "sharpness.png");
            (code, var output, error) = TestPaths.Run(["plot", "--run", run, "--sharpness", "--out", png]);
            Assert.True(code == 0, error);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(png)[..4]);
            Assert.Contains(png, output);

            (code, output, error) = TestPaths.Run([
                "sharpness",
                "--run",
                run,
                "--data",
                gutenberg.Directory,
                "--batches",
                "2",
                "--batch-size",
                "2",
                "--seq-len",
                "16",
                "--preconditioned",
                "--threads",
                "1",
            ]);
            Assert.True(code == 0, error);
            var csv = File.ReadAllLines(Path.Combine(run, "sharpness.csv"));
            Assert.Equal(
                "step,block,proxy,proxy_stderr,hutchinson,hutchinson_stderr,preconditioned,preconditioned_stderr",
                csv[0]
            );
            Assert.All(csv.Skip(1), line =>
                Assert.True(
                    double.Parse(line.Split(',')[6], System.Globalization.CultureInfo.InvariantCulture) is var v
                        && double.IsFinite(v),
                    line
                )
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Ctrl_c_writes_a_checkpoint_then_exits_130_and_the_run_resumes()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            string hint;
            using (var process = TestPaths.Start(Tiny(run, 400)))
            {
                WaitFor(
                    () =>
                        File.Exists(Path.Combine(run, "metrics.jsonl"))
                        && File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length >= 3,
                    process,
                    "three training steps"
                );
                using (var kill = Process.Start("kill", ["-INT", process.Id.ToString()]))
                    kill.WaitForExit();
                Assert.True(process.WaitForExit(60_000), "blr did not stop after SIGINT");
                Assert.Equal(130, process.ExitCode);
                hint = Assert.Single(process.StandardError.ReadToEnd().Trim().Split('\n'));
            }
            var latest = File.ReadAllText(Path.Combine(run, "checkpoints", "latest"));
            var result = PretrainResult.FromJsonFile(Path.Combine(run, "result.json"));
            Assert.True(result.Interrupted);
            // The one line names the step and checkpoint and the exact command that resumes (run below).
            var resume =
                $"blr: interrupted after step {result.Steps}, checkpoint {Path.Combine(run, "checkpoints", latest)}; resume with: blr ";
            Assert.StartsWith(resume, hint);
            string[] command = hint[resume.Length..].Split(' ');
            Assert.Equal([.. Tiny(run, 400), "--resume", "latest"], command);
            Assert.Equal($"step_{result.Steps:D7}", latest);
            Assert.Equal(result.Steps, Losses(run).Count);
            Assert.True(result.Steps < 400, "the run ended before SIGINT arrived");
            var (code, _, error) = TestPaths.Run(command); // the same options: the same trajectory
            Assert.True(code == 0, error);
            Assert.Equal(400, Losses(run).Count);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    public static TheoryData<string, string[], string> BadConfigurations() =>
        new()
        {
            { "unknown model", ["--model", "gpt5"], "unknown model 'gpt5'" },
            { "heads not dividing the width", ["--set", "heads=3"], "width 32 is not divisible by heads 3" },
            { "lr <= 0", ["--lr", "0"], "--lr 0: must be a finite number > 0" },
            {
                "a ratio <= 0",
                ["--optimizer", "blockwise-adamw", "--ratios", "emb=0"],
                "ratios 'emb=0': emb=0 must be a finite number > 0"
            },
            {
                "batch not divisible by the micro-batch",
                ["--batch-size", "6", "--micro-batch-size", "4"],
                "--micro-batch-size 4: must divide the batch size (6)"
            },
            { "missing data folder", ["--data", "/nonexistent/shards"], "--data /nonexistent/shards: no such folder" },
            { "unknown precision", ["--precision", "fp8"], "unknown precision 'fp8'" },
        };

    [Theory]
    [MemberData(nameof(BadConfigurations))]
    public void Bad_configuration_is_one_line_exit_2_and_writes_nothing(string what, string[] extra, string message)
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run([.. Tiny(run, 2), .. extra]);
            Assert.Equal(2, code);
            Assert.StartsWith("blr: ", error);
            Assert.Contains(message, error);
            Assert.Equal(1, error.Count(c => c == '\n'));
            Assert.False(Directory.Exists(run), $"{what}: the run folder was created");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Resuming_a_checkpoint_of_another_model_is_refused_and_writes_nothing()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run(Tiny(run, 2));
            Assert.True(code == 0, error);
            var before = Directory
                .GetFileSystemEntries(run, "*", SearchOption.AllDirectories)
                .Select(f => (f, File.Exists(f) ? File.GetLastWriteTimeUtc(f) : default))
                .ToList();
            (code, _, error) = TestPaths.Run([.. Tiny(run, 4), "--set", "layers=2", "--resume", "latest"]);
            Assert.Equal(2, code);
            Assert.Contains("holds another model (GPT-2, 1 layers", error);
            Assert.Contains("not the one asked for (GPT-2, 2 layers", error);
            Assert.Equal(
                before,
                Directory
                    .GetFileSystemEntries(run, "*", SearchOption.AllDirectories)
                    .Select(f => (f, File.Exists(f) ? File.GetLastWriteTimeUtc(f) : default))
                    .ToList()
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Options_come_from_a_config_file_overridden_by_the_command_line_and_are_saved_with_the_run()
    {
        var dir = Temp();
        try
        {
            var config = Path.Combine(dir, "config.json");
            File.WriteAllText(config, """{ "steps": 1, "optimizer": "adam-mini", "lr": 0.002 }""");
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run([.. Tiny(run, 2), "--config", config, "--lr", "0.004"]);
            Assert.True(code == 0, error);
            var saved = PretrainOptions.FromJsonFile(Path.Combine(run, "options.json"));
            Assert.Equal(
                (OptimizerKind.AdamMini, 0.004, 2),
                (saved.Optimizer.Kind, saved.Schedule.Lr, saved.Training.Steps)
            );
            File.WriteAllText(config, """{ "stepz": 1 }""");
            (code, _, error) = TestPaths.Run(["train", "--config", config, "--out", Path.Combine(dir, "never")]);
            Assert.Equal(2, code);
            Assert.Contains("stepz", error);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// Resuming a run that is already complete trains no step: its result.json keeps the speed the run measured
    /// (not null) and the rest of the result.
    [Fact]
    public void Resuming_a_complete_run_keeps_its_measured_speed_in_result_json()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run(Tiny(run, 2));
            Assert.True(code == 0, error);
            var before = PretrainResult.FromJsonFile(Path.Combine(run, "result.json"));
            Assert.True(double.IsFinite(before.TokensPerSecond!.Value) && before.TokensPerSecond > 0);
            (code, _, error) = TestPaths.Run([.. Tiny(run, 2), "--resume", "latest"]);
            Assert.True(code == 0, error);
            var after = PretrainResult.FromJsonFile(Path.Combine(run, "result.json"));
            Assert.Equal(before.TokensPerSecond, after.TokensPerSecond);
            Assert.Equal(before.MillisecondsPerStep, after.MillisecondsPerStep);
            Assert.Equal((before.Steps, before.FinalValLoss), (after.Steps, after.FinalValLoss));
            Assert.Equal(before.TrainLosses, after.TrainLosses);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// The same resume with the earlier result.json gone times no step and has no speed to keep: the speed is null
    /// (not NaN) in result.json and "none" in the summary; the val losses, measured before, are kept.
    [Fact]
    public void Resuming_a_complete_run_without_its_result_json_has_no_speed_and_says_none()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run(Tiny(run, 2));
            Assert.True(code == 0, error);
            var before = PretrainResult.FromJsonFile(Path.Combine(run, "result.json"));
            File.Delete(Path.Combine(run, "result.json"));
            (code, var output, error) = TestPaths.Run([.. Tiny(run, 2), "--resume", "latest"]);
            Assert.True(code == 0, error);
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(run, "result.json")))!;
            Assert.True(json.AsObject().ContainsKey("tokensPerSecond"));
            Assert.Null(json["tokensPerSecond"]);
            Assert.Null(json["millisecondsPerStep"]);
            var after = PretrainResult.FromJsonFile(Path.Combine(run, "result.json"));
            Assert.Equal((null, null), (after.TokensPerSecond, after.MillisecondsPerStep));
            Assert.Equal((before.FinalValLoss, before.BestValLoss), (after.FinalValLoss, after.BestValLoss));
            Assert.Matches(@"ms/step\W+none", output);
            Assert.Matches(@"tokens/s\W+none", output);
            Assert.Matches(@"final val loss\W+\d+\.\d{4}", output);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Top_k_and_top_p_keep_the_tokens_a_hand_computation_keeps()
    {
        using var scope = NewDisposeScope();
        // softmax([0, 1, 2, 3]) = [0.032, 0.087, 0.237, 0.644]
        var logits = tensor(new float[] { 0, 1, 2, 3 });
        bool[] Kept(int k, double p) => TextGenerator.Filter(logits, k, p).isfinite().data<bool>().ToArray();
        Assert.Equal([false, false, true, true], Kept(2, 1.0));
        Assert.Equal([false, false, false, true], Kept(0, 0.5)); // 0.644 alone reaches 0.5
        Assert.Equal([false, false, true, true], Kept(0, 0.7)); // 0.644 < 0.7, 0.881 >= 0.7
        Assert.Equal([false, true, true, true], Kept(0, 0.9)); // 0.881 < 0.9
        Assert.Equal([true, true, true, true], Kept(0, 1.0));
        Assert.Equal([false, false, false, true], Kept(3, 0.5));
    }

    [Fact]
    public void Eval_sample_and_export_work_on_a_trained_run()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run(Tiny(run, 3));
            Assert.True(code == 0, error);
            var result = PretrainResult.FromJsonFile(Path.Combine(run, "result.json"));
            // The same 4 windows of 16 tokens as the run's own final evaluation, through the eval command's path.
            var eval = Evaluation.Run(run, gutenberg.Directory, null, seqLen: 16, batchSize: 2, maxWindows: 4);
            Assert.Equal(result.FinalValLoss!.Value, eval.Loss, 5);
            Assert.Equal(Math.Exp(eval.Loss), eval.Perplexity, 6);

            string Generate(double temperature, int k, ulong seed) =>
                TextGenerator.Generate(run, "The whale", 12, temperature, k, 1.0, seed);
            Assert.Equal(Generate(0.8, 0, 7), Generate(0.8, 0, 7)); // seeded
            Assert.Equal(Generate(0, 0, 1), Generate(1.0, 1, 2)); // top-k 1 is greedy, whatever the seed
            Assert.StartsWith("The whale", Generate(0, 0, 1));

            var exported = Path.Combine(dir, "hf");
            (code, _, error) = TestPaths.Run(["export-hf", "--from", run, "--out", exported]);
            Assert.True(code == 0, error);
            Assert.Contains(
                "transformer.h.0.attn.c_attn.weight",
                File.ReadAllText(Path.Combine(exported, "model.safetensors"))[..2000]
            );
            AssertSameWeights(Path.Combine(exported), Path.Combine(run, "checkpoints", "step_0000003"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Compare_runs_every_optimizer_over_every_seed_against_the_best_adamw_at_2n()
    {
        var dir = Temp();
        try
        {
            var common = new PretrainOptions
            {
                Model = new()
                {
                    Name = "gpt2-tiny",
                    Overrides = new()
                    {
                        Layers = 1,
                        Width = 16,
                        Heads = 2,
                    },
                },
                Data = new() { Path = gutenberg.Directory },
                Training = new()
                {
                    Steps = 4,
                    BatchSize = 2,
                    SeqLen = 16,
                    Threads = 1,
                },
                Evaluation = new() { Every = 2, Windows = 2 },
                Run = new() { Out = dir },
            };
            var report = Reporting.Comparison.Compare(
                new Reporting.CompareOptions
                {
                    Common = common,
                    Optimizers = [OptimizerKind.BlockwiseAdamW, OptimizerKind.AdamMini],
                    Seeds = [1, 2],
                    LrSweep = [1e-3, 3e-3],
                }
            );
            Assert.Equal(2, report.Sweep.Count);
            Assert.Same(report.Sweep.MinBy(s => s.MeanFinal), report.Baseline);
            Assert.All(report.Baseline.Runs, r => Assert.Equal([2, 4, 6, 8], r.Evals.Select(e => e.Step)));
            Assert.All(report.Rows, row =>
            {
                Assert.Equal(report.Baseline.Lr, row.Lr);
                Assert.Equal(2, row.Runs.Count);
                Assert.NotEqual(row.Runs[0].FinalValLoss, row.Runs[1].FinalValLoss); // the seeds differ
                Assert.Equal(
                    (row.Runs[0].Evals[^1].ValLoss + row.Runs[1].Evals[^1].ValLoss) / 2,
                    row.MeanCurve[^1].ValLoss,
                    12
                );
            });
            Assert.True(File.Exists(report.Png) && File.Exists(report.Markdown) && File.Exists(report.Json));
            Assert.Contains("| adam-mini | 4 |", File.ReadAllText(report.Markdown));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Sharpness_measures_every_kept_checkpoint_with_both_estimators()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run([
                .. Tiny(run, 4),
                "--checkpoint-every",
                "2",
                "--keep-checkpoints",
                "3",
            ]);
            Assert.True(code == 0, error);
            (code, var output, error) = TestPaths.Run([
                "sharpness",
                "--run",
                run,
                "--data",
                gutenberg.Directory,
                "--batches",
                "2",
                "--batch-size",
                "2",
                "--seq-len",
                "16",
                "--hutchinson",
            ]);
            Assert.True(code == 0, error);
            var csv = File.ReadAllLines(Path.Combine(run, "sharpness.csv"));
            Assert.Equal(1 + 2 * 6, csv.Length); // steps 2 and 4, six blocks each (tied head: no OutputHead)
            // The proxy is a squared norm (>= 0); Hutchinson's mean may be negative (the Hessian is not PSD); all
            // finite.
            Assert.All(csv.Skip(1), line =>
            {
                var fields = line.Split(',');
                Assert.Equal(["", ""], fields[6..]); // no preconditioned estimate unless asked for
                var v = fields[2..6]
                    .Select(x => double.Parse(x, System.Globalization.CultureInfo.InvariantCulture))
                    .ToArray();
                Assert.True(v.All(double.IsFinite) && v[0] >= 0 && v[1] >= 0 && v[3] >= 0, line);
            });
            Assert.Contains("step 4, proxy, flattest first: ", output);
            Assert.Contains("step 4, hutchinson, flattest first: ", output);
            Assert.True(File.Exists(Path.Combine(run, "sharpness.png")));

            // --sharpness-every logs the proxy per block from the step's own gradients.
            var logged = Path.Combine(dir, "logged");
            (code, _, error) = TestPaths.Run([.. Tiny(logged, 4), "--sharpness-every", "2"]);
            Assert.True(code == 0, error);
            var lines = File.ReadAllLines(Path.Combine(logged, "metrics.jsonl"))
                .Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!)
                .ToList();
            Assert.Equal([true, false, true, false], lines.Select(l => l["sharpness"] is not null));
            Assert.All(lines.Where(l => l["sharpness"] is not null), l =>
                Assert.Equal(
                    l["grad_norm"]!.AsObject().Select(kv => kv.Key).Order(),
                    l["sharpness"]!.AsObject().Select(kv => kv.Key).Order()
                )
            );
            Assert.All(lines.Where(l => l["sharpness"] is not null).SelectMany(l => l["sharpness"]!.AsObject()), kv =>
                Assert.True(kv.Value!.GetValue<double>() is > 0 and < double.PositiveInfinity, kv.Key)
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// Process RSS is measured by `Benchmarks --memory` (README): inside the test host it is too noisy to assert.
    [Fact]
    public void Live_tensors_stay_constant_over_1000_steps()
    {
        var dir = Temp();
        try
        {
            var options = new PretrainOptions
            {
                Model = new()
                {
                    Name = "gpt2-tiny",
                    Overrides = new()
                    {
                        Layers = 1,
                        Width = 16,
                        Heads = 2,
                    },
                },
                Data = new() { Path = gutenberg.Directory },
                Training = new()
                {
                    Steps = 1001,
                    BatchSize = 2,
                    SeqLen = 8,
                    Threads = 1,
                },
                Evaluation = new() { Every = 250, Windows = 2 },
                Run = new() { Out = Path.Combine(dir, "run") },
            };
            var live = new Dictionary<int, long>();
            Pretrainer.Run(
                options,
                new SynchronousProgress<TrainProgress>(p =>
                {
                    if (p.Step is 10 or 200 or 1000)
                        live[p.Step] = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
                })
            );
            Assert.Equal(live[10], live[200]);
            Assert.Equal(live[10], live[1000]);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// Reports on the trainer's thread, as it happens.
    /// A model that notes the live tensor count at every forward: what evaluation keeps from earlier batches.
    sealed class Counting(nn.Module<Tensor, Tensor> inner) : nn.Module<Tensor, Tensor>("counting")
    {
        public List<long> Live { get; } = [];

        public override Tensor forward(Tensor x)
        {
            Live.Add(DisposeScopeManager.Statistics.ThreadTotalLiveCount);
            return inner.forward(x);
        }
    }

    [Fact]
    public void Evaluation_frees_each_batch_so_live_tensors_do_not_grow_with_the_batches()
    {
        TorchRuntime.EnsureAvailable();
        using var model = Models.LanguageModel.Create(
            Models.ModelConfigs.Create(
                "gpt2-tiny",
                new BlockwiseLR.ModelOverrides
                {
                    Layers = 1,
                    Width = 32,
                    Heads = 2,
                }
            ),
            seed: 1
        );
        using var val = Data.TokenDataset.Open(gutenberg.Directory, "val");
        var counting = new Counting(model);
        var (loss, windows) = Evaluation.MeanLoss(counting, val, 32, 2, 16, null);
        Assert.Equal(16, windows);
        Assert.True(double.IsFinite(loss));
        Assert.Equal(8, counting.Live.Count);
        Assert.All(counting.Live, live => Assert.Equal(counting.Live[0], live));
    }
}
