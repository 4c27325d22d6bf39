using System.Globalization;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Training;

namespace BlockwiseLR.Tests;

/// Typed results: the per-step history a run returns and the same read back from its folder without the model; one
/// step numbering (steps done) on every surface; metrics.jsonl files of earlier versions (numbered from 0).
public class TrainingRunTests(GutenbergShards gutenberg) : IClassFixture<GutenbergShards>
{
    static string Temp() => Directory.CreateTempSubdirectory("blr-run-").FullName;

    /// gpt2-tiny cut down, auto ratios that move from step 4 on, sharpness and noise logged, an evaluation and a
    /// checkpoint every 2 steps (all kept).
    PretrainOptions Tiny(string run, int steps = 6) =>
        new()
        {
            Optimizer = new()
            {
                Kind = OptimizerKind.BlockwiseAdamW,
                Ratios = BlockRatios.Auto(new AutoRatioSettings { Every = 2, Smoothing = 0.5 }),
            },
            Model = new()
            {
                Overrides = new()
                {
                    Layers = 1,
                    Width = 16,
                    Heads = 2,
                },
            },
            Data = new() { Path = gutenberg.Directory },
            Schedule = new() { Lr = 3e-3, WarmupSteps = 1 },
            Training = new()
            {
                Steps = steps,
                BatchSize = 4,
                MicroBatchSize = 2,
                SeqLen = 8,
                Threads = 1,
                Seed = 5,
            },
            Evaluation = new() { Every = 2, Windows = 2 },
            Checkpoint = new() { Every = 2, Keep = 10 },
            Debug = new() { SharpnessEvery = 2, NoiseScaleEvery = 3 },
            Run = new() { Out = run },
        };

    static Dictionary<string, double>? Keyed(IReadOnlyDictionary<Block, double>? values) =>
        values?.ToDictionary(kv => kv.Key.Key(), kv => kv.Value);

    /// Every field of a report, dictionaries by content, so that two reports compare equal bit for bit.
    static string Fields(StepReport r) =>
        string.Join(
            "; ",
            r.Step,
            r.Steps,
            r.Loss.ToString("R", CultureInfo.InvariantCulture),
            Json(Keyed(r.LearningRates)),
            Json(Keyed(r.GradientNorms)),
            Json(Keyed(r.Ratios)),
            Json(Keyed(r.Sharpness)),
            Json(r.NoiseScale?.Tokens),
            Json(r.NoiseScale?.Blocks.ToDictionary(kv => kv.Key.Key(), kv => kv.Value)),
            r.TokensPerSecond.ToString("R", CultureInfo.InvariantCulture),
            r.Milliseconds.ToString("R", CultureInfo.InvariantCulture),
            Json(r.ValLoss),
            Json(r.Mfu),
            Json(r.CollectiveMilliseconds),
            Json(r.DeviceMemoryBytes)
        );

    static string Json<T>(T value) => System.Text.Json.JsonSerializer.Serialize(value);

    [Fact]
    public void A_run_folder_reads_back_as_the_typed_history_and_state_the_run_returned_without_the_model()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var result = Pretrainer.Run(Tiny(run));

            // What the run returned: a report per step, numbered 1..6, with each block's LR and ratio.
            Assert.Equal([1, 2, 3, 4, 5, 6], result.History.Select(r => r.Step));
            Assert.Equal(result.TrainLosses, result.History.Select(r => r.Loss));
            Assert.Equal(Keyed(result.History[^1].LearningRates), Keyed(result.FinalLearningRates));
            Assert.Equal(Keyed(result.History[^1].Ratios), Keyed(result.FinalRatios));
            Assert.Contains(result.FinalRatios!.Values, r => r != 1); // auto ratios moved: a real comparison
            Assert.Equal([1, 3, 5], result.History.Where(r => r.Sharpness is not null).Select(r => r.Step));
            Assert.Equal([1, 4], result.History.Where(r => r.NoiseScale is not null).Select(r => r.Step));

