using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Models;
using BlockwiseLR.Training;

namespace BlockwiseLR.Tests;

/// Typed options: every spelling of a choice reaches the trainer as the same value; bad values name the option in
/// the caller's terms (the property from C#, the flag from the CLI, the key in a config file).
public class OptionsTests(GutenbergShards gutenberg) : IClassFixture<GutenbergShards>
{
    static string Temp() => Directory.CreateTempSubdirectory("blr-options-").FullName;

    // The paper's ratios, which the LR checks below recognize (the default is auto, uniform until its first update).
    PretrainOptions Tiny(string run) =>
        new()
        {
            Optimizer = new() { Ratios = BlockRatios.Paper },
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
            Training = new()
            {
                Steps = 2,
                BatchSize = 2,
                SeqLen = 8,
                Threads = 1,
            },
            Evaluation = new() { Every = 0, Windows = 1 },
            Run = new() { Out = run },
        };

    string[] TinyArgs(string run, string ratios = "paper") =>
        [
            "train",
            "--ratios",
            ratios,
            "--data",
            gutenberg.Directory,
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
            "--eval-every",
            "0",
            "--eval-windows",
            "1",
            "--threads",
            "1",
            "--out",
            run,
        ];

    /// The per-block LRs of step 0, read from what the run logged.
    static Dictionary<string, double> StepZeroLrs(string run) =>
        JsonNode.Parse(File.ReadLines(Path.Combine(run, "metrics.jsonl")).First())!["lr"]!
            .AsObject()
            .ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<double>());

    static void AssertLrsMatch(string name, Dictionary<string, double> lrs)
    {
        var blockwise = name.StartsWith("blockwise-", StringComparison.Ordinal);
        // Paper ratios: the (tied) embedding peaks at 10x the norms' LR; plain optimizers give every block one LR.
        if (blockwise)
            Assert.Equal(10.0, lrs["emb"] / lrs["norm"], 9);
        else
            Assert.All(lrs.Values, lr => Assert.Equal(lrs["norm"], lr));
    }

    static IEnumerable<string> Spellings(string name) =>
        [
            name,
            name.ToUpperInvariant(),
            string.Join("-", name.Split('-').Select(p => char.ToUpperInvariant(p[0]) + p[1..].Replace("w", "W"))),
        ];

    public static TheoryData<string> OptimizerNames => [.. OptionNames.Known<OptimizerKind>()];

    [Theory]
    [MemberData(nameof(OptimizerNames))]
    public void Every_spelling_in_a_config_file_and_on_the_command_line_trains_that_optimizer(string name)
    {
        var dir = Temp();
        try
        {
            foreach (var (spelling, i) in Spellings(name).Select((s, i) => (s, i)))
            {
                // JSON, as a config file reads it.
                var fromJson = Tiny(Path.Combine(dir, $"json-{i}"));
                var json = JsonNode.Parse(fromJson.ToJson())!.AsObject();
                json["optimizer"]!["kind"] = spelling;
                // A plain optimizer refuses ratios it would drop; uniform is its own.
                var plain = !name.StartsWith("blockwise-", StringComparison.Ordinal);
                if (plain)
                    json["optimizer"]!["ratios"] = "uniform";
                var config = Path.Combine(dir, $"config-{i}.json");
                File.WriteAllText(config, json.ToJsonString());
                var options = PretrainOptions.FromJsonFile(config);
                Assert.Equal(OptionNames.Parse<OptimizerKind>(name), options.Optimizer.Kind);
                Pretrainer.Run(options);
                AssertLrsMatch(name, StepZeroLrs(options.Run.Out));
                Assert.Equal(
                    name,
                    JsonNode.Parse(File.ReadAllText(Path.Combine(options.Run.Out, "options.json")))!["optimizer"]![
                        "kind"
                    ]!.GetValue<string>()
                );

                // The command line.
                var run = Path.Combine(dir, $"cli-{i}");
                var (code, output, error) = TestPaths.Run([
                    .. TinyArgs(run, plain ? "uniform" : "paper"),
                    "--optimizer",
                    spelling,
                ]);
                Assert.True(code == 0, error);
                AssertLrsMatch(name, StepZeroLrs(run));
                // The summary table names the optimizer as it trained (the progress lines name it too).
                Assert.Matches($@"\u2502 {System.Text.RegularExpressions.Regex.Escape(name)} +\u2502", output);
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void An_invalid_option_names_the_property_from_csharp_and_the_flag_from_the_cli()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            var tiny = Tiny(run);
            var lr = Assert.Throws<InvalidOptionException>(() =>
                Pretrainer.Run(tiny with { Schedule = tiny.Schedule with { Lr = double.NaN } })
            );
            Assert.Equal(("Schedule.Lr", "NaN"), (lr.Option, lr.Value));
            Assert.StartsWith("Schedule.Lr = NaN: must be a finite number > 0 and <= 100", lr.Message);
            var warmup = Assert.Throws<InvalidOptionException>(() =>
                Pretrainer.Run(tiny with { Schedule = tiny.Schedule with { WarmupSteps = 50 } })
            );
            Assert.StartsWith("Schedule.WarmupSteps = 50: warmup of 50 steps exceeds the run length", warmup.Message);
            Assert.False(Directory.Exists(run)); // refused before anything is written

            foreach (
                var (args, expected) in new (string[], string)[]
                {
                    (["--lr", "nan"], "blr: --lr NaN: must be a finite number > 0"),
                    (["--warmup", "50"], "blr: --warmup 50: warmup of 50 steps exceeds the run length"),
                    (
                        ["--optimizer", "adam"],
                        "blr: --optimizer adam: unknown optimizer 'adam' (known: adamw, blockwise-adamw, adam-mini, blockwise-adam-mini, lion, blockwise-lion, muon, "
                            + "blockwise-muon)"
                    ),
                    (["--device", "gpu"], "blr: --device gpu: unknown device 'gpu' (known: cpu, cuda, cuda:N)"),
                    (["--weight-decay", "-5"], "blr: --weight-decay -5: must be a finite number >= 0"),
                    (["--ratios", "emb=0"], "blr: --ratios emb=0: ratios 'emb=0': emb=0 must be a finite number > 0"),
                }
            )
            {
                var (code, _, error) = TestPaths.Run([.. TinyArgs(run), .. args]);
                Assert.Equal(2, code);
                Assert.StartsWith(expected, error.Trim());
                Assert.Single(error.Trim().Split('\n'));
                Assert.DoesNotContain("Exception", error);
                Assert.False(Directory.Exists(run));
            }

            var config = Path.Combine(dir, "config.json");
            File.WriteAllText(config, """{ "lr": "fast", "optimizer": "adamw" }""");
            var (badCode, _, badError) = TestPaths.Run(["train", "--config", config]);
            Assert.Equal(2, badCode);
            Assert.Equal($"blr: {config}: schedule.lr = fast: expected a number", badError.Trim());
            var fromCsharp = Assert.Throws<InvalidOptionException>(() => PretrainOptions.FromJsonFile(config));
            Assert.Equal($"{config}: Schedule.Lr = fast: expected a number", fromCsharp.Message);
            File.WriteAllText(config, """{ "stepz": 3 }""");
            var unknown = Assert.Throws<InvalidOptionException>(() => PretrainOptions.FromJsonFile(config));
            Assert.StartsWith($"{config}: stepz = 3: unknown option (groups: model, data, ", unknown.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Ratios_a_plain_optimizer_would_drop_are_refused_and_its_default_ratios_run_as_uniform()
    {
        var tiny = Tiny(Path.Combine(Path.GetTempPath(), "blr-never-written")); // Resolve writes nothing
        foreach (
            var kind in new[] { OptimizerKind.AdamW, OptimizerKind.AdamMini, OptimizerKind.Lion, OptimizerKind.Muon }
        )
        {
            foreach (var ratios in new[] { BlockRatios.Paper, BlockRatios.Auto(new() { Alpha = 0.5 }) })
            {
                var refused = Assert.Throws<InvalidOptionException>(() =>
                    ResolvedOptions.Resolve(
                        tiny with
                        {
                            Optimizer = new() { Kind = kind, Ratios = ratios },
                        }
                    )
                );
                Assert.Equal("Optimizer.Ratios", refused.Option);
                Assert.Contains("applies only to the blockwise optimizers", refused.Problem);
            }
            // The default (auto) and uniform are no-ops for a plain optimizer: options.json says uniform.
            foreach (var ratios in new[] { new OptimizerOptions().Ratios, BlockRatios.Uniform })
                Assert.Equal(
                    BlockRatios.Uniform,
                    ResolvedOptions
                        .Resolve(
                            tiny with
                            {
                                Optimizer = new() { Kind = kind, Ratios = ratios },
                            }
                        )
                        .Options.Optimizer.Ratios
                );
            // Given one by one (the command line's way), auto ratios or an auto setting are refused too.
            var given = Assert.Throws<InvalidOptionException>(() =>
                tiny.With([new("optimizer.kind", OptionNames.Format(kind)), new("optimizer.ratios", "auto")])
            );
            Assert.Equal("Optimizer.Ratios", given.Option);
            var alpha = Assert.Throws<InvalidOptionException>(() =>
                PretrainOptions.Defaults.With([
                    new("optimizer.kind", OptionNames.Format(kind)),
                    new("optimizer.ratios.alpha", 0.25),
                ])
            );
            Assert.Equal("Optimizer.Ratios.Alpha", alpha.Option);
        }
        // A blockwise optimizer keeps them.
        Assert.Equal(BlockRatios.Paper, ResolvedOptions.Resolve(tiny).Options.Optimizer.Ratios);
    }

    [Fact]
    public void Options_json_reads_back_as_the_same_typed_options()
    {
        var options = new PretrainOptions
        {
            Model = new()
            {
                Name = "llama-tiny",
                Overrides = new() { Layers = 2, KvHeads = 1 },
            },
            Optimizer = new()
            {
                Kind = OptimizerKind.BlockwiseAdamMini,
                Ratios = BlockRatios.Auto(new AutoRatioSettings { Alpha = 0.5, Every = 3 }),
                WeightDecayPolicy = WeightDecayPolicy.MatricesOnly,
            },
            Schedule = new()
            {
                Kind = LrSchedule.Wsd1Sqrt,
                WarmupSteps = 7,
                FloorLr = 1e-5,
            },
            Training = new() { Device = ComputeDevice.CudaDevice(1), Precision = Precision.Bf16Mixed },
        };
        var json = options.ToJson();
        Assert.Equal(options, PretrainOptions.FromJson(json));
        var node = JsonNode.Parse(json)!;
        Assert.Equal("blockwise-adam-mini", node["optimizer"]!["kind"]!.GetValue<string>());
        Assert.Equal(
            "auto:alpha=0.5,max-ratio=10,every=3,smoothing=0.9",
            node["optimizer"]!["ratios"]!.GetValue<string>()
        );
        Assert.Equal("cuda:1", node["training"]!["device"]!.GetValue<string>());
        Assert.Equal(
            ["layers=2", "kv-heads=1"],
            node["model"]!["overrides"]!.AsArray().Select(n => n!.GetValue<string>())
        );
        var whole = new PretrainOptions
        {
            Model = new() { Config = ModelConfigs.Gpt2(layers: 2, width: 32, heads: 4, context: 64) },
        };
        Assert.Equal(whole, PretrainOptions.FromJson(whole.ToJson()));
    }

    [Fact]
    public void An_options_json_written_before_typed_options_still_reads()
    {
        // The options.json of a run made before this change (string choices, auto settings as four keys).
        const string before = """
            { "model": "gpt2-tiny", "modelOverrides": ["layers=1", "width=32", "heads=2"], "data": "d", "optimizer": "blockwise-adamw",
              "ratios": "auto", "autoAlpha": 0.5, "autoMaxRatio": 8, "autoEvery": 2, "autoSmoothing": 0.8, "sharpnessEvery": 0,
              "lr": 0.003, "schedule": "cosine", "warmupSteps": null, "floorLr": null, "alphaWarmup": false, "steps": 8,
              "batchSize": 4, "microBatchSize": 2, "seqLen": 16, "seed": 5, "out": "r", "resume": null, "initFrom": null,
              "device": "cpu", "precision": "fp32", "evalEvery": 3, "evalWindows": 4, "checkpointEvery": 4, "keepCheckpoints": 2,
              "gradClip": 1, "weightDecay": 0.1, "beta1": 0.9, "beta2": 0.95, "eps": 1e-08, "weightDecayPolicy": null, "threads": 1,
              "peakTflops": null }
            """;
        var options = PretrainOptions.FromJson(before);
        Assert.Equal(
            new AutoRatioSettings
            {
                Alpha = 0.5,
                MaxRatio = 8,
                Every = 2,
                Smoothing = 0.8,
            },
            options.Optimizer.Ratios.AutoSettings
        );
        Assert.Equal(
            new ModelOverrides
            {
                Layers = 1,
                Width = 32,
                Heads = 2,
            },
            options.Model.Overrides
        );
        Assert.Equal(
            (OptimizerKind.BlockwiseAdamW, LrSchedule.Cosine, ComputeDevice.Cpu),
            (options.Optimizer.Kind, options.Schedule.Kind, options.Training.Device)
        );
    }

    [Fact]
    public void A_checkpoint_written_before_typed_options_still_reads()
    {
        // trainer.json of a blr demo --quick checkpoint made by the code before this change (architecture as a
        // number, options with string choices and the four auto* keys).
        var folder = Path.Combine(TestPaths.RepositoryRoot(), "tests", "data", "before-typed-options");
        var state = Checkpoints.ReadState(folder, ModelConfigs.Create("gpt2-tiny"));
        Assert.Equal(
            (40, OptimizerKind.BlockwiseAdamW, 40),
            (state.Step, state.Options.Optimizer.Kind, state.TrainLosses.Count)
        );
        Assert.Equal(BlockRatios.Paper, state.Options.Optimizer.Ratios);
        var other = Assert.Throws<InvalidOptionException>(() =>
            Checkpoints.ReadState(folder, ModelConfigs.Create("gpt2-tiny", "layers=2"))
        );
        Assert.Equal("Checkpoint.Resume", other.Option);
    }

    [Fact]
    public void A_bad_value_from_a_config_file_names_the_file_and_key_and_one_from_the_command_line_its_flag()
    {
        var dir = Temp();
        try
        {
            var config = Path.Combine(dir, "config.json");
            File.WriteAllText(config, """{ "seqLen": 2000 }""");
            var run = Path.Combine(dir, "run");
            var (code, _, error) = TestPaths.Run([
                .. TinyArgs(run).Where(a => a != "--seq-len" && a != "8"),
                "--config",
                config,
            ]);
            Assert.Equal(2, code);
            Assert.Equal(
                $"blr: {config}: training.seqLen = 2000: must be in 1..256 (the model's context)",
                error.Trim()
            );
            (code, _, error) = TestPaths.Run([.. TinyArgs(run), "--config", config]); // the command line's --seq-len 8 wins
            Assert.True(code == 0, error);
            (code, _, error) = TestPaths.Run([
                .. TinyArgs(Path.Combine(dir, "r2")),
                "--ratios",
                "auto",
                "--auto-alpha",
                "-1",
            ]);
            Assert.Equal(2, code);
            Assert.StartsWith("blr: --auto-alpha -1: must be a finite number > 0 and <= 100", error.Trim());
            (code, _, error) = TestPaths.Run([.. TinyArgs(Path.Combine(dir, "r3")), "--set", "layers=x"]);
            Assert.Equal(2, code);
            Assert.Equal(
                "blr: --set layers=1,width=16,heads=2,layers=x: model override layers=x: expected a whole number > 0",
                error.Trim()
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Defaults_live_in_one_place_and_the_cli_help_prints_them()
    {
        var (code, output, _) = TestPaths.Run(["train", "--help"]);
        Assert.Equal(0, code);
        var defaults = PretrainOptions.Defaults;
        Assert.Contains($"(default {defaults.Schedule.Lr:R})", output);
        Assert.Contains($"(default {defaults.Training.Steps})", output);
        Assert.Contains($"(default {OptionNames.Format(defaults.Optimizer.Kind)})", output);
        Assert.Equal(20, ResolvedWarmup(1000)); // 2% of the run
        Assert.Equal(1, ResolvedWarmup(10)); // at least one step
        Assert.Contains("warmup steps (default: 2% of the run, at least 1)", output);
    }

    int ResolvedWarmup(int steps)
    {
        var tiny = Tiny("unused");
        return ResolvedOptions
            .Resolve(tiny with { Training = tiny.Training with { Steps = steps } })
            .Schedule.WarmupSteps;
    }
}
