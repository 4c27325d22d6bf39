using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Distributed;
using Microsoft.FSharp.Collections;
using static BlockwiseLR.Core.MpiLaunch;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

/// The MPI runs start several CPU-heavy processes each: alone, after the tests that run in parallel.
[CollectionDefinition(nameof(DataParallelTests), DisableParallelization = true)]
public sealed class DataParallelCollection : ICollectionFixture<GutenbergShards>;

/// Data-parallel training under mpirun (OpenMPI, installed by the set-up), through `blr train --nproc` as a user
/// runs it. The reference is always a one-process run of the same options: with 1 thread per process and two
/// ranks, the floating-point additions happen in the same order, so equality is exact.
[Collection(nameof(DataParallelTests))]
public class DataParallelTests(GutenbergShards gutenberg)
{
    string[] Train(string run, int steps, int batch = 4, params string[] extra) =>
        [
            "train",
            "--data",
            gutenberg.Directory,
            "--set",
            "layers=2",
            "--set",
            "width=64",
            "--set",
            "heads=2",
            "--steps",
            steps.ToString(),
            "--batch-size",
            batch.ToString(),
            "--micro-batch-size",
            "2",
            "--seq-len",
            "32",
            "--eval-every",
            "0",
            "--eval-windows",
            "4",
            "--threads",
            "1",
            "--out",
            run,
            .. extra,
        ];

    /// `train --nproc N EXTRA ...` from the arguments of a one-process `train`.
    static string[] Nproc(int processes, string[] extra, string[] train) =>
        ["train", "--nproc", processes.ToString(), .. extra, .. train[1..]];

    static string Temp(string name) => Directory.CreateTempSubdirectory($"blr-dp-{name}-").FullName;

    static void Ok((int Code, string Output, string Error) result) =>
        Assert.True(result.Code == 0, $"exit {result.Code}: {result.Error}");

    static List<JsonObject> Metrics(string run) =>
        File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();

    /// What must not depend on the number of processes, per step: loss, per-block LRs, gradient norms, auto ratios.
    static string Trajectory(JsonObject line) =>
        string.Join(
            " ",
            new[] { "step", "loss", "lr", "grad_norm", "ratio" }.Select(k => $"{k}={line[k]?.ToJsonString()}")
        );

    /// What the mpirun on PATH is (from its --version), as the launcher reads it.
    static MpiLaunch.Mpirun InstalledMpirun()
    {
        var info = new ProcessStartInfo("mpirun", ["--version"]) { RedirectStandardOutput = true };
        using var process = Process.Start(info)!;
        var text = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var found = MpiLaunch.identify(text);
        Assert.True(found.IsOk, found.IsOk ? "" : found.ErrorValue);
        return found.ResultValue;
    }

    /// Standard error of a plain mpirun with mpirun's own reports (its banners, which Open MPI 5 cannot be told to
    /// drop) taken out: what the ranks said.
    static string WithoutMpirunBanners(string error)
    {
        var kept = new List<string>();
        var inBanner = false;
        foreach (var line in error.Split('\n'))
            if (MpiLaunch.isBannerRule(line))
                inBanner = !inBanner;
            else if (!inBanner && line.Trim().Length > 0)
                kept.Add(line.TrimEnd());
        return string.Join("\n", kept);
    }

    static string Checkpoint(string run, int step) => Path.Combine(run, "checkpoints", $"step_{step:D7}");

    static void SameFiles(string expected, string actual)
    {
        foreach (var file in new[] { "model.safetensors", "optimizer.safetensors" })
            Assert.True(
                File.ReadAllBytes(Path.Combine(expected, file))
                    .SequenceEqual(File.ReadAllBytes(Path.Combine(actual, file))),
                $"{file} of {actual} differs from {expected}"
            );
    }