            // The folder, read back: no model is built (a checkpoint of a named model used to need one).
            var opened = TrainingRun.Open(run);
            Assert.Equal(result.History.Select(Fields), opened.History.Select(Fields));
            Assert.Equal(result.Evals, opened.Evaluations);
            Assert.Equal(result.Evals, opened.Result!.Evals);
            Assert.Equal(
                result.Evals.Select(e => (e.Step, (double?)e.ValLoss)),
                opened.History.Where(r => r.ValLoss is not null).Select(r => (r.Step, r.ValLoss))
            );
            Assert.Equal(result.History.Select(Fields), opened.Result.History.Select(Fields));
            Assert.Equal(Keyed(result.FinalRatios), Keyed(opened.Result.FinalRatios));
            Assert.Equal(result.Steps, opened.Result.Steps);
            Assert.Equal(6, opened.Options.Training.Steps);

            // Every checkpoint's state: its step is its name, its ratios those of its step's report.
            Assert.Equal(["step_0000002", "step_0000004", "step_0000006"], opened.Checkpoints.Select(Path.GetFileName));
            foreach (var checkpoint in opened.Checkpoints)
            {
                var state = TrainingRun.ReadState(checkpoint);
                Assert.Equal(int.Parse(Path.GetFileName(checkpoint)["step_".Length..]), state.Step);
                var report = opened.History[state.Step - 1];
                Assert.Equal(
                    Keyed(report.Ratios),
                    report.Ratios!.ToDictionary(kv => kv.Key.Key(), kv => state.Auto!.RatioOf(kv.Key))
                );
                Assert.Equal(opened.History.Take(state.Step).Select(r => r.Loss), state.TrainLosses);
                Assert.Equal(opened.Evaluations.Where(e => e.Step <= state.Step), state.Evals);
            }
            var latest = opened.LatestState!;
            Assert.Equal(6, latest.Step);
            Assert.Equal(opened.Checkpoints[^1], opened.LatestCheckpoint);
            Assert.Equal(
                Keyed(result.FinalRatios),
                Keyed(result.FinalRatios!.ToDictionary(kv => kv.Key, kv => latest.Auto!.RatioOf(kv.Key)))
            );
            Assert.Equal(Tiny(run).Model.Overrides.Width, latest.Model!.Width);
            // The resume check still refuses the state for another model.
            Assert.Throws<InvalidOptionException>(() => Checkpoints.ReadState(opened.LatestCheckpoint!, null));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void The_same_evaluation_has_the_same_step_on_every_surface()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var reports = new List<StepReport>();
            var progress = new List<TrainProgress>();
            var result = new Trainer(Tiny(run))
                .OnStep(reports.Add)
                .WithProgress(new SynchronousProgress<TrainProgress>(progress.Add))
                .Run();

            // Steps done after each evaluation, as each surface numbers it.
            int[] expected = [2, 4, 6];
            Assert.Equal(expected, reports.Where(r => r.ValLoss is not null).Select(r => r.Step));
            Assert.Equal(expected, progress.Where(p => p.ValLoss is not null).Select(p => p.Step));
            Assert.Equal(expected, result.Evals.Select(e => e.Step));
            Assert.Equal(expected, result.History.Where(r => r.ValLoss is not null).Select(r => r.Step));
            var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
            Assert.Equal([1, 2, 3, 4, 5, 6], lines.Select(l => l["step"]!.GetValue<int>()));
            Assert.All(lines, l => Assert.Equal(1, l["step_base"]!.GetValue<int>()));
            var evalsCsv = File.ReadAllLines(Path.Combine(run, "evals.csv")).Skip(1).Select(l => l.Split(','));
            Assert.Equal(expected, evalsCsv.Select(p => int.Parse(p[0], CultureInfo.InvariantCulture)));
            var checkpoints = Directory
                .GetDirectories(Checkpoints.Folder(run), "step_*")
                .Select(Path.GetFileName)
                .Order(StringComparer.Ordinal);
            Assert.Equal(expected.Select(s => $"step_{s:D7}"), checkpoints);
            var opened = TrainingRun.Open(run);
            Assert.Equal(expected, opened.Evaluations.Select(e => e.Step));
            Assert.Equal(expected, opened.Checkpoints.Select(c => TrainingRun.ReadState(c).Step));