    static long StateBytes(string run) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(run, "result.json")))!["optimizerStateBytes"]!.GetValue<long>();

    [Theory]
    [InlineData("blockwise-adamw", "paper")]
    [InlineData("blockwise-adam-mini", "paper")]
    [InlineData("blockwise-adamw", "auto:every=1,smoothing=0.5")] // ratios move from step 3 on
    [InlineData("blockwise-lion", "paper")]
    [InlineData("blockwise-muon", "paper")] // under ZeRO-1 each rank orthogonalizes the whole matrices it owns
    [InlineData("blockwise-muon", "auto:every=1,smoothing=0.5")]
    public void Two_processes_equal_one_bit_for_bit_with_and_without_zero_1(string optimizer, string ratios)
    {
        var dir = Temp("equal");
        try
        {
            string[] opts = ["--optimizer", optimizer, "--ratios", ratios];
            var (one, zero0, zero1) = (
                Path.Combine(dir, "one"),
                Path.Combine(dir, "zero0"),
                Path.Combine(dir, "zero1")
            );
            Ok(TestPaths.Run(Train(one, 5, extra: opts)));
            Ok(TestPaths.Run(Nproc(2, [], Train(zero0, 5, extra: opts))));
            Ok(TestPaths.Run(Nproc(2, ["--zero", "1"], Train(zero1, 5, extra: opts))));

            var expected = Metrics(one).Select(Trajectory).ToList();
            Assert.Equal(5, expected.Count);
            if (ratios.StartsWith("auto"))
                Assert.Contains(
                    Metrics(one).SelectMany(l => l["ratio"]!.AsObject().Select(kv => kv.Value!.GetValue<double>())),
                    r => r != 1
                );
            foreach (var run in new[] { zero0, zero1 })
            {
                Assert.Equal(expected, Metrics(run).Select(Trajectory).ToList());
                SameFiles(Checkpoint(one, 5), Checkpoint(run, 5));
                Assert.All(Metrics(run), line => Assert.NotNull(line["comm_ms"]));
                // The final evaluation, split over the ranks (a batch each) and summed, in the same order.
                Assert.Equal(
                    File.ReadAllText(Path.Combine(one, "evals.csv")),
                    File.ReadAllText(Path.Combine(run, "evals.csv"))
                );
            }

            // ZeRO-1: rank 0 keeps about half the state (measured from its buffers), and inspect's plan of the
            // shards, made on the meta device, says the same bytes for rank 0 and adds up to the whole.
            var (whole, sharded) = (StateBytes(one), StateBytes(zero1));
            Assert.Equal(whole, StateBytes(zero0));
            Assert.InRange((double)sharded / whole, 0.35, 0.65);
            var inspect = TestPaths.Run([
                "inspect",
                "--model",
                "gpt2-tiny",
                "--layers",
                "2",
                "--width",
                "64",
                "--heads",
                "2",
                "--optimizer",
                optimizer,
                "--zero",
                "1",
                "--nproc",
                "2",
            ]);
            Ok(inspect);
            var perRank = inspect
                .Output.Split('\n')
                .Where(l => l.TrimStart().StartsWith("rank "))
                .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2].Replace(",", "")))
                .ToList();
            Assert.Equal(2, perRank.Count);
            Assert.Equal(sharded, perRank[0]);
            Assert.Equal(whole, perRank.Sum());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void One_process_through_mpi_collectives_equals_one_without()
    {
        var dir = Temp("mpi1");
        try
        {
            var (plain, mpi) = (Path.Combine(dir, "plain"), Path.Combine(dir, "mpi"));
            Ok(TestPaths.Run(Train(plain, 3)));
            // An MPI singleton: every collective runs, over one rank.
            Ok(TestPaths.Run(Train(mpi, 3), new Dictionary<string, string> { ["BLR_PROCESS_GROUP"] = "mpi" }));
            Assert.Equal(Metrics(plain).Select(Trajectory), Metrics(mpi).Select(Trajectory));
            Assert.All(Metrics(mpi), line => Assert.NotNull(line["comm_ms"]));
            SameFiles(Checkpoint(plain, 3), Checkpoint(mpi, 3));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("blockwise-adamw")]
    [InlineData("blockwise-lion")]
    [InlineData("blockwise-muon")]
    public void A_run_saved_at_two_processes_resumes_at_one_and_the_other_way_bit_for_bit(string optimizer)
    {
        var dir = Temp("resume");
        try
        {
            var (one, two) = (Path.Combine(dir, "one"), Path.Combine(dir, "two"));
            string[] opts = ["--optimizer", optimizer, "--checkpoint-every", "3"];
            Ok(TestPaths.Run(Train(one, 6, extra: opts)));
            Ok(TestPaths.Run(Nproc(2, [], Train(two, 6, extra: opts))));

            // 2 processes to step 3, then 1 process to 6; and 1 process to 3, then 2 processes with ZeRO-1 to 6.
            var (twoThenOne, oneThenTwo) = (Path.Combine(dir, "two-one"), Path.Combine(dir, "one-two"));
            Ok(TestPaths.Run(Train(twoThenOne, 6, extra: ["--optimizer", optimizer, "--resume", Checkpoint(two, 3)])));
            Ok(
                TestPaths.Run(
                    Nproc(
                        2,
                        ["--zero", "1"],
                        Train(oneThenTwo, 6, extra: ["--optimizer", optimizer, "--resume", Checkpoint(one, 3)])
                    )
                )
            );

            var uninterrupted = Metrics(one).Select(Trajectory).ToList();
            foreach (var resumed in new[] { twoThenOne, oneThenTwo })
            {
                Assert.Equal(uninterrupted.Skip(3), Metrics(resumed).Select(Trajectory));
                SameFiles(Checkpoint(one, 6), Checkpoint(resumed, 6));
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// A run at 2 processes with the default micro-batch (the batch over the processes: 1 sequence) resumed at 1
    /// process keeps that micro-batch (the default there would be 2, another order of the gradient sums) and says
    /// so; giving it, --micro-batch-size 1, is the same resume. Both go on bit for bit.
    [Fact]
    public void A_resume_at_another_number_of_processes_keeps_the_checkpoints_micro_batch()
    {
        var dir = Temp("micro");
        try
        {
            string[] Default(string run, params string[] extra)
            {
                var args = Train(run, 6, batch: 2, extra: ["--checkpoint-every", "3", .. extra]).ToList();
                var at = args.IndexOf("--micro-batch-size");
                args.RemoveRange(at, 2);
                return [.. args];
            }
            var (one, two, kept, given) = (
                Path.Combine(dir, "one"),
                Path.Combine(dir, "two"),
                Path.Combine(dir, "kept"),
                Path.Combine(dir, "given")
            );
            Ok(TestPaths.Run(Default(one, "--micro-batch-size", "1")));
            Ok(TestPaths.Run(Nproc(2, [], Default(two))));
            var (code, _, error) = TestPaths.Run(Default(kept, "--resume", Checkpoint(two, 3)));
            Assert.True(code == 0, error);
            Assert.Contains(
                "note: resuming with the checkpoint's micro-batches of 1 sequence per process (2 a step at 1 process)",
                error
            );
            Ok(TestPaths.Run(Default(given, "--resume", Checkpoint(two, 3), "--micro-batch-size", "1")));
            var uninterrupted = Metrics(one).Select(Trajectory).ToList();
            foreach (var resumed in new[] { kept, given })
            {
                Assert.Equal(uninterrupted.Skip(3), Metrics(resumed).Select(Trajectory));
                SameFiles(Checkpoint(one, 6), Checkpoint(resumed, 6));
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Three_processes_agree_with_one_within_float_reordering()
    {
        var dir = Temp("three");
        try
        {
            var (one, three) = (Path.Combine(dir, "one"), Path.Combine(dir, "three"));
            Ok(TestPaths.Run(Train(one, 6, batch: 6)));
            Ok(TestPaths.Run(Nproc(3, [], Train(three, 6, batch: 6)))); // 3 ranks on 2 cores: --oversubscribe
            var (a, b) = (Metrics(one), Metrics(three));
            Assert.Equal(6, b.Count);
            foreach (var (x, y) in a.Zip(b))
            {
                var (lx, ly) = (x["loss"]!.GetValue<double>(), y["loss"]!.GetValue<double>());
                Assert.True(
                    Math.Abs(lx - ly) <= 1e-6 * Math.Abs(lx),
                    $"step {x["step"]}: loss {lx} at 1 process, {ly} at 3"
                );
            }
            TorchRuntime.EnsureAvailable();
            using var scope = NewDisposeScope();
            var (wa, wb) = (
                SafetensorsHeader.LoadTensors(Path.Combine(Checkpoint(one, 6), "model.safetensors")),
                SafetensorsHeader.LoadTensors(Path.Combine(Checkpoint(three, 6), "model.safetensors"))
            );
            Assert.Equal(wa.Keys.Order(), wb.Keys.Order());
            foreach (var (name, tensor) in wa)
            {
                var (difference, size) = ((tensor - wb[name]).norm().item<float>(), tensor.norm().item<float>());
                var relative = size > 0 ? difference / size : difference; // a tensor still all zeros must stay so
                Assert.True(relative <= 1e-5, $"{name}: relative L2 difference {relative}");
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// The pids of the rank processes of a run started by `blr train --nproc`, found by their MPI rank.
    static int? RankProcess(int rank)
    {
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
                continue;
            try
            {
                if (
                    File.ReadAllText(Path.Combine(dir, "environ"))
                        .Split('\0')
                        .Intersect([$"OMPI_COMM_WORLD_RANK={rank}", $"PMI_RANK={rank}"])
                        .Any() && File.ReadAllText(Path.Combine(dir, "cmdline")).Contains("blr.dll")
                )
                    return pid;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return null;
    }

    static void WaitFor(Func<bool> condition, TimeSpan limit, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > limit)
                throw new TimeoutException($"{what} did not happen within {limit.TotalSeconds} s");
            Thread.Sleep(100);
        }
    }

    [Fact]
    public void A_rank_killed_with_sigkill_ends_the_run_within_30_s_and_leaves_a_loadable_checkpoint()
    {
        var dir = Temp("kill");
        try
        {
            var run = Path.Combine(dir, "run");
            using var launcher = TestPaths.Start(Nproc(2, [], Train(run, 100000, extra: ["--checkpoint-every", "3"])));
            var error = launcher.StandardError.ReadToEndAsync();
            var output = launcher.StandardOutput.ReadToEndAsync();
            WaitFor(
                () => File.Exists(Path.Combine(run, "checkpoints", "latest")),
                TimeSpan.FromSeconds(90),
                "a first checkpoint"
            );
            var victim = RankProcess(1) ?? throw new InvalidOperationException("no rank 1 process");
            var clock = Stopwatch.StartNew();
            Process.GetProcessById(victim).Kill(); // SIGKILL
            Assert.True(launcher.WaitForExit(TimeSpan.FromSeconds(30)), "the run did not end within 30 s of the kill");
            Assert.True(launcher.ExitCode == 6, $"exit {launcher.ExitCode}: {error.Result}");
            Assert.Null(RankProcess(0));
            // One line from blr naming the rank; none of mpirun's own report (its banners) on either stream.
            Assert.Contains(error.Result.Split('\n'), line =>
                line.StartsWith("blr: rank 1 was killed by signal 9") || line.StartsWith("blr (rank")
            );
            Assert.DoesNotContain(error.Result.Split('\n').Concat(output.Result.Split('\n')), line =>
                MpiLaunch.isBannerRule(line) || line.Contains("noticed that") || line.Contains("APPLICATION")
            );

            var latest = Path.Combine(
                run,
                "checkpoints",
                File.ReadAllText(Path.Combine(run, "checkpoints", "latest")).Trim()
            );
            var eval = TestPaths.Run([
                "eval",
                "--model-dir",
                latest,
                "--data",
                gutenberg.Directory,
                "--seq-len",
                "32",
                "--windows",
                "2",
                "--threads",
                "1",
            ]);
            Ok(eval);
            Assert.Contains("loss", eval.Output);
            TorchRuntime.EnsureAvailable();
            using var scope = NewDisposeScope();
            var state = SafetensorsHeader.LoadTensors(Path.Combine(latest, "optimizer.safetensors"));
            Assert.Equal(long.Parse(Path.GetFileName(latest)["step_".Length..]), state["step"].item<long>());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_rank_that_throws_ends_every_rank_with_one_line_naming_it()
    {
        var dir = Temp("throw");
        try
        {
            using var launcher = TestPaths.Start(
                Nproc(2, [], Train(Path.Combine(dir, "run"), 100000)),
                fault: "bug-at-step@3",
                environment: new Dictionary<string, string> { ["BLR_FAULT_RANK"] = "1" }
            );
            var output = launcher.StandardOutput.ReadToEndAsync();
            var error = launcher.StandardError.ReadToEndAsync();
            Assert.True(launcher.WaitForExit(TimeSpan.FromSeconds(90)), "the run hung after a rank failed");
            Assert.Equal(1, launcher.ExitCode);
            var lines = error.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Contains(lines, l =>
                l.StartsWith(
                    "blr (rank 1): internal error: BLR_FAULT: bug-at-step at step 3 (InvalidOperationException); the trace is in "
                )
            );
            Assert.DoesNotContain("   at ", error.Result);
            Assert.Null(RankProcess(0));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int signal);

    [Fact]
    public void Ctrl_c_stops_every_rank_at_one_step_with_a_checkpoint_and_exit_130() =>
        StopsAtOneStepWithACheckpoint(2, 3); // SIGINT, as the terminal sends on Ctrl-C

    [Fact]
    public void A_closed_terminal_stops_every_rank_at_one_step_with_a_checkpoint_and_exit_130() =>
        StopsAtOneStepWithACheckpoint(1, 3); // SIGHUP

    /// A signal that comes before any rank can take one (the ranks are starting) is kept for them, not lost.
    [Fact]
    public void Ctrl_c_before_the_ranks_began_training_stops_them_after_their_first_steps() =>
        StopsAtOneStepWithACheckpoint(2, 0);

    /// <paramref name="signal"/> to the launcher once the run has written <paramref name="steps"/> steps (0: as
    /// soon as a rank process exists): every rank stops at one step, rank 0 checkpoints it, exit 130.
    void StopsAtOneStepWithACheckpoint(int signal, int steps)
    {
        var dir = Temp("interrupt");
        try
        {
            var run = Path.Combine(dir, "run");
            using var launcher = TestPaths.Start(Nproc(2, ["--zero", "1"], Train(run, 100000)));
            var output = launcher.StandardOutput.ReadToEndAsync();
            var error = launcher.StandardError.ReadToEndAsync();
            if (steps == 0)
                WaitFor(
                    () => RankProcess(0) is not null || RankProcess(1) is not null,
                    TimeSpan.FromSeconds(90),
                    "a rank"
                );
            else
                WaitFor(
                    () =>
                        File.Exists(Path.Combine(run, "metrics.jsonl"))
                        && File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length >= steps,
                    TimeSpan.FromSeconds(90),
                    $"{steps} steps"
                );
            Assert.Equal(0, kill(launcher.Id, signal));
            Assert.True(launcher.WaitForExit(TimeSpan.FromSeconds(90)), "the run did not stop");
            Assert.True(launcher.ExitCode == 130, $"exit {launcher.ExitCode}: {error.Result}");
            Assert.Contains("(interrupted)", output.Result);
            // The launcher says how to go on: its own command line, --nproc kept, with --resume latest.
            Assert.Contains(error.Result.Split('\n'), line =>
                line.StartsWith("blr: interrupted; rank 0 wrote a checkpoint; resume with: blr train --nproc 2 ")
                && line.EndsWith("--resume latest")
            );
            var done = Metrics(run).Count;
            Assert.True(done >= Math.Max(steps, 1), $"{done} steps");
            var latest = File.ReadAllText(Path.Combine(run, "checkpoints", "latest")).Trim();
            Assert.Equal($"step_{done:D7}", latest);
            var trainer = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "checkpoints", latest, "trainer.json")))!;
            Assert.Equal(done, trainer["step"]!.GetValue<int>());
            Assert.Null(RankProcess(0));
            Assert.Null(RankProcess(1));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// A second Ctrl-C while the ranks are stopping kills them (as cargo or docker compose do): one line, exit 130,
    /// no process left. The two signals are 50 ms apart, so the ranks are still stopping when the second comes;
    /// should they have stopped already, the first one's clean stop is the right outcome.
    [Fact]
    public void A_second_ctrl_c_kills_every_rank_at_once_with_one_line_and_exit_130()
    {
        var dir = Temp("interrupt-twice");
        try
        {
            var run = Path.Combine(dir, "run");
            using var launcher = TestPaths.Start(Nproc(2, [], Train(run, 100000)));
            var output = launcher.StandardOutput.ReadToEndAsync();
            var error = launcher.StandardError.ReadToEndAsync();
            WaitFor(
                () =>
                    File.Exists(Path.Combine(run, "metrics.jsonl"))
                    && File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length >= 2,
                TimeSpan.FromSeconds(90),
                "two steps"
            );
            Assert.Equal(0, kill(launcher.Id, 2));
            Thread.Sleep(50);
            var clock = Stopwatch.StartNew();
            Assert.Equal(0, kill(launcher.Id, 2));
            Assert.True(launcher.WaitForExit(TimeSpan.FromSeconds(30)), "the run did not end within 30 s");
            Assert.True(launcher.ExitCode == 130, $"exit {launcher.ExitCode}: {error.Result}");
            var lines = error.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var killed = lines.Where(l => l.StartsWith("blr: interrupted again: ")).ToList();
            if (killed.Count > 0)
            {
                Assert.Equal(
                    [
                        "blr: interrupted again: the ranks were killed without a checkpoint; resume from the last one with: ",
                    ],
                    killed.Select(l => l[..l.IndexOf("with: ")] + "with: ")
                );
                Assert.EndsWith("--resume latest", killed[0]);
                // Nothing else from blr (no "rank was killed" report), none of mpirun's own report.
                Assert.Equal(killed, lines.Where(l => l.StartsWith("blr")));
                Assert.DoesNotContain(lines.Concat(output.Result.Split('\n')), line =>
                    MpiLaunch.isBannerRule(line) || line.Contains("noticed that") || line.Contains("APPLICATION")
                );
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"killing took {clock.Elapsed}");
            }
            else
                Assert.Contains(lines, line => line.StartsWith("blr: interrupted; rank 0 wrote a checkpoint; "));
            Assert.Null(RankProcess(0));
            Assert.Null(RankProcess(1));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Ranks_started_with_different_options_all_stop_with_one_line()
    {
        var dir = Temp("mismatch");
        try
        {
            var run = Path.Combine(dir, "run");
            // Rank 0 with --lr 1e-3, rank 1 with 2e-3: one program that reads its rank (OpenMPI's or hydra's
            // variable) rather than mpirun's MPMD form, which Debian's Open MPI 5.0.7 answers with a segmentation
            // fault (open-mpi/ompi#13303), with the options the launcher gives the installed implementation.
            var train = string.Join(" ", Train(run, 3).Select(a => $"'{a}'"));
            var script =
                "rank=${OMPI_COMM_WORLD_RANK:-$PMI_RANK}; "
                + $"exec dotnet '{TestPaths.Blr()}' {train} --lr $([ \"$rank\" = 0 ] && echo 1e-3 || echo 2e-3)";
            var (arguments, environment) = MpiLaunch.command(
                InstalledMpirun(),
                Environment.UserName == "root",
                ListModule.OfSeq([Tuple.Create("TERM", "dumb")]),
                2,
                "bash",
                ListModule.OfSeq(["-c", script])
            );
            var info = new ProcessStartInfo("mpirun", arguments)
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            foreach (var (name, value) in environment)
                info.Environment[name] = value;
            using var mpirun = Process.Start(info)!;
            var output = mpirun.StandardOutput.ReadToEndAsync();
            var error = mpirun.StandardError.ReadToEnd();
            Assert.True(mpirun.WaitForExit(TimeSpan.FromSeconds(90)));
            Assert.Equal(6, mpirun.ExitCode);
            Assert.Equal(
                "blr: the options of rank 1 differ from rank 0's; start every rank with the same command, data and files",
                WithoutMpirunBanners(error)
            );
            Assert.False(File.Exists(Path.Combine(run, "metrics.jsonl")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_batch_the_processes_cannot_share_is_one_line_before_anything_starts()
    {
        var (code, _, error) = TestPaths.Run(
            Nproc(2, [], Train(Path.Combine(Path.GetTempPath(), "blr-dp-never"), 3, batch: 6))
        );
        Assert.Equal(2, code);
        Assert.Equal(
            "blr: --micro-batch-size 2: must divide each process's share of the batch (6 / 2 processes = 3); the batch must be divisible by processes x micro-batch",
            error.Trim()
        );
        Assert.False(Directory.Exists(Path.Combine(Path.GetTempPath(), "blr-dp-never")));
    }

    /// An mpirun that cannot start the ranks (here a stand-in that answers --version as Open MPI 5 and then refuses
    /// an option, as Open MPI 5's mpirun refused --quiet with exit 213) is one line saying what it said, not a rank's
    /// death, and leaves no status folder behind.
    [Fact]
    public void An_mpirun_that_starts_no_rank_is_one_line_with_what_it_said()
    {
        var bin = Directory.CreateTempSubdirectory("blr-fake-mpirun-").FullName;
        try
        {
            var fake = Path.Combine(bin, "mpirun");
            File.WriteAllText(
                fake,
                string.Join(
                    "\n",
                    "#!/bin/sh",
                    "if [ \"$1\" = --version ]; then printf 'mpirun (Open MPI) 5.0.7\\n\\nReport bugs to x\\n'; exit 0; fi",
                    "echo -------------------------------------------------------------------------- >&2",
                    "echo An unrecognized option was included on the mpirun command line: >&2",
                    "echo -------------------------------------------------------------------------- >&2",
                    "exit 213",
                    ""
                )
            );
            File.SetUnixFileMode(fake, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var launches = Directory.GetDirectories(Path.GetTempPath(), "blr-launch-*").Length;
            var (code, _, error) = TestPaths.Run(
                Nproc(2, [], Train(Path.Combine(bin, "run"), 3)),
                new Dictionary<string, string> { ["PATH"] = $"{bin}:{Environment.GetEnvironmentVariable("PATH")}" }
            );
            Assert.Equal(6, code);
            Assert.Equal(
                "blr: Open MPI 5.0 could not start the ranks (exit 213): An unrecognized option was included on the mpirun command line:",
                error.Trim()
            );
            Assert.Equal(launches, Directory.GetDirectories(Path.GetTempPath(), "blr-launch-*").Length);
        }
        finally
        {
            Directory.Delete(bin, true);
        }
    }

    [Fact]
    public void Nproc_without_mpirun_is_one_line_naming_the_package()
    {
        // The dotnet that runs these tests (its root holds shared/Microsoft.NETCore.App/VERSION), and nothing else on
        // PATH.
        var dotnet = new DirectoryInfo(Path.GetDirectoryName(typeof(object).Assembly.Location)!)
            .Parent!
            .Parent!
            .Parent!
            .FullName;
        var info = new ProcessStartInfo(
            Path.Combine(dotnet, "dotnet"),
            [TestPaths.Blr(), .. Nproc(2, [], Train(Path.Combine(Path.GetTempPath(), "blr-dp-never"), 3))]
        )
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        info.Environment["PATH"] = dotnet;
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.Equal(2, process.ExitCode);
        Assert.Equal(
            "blr: --nproc 2 on the CPU starts its processes with mpirun, which is not installed; install OpenMPI (apt-get install openmpi-bin, or `dotnet fsi build.fsx setup` as root) or MPICH (apt-get install mpich)",
            error.Trim()
        );
    }

    [Fact]
    public void The_launch_environment_gives_rank_world_and_rendezvous()
    {
        // What mpirun sets, what a torchrun-style launcher sets, and nothing.
        var saved = new[]
        {
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_LOCAL_SIZE",
            "PMI_SIZE",
            "PMI_RANK",
            "WORLD_SIZE",
            "RANK",
            "LOCAL_RANK",
            "LOCAL_WORLD_SIZE",
            "MASTER_ADDR",
            "MASTER_PORT",
        }.ToDictionary(n => n, Environment.GetEnvironmentVariable);
        try
        {
            foreach (var n in saved.Keys)
                Environment.SetEnvironmentVariable(n, null);
            Assert.Equal(LaunchInfo.SingleProcess, LaunchInfo.FromEnvironment());
            (string, string)[] torchrun =
            [
                ("WORLD_SIZE", "4"),
                ("RANK", "3"),
                ("LOCAL_RANK", "1"),
                ("LOCAL_WORLD_SIZE", "2"),
                ("MASTER_ADDR", "10.0.0.7"),
                ("MASTER_PORT", "29511"),
            ];
            foreach (var (n, v) in torchrun)
                Environment.SetEnvironmentVariable(n, v);
            Assert.Equal(new LaunchInfo(3, 4, 1, 2, false, "10.0.0.7", 29511), LaunchInfo.FromEnvironment());
            foreach (
                var (n, v) in new[]
                {
                    ("OMPI_COMM_WORLD_SIZE", "2"),
                    ("OMPI_COMM_WORLD_RANK", "1"),
                    ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
                    ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
                }
            )
                Environment.SetEnvironmentVariable(n, v);
            Assert.Equal(new LaunchInfo(1, 2, 1, 2, true, null, null), LaunchInfo.FromEnvironment());
        }
        finally
        {
            foreach (var (n, v) in saved)
                Environment.SetEnvironmentVariable(n, v);
        }
    }

    [Fact]
    public void The_tcp_rendezvous_hands_rank_zeros_128_bytes_to_every_rank()
    {
        var port = 29000 + Random.Shared.Next(1000);
        var id = Enumerable.Range(0, 128).Select(i => (byte)(i * 7 + 3)).ToArray();
        LaunchInfo Rank(int r) => new(r, 3, r, 3, false, "127.0.0.1", port);
        // Ranks 1 and 2 start first and retry until rank 0 listens.
        var others = new[] { 1, 2 }
            .Select(r => Task.Run(() => TcpRendezvous.ShareFromRankZero(Rank(r), new byte[128])))
            .ToList();
        Thread.Sleep(300);
        Assert.Equal(id, TcpRendezvous.ShareFromRankZero(Rank(0), id));
        foreach (var other in others)
            Assert.Equal(id, other.Result);
    }
}