            // One evaluation, one step, one loss: the report's, the metrics line's, the CSV's and the result's.
            var report = reports.Single(r => r.Step == 4);
            Assert.Equal(4, progress[3].Step);
            Assert.Equal(report.ValLoss, progress[3].ValLoss);
            Assert.Equal(report.Loss, lines[3]["loss"]!.GetValue<double>());
            Assert.Equal(new EvalPoint(4, report.ValLoss!.Value), result.Evals[1]);
            Assert.Equal(result.Evals.Take(2), TrainingRun.ReadState(opened.Checkpoints[1]).Evals);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void A_metrics_file_numbered_from_0_by_an_earlier_version_reads_resumes_and_plots()
    {
        var dir = Temp();
        try
        {
            var reference = Path.Combine(dir, "reference");
            var whole = Pretrainer.Run(Tiny(reference));
            var run = Path.Combine(dir, "old");
            Pretrainer.Run(Tiny(run));
            // As earlier versions wrote it: steps from 0, no "step_base".
            var metrics = Path.Combine(run, "metrics.jsonl");
            File.WriteAllLines(
                metrics,
                File.ReadAllLines(metrics)
                    .Select(l => JsonNode.Parse(l)!.AsObject())
                    .Select(o =>
                    {
                        o["step"] = o["step"]!.GetValue<int>() - 1;
                        o.Remove("step_base");
                        return o.ToJsonString();
                    })
            );
            Assert.Equal("{\"step\":0,", File.ReadLines(metrics).First()[..10]);

            // Read: the same typed history.
            Assert.Equal(
                whole.History.Select(r => (r.Step, r.Loss)),
                TrainingRun.Open(run).History.Select(r => (r.Step, r.Loss))
            );

            // Plot: the train curve and the sharpness curve read it.
            var (code, _, error) = TestPaths.Run([
                "plot",
                "--run",
                run,
                "--train",
                "--out",
                Path.Combine(dir, "t.png"),
            ]);
            Assert.True(code == 0, error);
            (code, _, error) = TestPaths.Run([
                "plot",
                "--run",
                run,
                "--sharpness",
                "--out",
                Path.Combine(dir, "s.png"),
            ]);
            Assert.True(code == 0, error);

            // Resume from the checkpoint after 4 steps: the old lines of steps 1..4 are kept as they are, steps 5 and
            // 6 are written anew, and the run equals the reference.
            var resumed = Pretrainer.Run(
                Tiny(run) with
                {
                    Checkpoint = new()
                    {
                        Every = 2,
                        Keep = 10,
                        Resume = Path.Combine(Checkpoints.Folder(run), "step_0000004"),
                    },
                }
            );
            var lines = File.ReadAllLines(metrics).Select(l => JsonNode.Parse(l)!).ToList();
            Assert.Equal([0, 1, 2, 3, 5, 6], lines.Select(l => l["step"]!.GetValue<int>()));
            Assert.Equal([false, false, false, false, true, true], lines.Select(l => l["step_base"] is not null));
            Assert.Equal(whole.History.Select(r => (r.Step, r.Loss)), resumed.History.Select(r => (r.Step, r.Loss)));
            Assert.Equal(
                whole.History.Select(r => (r.Step, r.Loss)),
                TrainingRun.Open(run).History.Select(r => (r.Step, r.Loss))
            );
            Assert.Equal(whole.Evals, resumed.Evals);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
