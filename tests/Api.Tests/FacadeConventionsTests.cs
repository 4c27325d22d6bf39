using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Models;
using BlockwiseLR.Training;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

/// The .NET conventions of the facade (issue 25, items 4 and 6): null and bad arguments, cancellation, RunAsync,
/// and what a model of one's own is fed.
public class FacadeConventionsTests
{
    /// A token table of <see cref="Vocab"/> rows, a learned position table of <see cref="Context"/> rows, a readout.
    sealed class TinyPositional : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.Embedding tok,
            pos;
        readonly TorchSharp.Modules.Linear readout;

        public TinyPositional(long seed)
            : base(nameof(TinyPositional))
        {
            manual_seed(seed);
            tok = nn.Embedding(Vocab, 8);
            pos = nn.Embedding(Context, 8);
            readout = nn.Linear(8, Vocab, hasBias: false);
            RegisterComponents();
        }

        public override Tensor forward(Tensor tokens) =>
            readout.forward(tok.forward(tokens) + pos.forward(arange(tokens.shape[1], dtype: int64)));
    }

    const int Vocab = 12;
    const int Context = 8;

    static readonly BlockRules Rules = BlockRules
        .Default.With("tok.weight", Block.Embedding)
        .With("pos.weight", Block.PositionEmbedding)
        .With("readout.weight", Block.OutputHead);

    static InMemoryTokens Tokens(string name, int length, int bad = -1)
    {
        var tokens = Enumerable.Range(0, length).Select(i => i % Vocab).ToArray();
        if (bad >= 0)
            tokens[length / 2] = bad;
        return new InMemoryTokens(name, tokens);
    }

    static PretrainOptions Options(string run, int steps = 2, int seqLen = Context) =>
        new()
        {
            Optimizer = new() { Kind = OptimizerKind.BlockwiseAdamW, Ratios = BlockRatios.Paper },
            Training = new()
            {
                Steps = steps,
                BatchSize = 2,
                MicroBatchSize = 2,
                SeqLen = seqLen,
                Threads = 1,
            },
            Evaluation = new() { Every = 0, Windows = 2 },
            Run = new() { Out = run },
        };

    static Trainer Own(PretrainOptions options, TinyPositional model, ITokenSource? train = null) =>
        new Trainer(options).WithModel(model, Rules).WithData(train ?? Tokens("train", 400), Tokens("val", 100));

    static string Temp() => Directory.CreateTempSubdirectory("blr-conventions-").FullName;

    static void NullNames(string parameter, Action call) =>
        Assert.Equal(parameter, Assert.Throws<ArgumentNullException>(call).ParamName);

    [Fact]
    public void Every_public_entry_point_refuses_null_with_ArgumentNullException_naming_the_parameter()
    {
        var trainer = new Trainer(new PretrainOptions());
        NullNames("options", () => Pretrainer.Run(null!));
        NullNames("options", () => Pretrainer.RunAsync(null!));
        NullNames("options", () => new Trainer(null!));
        NullNames("options", () => ShardPreparer.Run(null!));
        // WithModel(null) used to train the named model of the options without a word.
        NullNames("model", () => trainer.WithModel(null!));
        NullNames("train", () => trainer.WithData(null!, Tokens("val", 10)));
        NullNames("validation", () => trainer.WithData(Tokens("train", 10), null!));
        NullNames("observer", () => trainer.OnStep(null!));
        NullNames("note", () => trainer.OnNote(null!));
        NullNames("group", () => trainer.WithProcessGroup(null!));
        NullNames("logger", () => trainer.WithLogger(null!));
        // An option group set to null names the group (it used to be a NullReferenceException inside the run).
        NullNames("Model", () => _ = new PretrainOptions { Model = null! });
        NullNames("Training", () => _ = new PretrainOptions() with { Training = null! });
        NullNames("name", () => ModelConfigs.Create(null!, ModelOverrides.None));
        NullNames("overrides", () => ModelConfigs.Create("gpt2-tiny", (ModelOverrides)null!));
        NullNames("pattern", () => BlockRules.Default.With(null!, Block.Norm));
        NullNames("parameters", () => BlockRules.Default.Partition(null!));
    }

    [Fact]
    public void ModelConfigs_argument_errors_name_the_argument_and_options_name_the_option()
    {
        void Names(string parameter, string message, Func<ModelConfig> call)
        {
            var e = Assert.Throws<ArgumentException>(() => call());
            Assert.Equal(parameter, e.ParamName);
            Assert.StartsWith(message, e.Message);
        }
        Names("heads", "width 100 is not divisible by heads 3", () => ModelConfigs.Gpt2(2, 100, 3));
        Names("layers", "layers, width, heads", () => ModelConfigs.Gpt2(0, 64, 2));
        Names("kvHeads", "heads 4 is not divisible by kv-heads 3", () => ModelConfigs.Llama(2, 64, 4, 3, 128));
        Names("heads", "RoPE needs an even head dim", () => ModelConfigs.Llama(2, 36, 4, 4, 128));
        Names("normEps", "norm-eps and rope-theta", () => ModelConfigs.Llama(2, 64, 4, 4, 128, normEps: 0));
        Names("name", "unknown model 'gpt2-nope'", () => ModelConfigs.Create("gpt2-nope", ModelOverrides.None));
        Names("overrides", "width 128 is not divisible by heads 5", () => ModelConfigs.Create("gpt2-tiny", "heads=5"));
        Names("overrides", "unknown model override", () => ModelConfigs.Create("gpt2-tiny", "depth=5"));
        Names("overrides", "width 64 is not divisible by heads 5", () =>
            ModelConfigs.Gpt2(2, 64, 2).With(ModelOverrides.None with { Heads = 5 })
        );

        // The same mismatch as an option is the option's error, without the C# argument's " (Parameter ...)".
        var option = Assert.Throws<InvalidOptionException>(() =>
            ResolvedOptions.Resolve(
                Options(Path.Combine(Path.GetTempPath(), "blr-never-written")) with
                {
                    Model = new() { Name = "gpt2-tiny", Overrides = ModelOverrides.None with { Heads = 5 } },
                },
                ownData: true
            )
        );
        Assert.Equal("Model.Overrides", option.Option);
        Assert.Equal("width 128 is not divisible by heads 5", option.Problem);
    }

    [Fact]
    public void A_token_cancelled_before_the_run_throws_OperationCanceledException_and_writes_nothing()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            using var cancelled = new CancellationTokenSource();
            cancelled.Cancel();
            using var model = new TinyPositional(1);
            var steps = 0;
            Assert.Throws<OperationCanceledException>(() =>
                Own(Options(run), model).OnStep(_ => steps++).Run(cancelled.Token)
            );
            var task = Own(Options(run), model).RunAsync(cancelled.Token);
            Assert.True(task.IsCanceled);
            Assert.Equal(0, steps);
            Assert.False(Directory.Exists(run));

            // Cancelled during the run (here by an observer), it stops after that step with a checkpoint.
            using var later = new CancellationTokenSource();
            var stopped = Own(Options(run, steps: 5), model).OnStep(_ => later.Cancel()).Run(later.Token);
            Assert.True(stopped.Interrupted);
            Assert.Equal(1, stopped.Steps);
            Assert.NotNull(stopped.LastCheckpoint);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public async Task RunAsync_trains_on_a_thread_of_its_own_and_returns_what_Run_returns()
    {
        var dir = Temp();
        try
        {
            using var first = new TinyPositional(3);
            var expected = Own(Options(Path.Combine(dir, "sync"), steps: 3), first).Run();
            using var second = new TinyPositional(3);
            var threads = new List<(bool Pool, bool Background)>();
            var result = await Own(Options(Path.Combine(dir, "async"), steps: 3), second)
                .OnStep(_ => threads.Add((Thread.CurrentThread.IsThreadPoolThread, Thread.CurrentThread.IsBackground)))
                .RunAsync();
            Assert.Equal(expected.TrainLosses, result.TrainLosses);
            Assert.Equal(expected.FinalValLoss, result.FinalValLoss);
            // LongRunning: a dedicated thread, not one of the pool's.
            Assert.Equal(3, threads.Count);
            Assert.All(threads, t => Assert.False(t.Pool));

            // A failure faults the task with the exception Run throws.
            using var third = new TinyPositional(3);
            var refused = await Assert.ThrowsAsync<InvalidOptionException>(() =>
                Own(Options(Path.Combine(dir, "async"), steps: 3), third).RunAsync()
            );
            Assert.Equal("Run.Out", refused.Option);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Ids_outside_the_models_vocabulary_and_windows_longer_than_its_positions_are_refused_by_name()
    {
        var dir = Temp();
        try
        {
            using var model = new TinyPositional(1);
            // Id 12 in a vocabulary of 12: libtorch's embedding would fail with a C++ trace.
            var id = Assert.Throws<DataInputException>(() =>
                Own(Options(Path.Combine(dir, "ids"), steps: 60), model, Tokens("mine", 400, bad: Vocab)).Run()
            );
            Assert.Equal(
                "mine: token id 12 is outside the model's vocabulary (ids 0..11); give tokens of the "
                    + "model's tokenizer, or a model with a larger vocabulary",
                id.Message
            );
            // Windows of 16 on a position table of 8 rows: refused before the run folder is made.
            var run = Path.Combine(dir, "long");
            var length = Assert.Throws<InvalidOptionException>(() => Own(Options(run, seqLen: 16), model).Run());
            Assert.Equal("Training.SeqLen", length.Option);
            Assert.Equal("must be in 1..8 (the model's position table has 8 rows)", length.Problem);
            Assert.False(Directory.Exists(run));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Block_rules_refuse_empty_patterns_and_say_their_fix_in_CSharp()
    {
        Assert.Equal(
            "pattern",
            Assert.Throws<ArgumentException>(() => BlockRules.Default.With("", Block.Norm)).ParamName
        );
        Assert.Equal(
            "pattern",
            Assert.Throws<ArgumentException>(() => BlockRules.Default.With("  ", Block.Norm)).ParamName
        );
        Assert.Throws<ArgumentNullException>(() => BlockRules.Default.WithFused(null!, Block.AttentionQK));
        Assert.Equal(
            "parts",
            Assert.Throws<ArgumentException>(() => BlockRules.Default.WithFused("qkv.weight")).ParamName
        );

        var error = Assert.Throws<BlockPartitionException>(() =>
            BlockRules.Default.Partition([new("adapter.lora_A", [4, 4]), new("adapter.lora_B", [4, 4])])
        );
        Assert.Equal(["adapter.lora_A", "adapter.lora_B"], error.UnmatchedNames);
        Assert.StartsWith(
            "2 parameter(s) match no block rule: adapter.lora_A, adapter.lora_B. Add a rule for them, e.g. "
                + "rules.With(\"adapter.lora_A\", Block.FeedForward)",
            error.Message
        );
        Assert.Contains("Block.AttentionQK", error.Message);
        Assert.DoesNotContain("PATTERN=BLOCK", error.Message);
        // Ratios that a plain optimizer would drop are refused: OptionsTests.
        // Ratios_a_plain_optimizer_would_drop_are_refused_and_its_default_ratios_run_as_uniform.
    }

    [Fact]
    public void A_second_prepare_of_the_same_inputs_and_options_returns_the_dataset_there_and_other_inputs_are_refused()
    {
        var dir = Temp();
        try
        {
            // Four documents (a file is one), each a few chunks.
            var files = Enumerable.Range(0, 4).Select(f => Path.Combine(dir, $"doc{f}.txt")).ToArray();
            foreach (var file in files)
                File.WriteAllText(
                    file,
                    string.Join(
                        "\n\n",
                        Enumerable.Range(0, 200).Select(i => $"Paragraph {i} of {file}, a tiny corpus.")
                    )
                );
            var options = new PrepareOptions
            {
                Inputs = files,
                OutputDirectory = Path.Combine(dir, "data"),
                Tokenizer = "gutenberg-bpe4k",
                ChunkTokens = 64,
                ValFraction = 0.5,
                Threads = 1,
            };
            var first = ShardPreparer.Run(options);
            Assert.Null(first.Reused);
            var written = Directory.GetFiles(options.OutputDirectory).ToDictionary(f => f, File.GetLastWriteTimeUtc);

            var again = ShardPreparer.Run(options);
            Assert.NotNull(again.Reused);
            Assert.Contains("reused it", again.Reused);
            Assert.Equal(first.Shards, again.Shards);
            Assert.Equal(
                first with
                {
                    Seconds = 0,
                    Shards = [],
                },
                again with
                {
                    Seconds = 0,
                    Shards = [],
                    Reused = null,
                }
            );
            Assert.Equal(
                written,
                Directory.GetFiles(options.OutputDirectory).ToDictionary(f => f, File.GetLastWriteTimeUtc)
            );

            // Another seed, or the same path with other content, is another dataset: refused as before.
            Assert.Throws<DataInputException>(() => ShardPreparer.Run(options with { Seed = 7 }));
            File.AppendAllText(files[0], "\n\nOne more paragraph.");
            var refused = Assert.Throws<DataInputException>(() => ShardPreparer.Run(options));
            Assert.Contains("already holds a prepared dataset", refused.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    sealed class ListLogger : ILogger
    {
        public List<(LogLevel Level, int Event, string Message)> Lines { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(
            LogLevel logLevel,
            EventId eventId,
            TState state,
            Exception? exception,
            Func<TState, Exception?, string> formatter
        ) => Lines.Add((logLevel, eventId.Id, formatter(state, exception)));
    }

    [Fact]
    public void An_ILogger_hears_the_notes_the_start_progress_every_few_steps_and_the_end()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            using var model = new TinyPositional(5);
            // A run that dies before its first checkpoint: the next one replaces it, and says so (a note).
            Assert.Throws<InvalidOperationException>(() =>
                Own(Options(run, steps: 10), model).OnStep(_ => throw new InvalidOperationException("stop")).Run()
            );
            var logger = new ListLogger();
            var notes = new List<string>();
            var heardToo = new List<string>();
            var result = Own(Options(run, steps: 10), model)
                .OnNote(notes.Add)
                .OnNote(heardToo.Add) // listeners add up, as OnStep's observers do
                .WithLogger(logger, every: 4)
                .Run();

            Assert.All(logger.Lines, l => Assert.Equal(LogLevel.Information, l.Level));
            var note = Assert.Single(notes);
            Assert.Equal(notes, heardToo);
            Assert.StartsWith("replaced the run in", note);
            Assert.Equal((1, note), (logger.Lines[0].Event, logger.Lines[0].Message));
            Assert.Equal(
                (2, $"Training 10 steps from step 0 into {run}"),
                (logger.Lines[1].Event, logger.Lines[1].Message)
            );
            // Progress at steps 4 and 8 and at the last step (its evaluation).
            var progress = logger.Lines.Where(l => l.Event == 3).Select(l => l.Message).ToList();
            Assert.Equal(3, progress.Count);
            Assert.StartsWith("Step 4/10: train loss ", progress[0]);
            Assert.StartsWith("Step 8/10: train loss ", progress[1]);
            Assert.StartsWith("Step 10/10: train loss ", progress[2]);
            Assert.Contains($"val loss {result.FinalValLoss:F4}", progress[2]);
            var end = logger.Lines[^1];
            Assert.Equal(4, end.Event);
            Assert.StartsWith("Finished 10 steps (interrupted: False): final val loss", end.Message);

            // Untold, it logs progress about 20 times a run: every 2nd step of 40, in order, the last with its
            // evaluation.
            var quiet = new ListLogger();
            Own(Options(Path.Combine(dir, "default"), steps: 40), model).WithLogger(quiet).Run();
            var steps = quiet
                .Lines.Where(l => l.Event == 3)
                .Select(l => int.Parse(l.Message[5..l.Message.IndexOf('/')]))
                .ToList();
            Assert.Equal(Enumerable.Range(1, 20).Select(k => 2 * k), steps);

            // Pretrainer takes a logger too.
            Assert.Equal(
                "logger",
                Assert.Throws<ArgumentNullException>(() => Pretrainer.Run(new(), (ILogger)null!)).ParamName
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void The_CLI_says_the_unmatched_parameter_fix_as_its_flag()
    {
        var dir = Temp();
        try
        {
            // A safetensors file of one 2 x 2 float32 tensor no built-in rule matches.
            var file = Path.Combine(dir, "adapter.safetensors");
            var header = System.Text.Encoding.UTF8.GetBytes(
                "{\"adapter.lora_A\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}"
            );
            File.WriteAllBytes(file, [.. BitConverter.GetBytes((long)header.Length), .. header, .. new byte[16]]);
            var (code, _, error) = TestPaths.Run(["blocks", file]);
            Assert.Equal(2, code);
            Assert.Equal(
                "blr: 1 parameter(s) match no block rule: adapter.lora_A. Add --block-rule PATTERN=BLOCK (blocks: emb, "
                    + "pe, qk, vo, ffn, norm, head)",
                error.Trim()
            );
            (code, _, error) = TestPaths.Run(["blocks", "--block-rule", "adapter.*=ffn", file]);
            Assert.True(code == 0, error);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    static System.Text.Json.Nodes.JsonObject ResultJson(string run) =>
        System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(run, "result.json")))!.AsObject();

    /// Issue 25 item 4: a value a run did not measure is null, not NaN: in the result, in result.json and read back.
    [Fact]
    public void A_run_without_an_evaluation_has_null_val_losses_and_one_with_evaluations_their_last_and_lowest()
    {
        var dir = Temp();
        try
        {
            // Cancelled after its first step, before any evaluation (only at the end: Every = 0).
            var run = Path.Combine(dir, "none");
            using var model = new TinyPositional(2);
            using var cancel = new CancellationTokenSource();
            var result = Own(Options(run, steps: 5), model).OnStep(_ => cancel.Cancel()).Run(cancel.Token);
            Assert.Equal((1, true), (result.Steps, result.Interrupted));
            Assert.Empty(result.Evals);
            Assert.Null(result.FinalValLoss);
            Assert.Null(result.BestValLoss);
            // Its one step was timed: its speed was measured.
            Assert.True(result.TokensPerSecond > 0 && result.MillisecondsPerStep > 0);
            var json = ResultJson(run);
            Assert.True(json.ContainsKey("finalValLoss") && json.ContainsKey("bestValLoss"));
            Assert.Null(json["finalValLoss"]);
            Assert.Null(json["bestValLoss"]);
            Assert.Equal(result.MillisecondsPerStep, json["millisecondsPerStep"]!.GetValue<double>());
            var read = PretrainResult.FromJsonFile(Path.Combine(run, "result.json"));
            Assert.Equal((null, null), (read.FinalValLoss, read.BestValLoss));
            Assert.Equal(
                (result.TokensPerSecond, result.MillisecondsPerStep),
                (read.TokensPerSecond, read.MillisecondsPerStep)
            );
            Assert.Null(TrainingRun.Open(run).Result!.FinalValLoss);

            // Evaluated after every step, at an LR too high to learn (the loss grows): the last evaluation's loss and
            // the lowest (the first) differ, in result.json as returned.
            var evaluated = Path.Combine(dir, "evaluated");
            using var other = new TinyPositional(2);
            var options = Options(evaluated, steps: 3) with
            {
                Evaluation = new() { Every = 1, Windows = 2 },
            };
            var full = Own(
                    options with
                    {
                        Schedule = new() { Lr = 8.0, WarmupSteps = 0 },
                    },
                    other
                )
                .Run();
            Assert.Equal([1, 2, 3], full.Evals.Select(e => e.Step));
            Assert.Equal(full.Evals[^1].ValLoss, full.FinalValLoss);
            Assert.Equal(full.Evals.Min(e => e.ValLoss), full.BestValLoss);
            Assert.True(full.FinalValLoss > full.BestValLoss, string.Join(", ", full.Evals.Select(e => e.ValLoss)));
            json = ResultJson(evaluated);
            Assert.Equal(full.FinalValLoss, json["finalValLoss"]!.GetValue<double>());
            Assert.Equal(full.BestValLoss, json["bestValLoss"]!.GetValue<double>());
            read = PretrainResult.FromJsonFile(Path.Combine(evaluated, "result.json"));
            Assert.Equal((full.FinalValLoss, full.BestValLoss), (read.FinalValLoss, read.BestValLoss));
            Assert.Equal(full.Evals, read.Evals);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// result.json of the earlier code wrote null where nothing was measured, and null for a measured NaN too; it
    /// still reads: null is null where a value may be missing, NaN where a value is always measured. A measured NaN
    /// is now written "NaN" and reads back NaN, not null.
    [Fact]
    public void A_result_json_of_the_earlier_code_reads_its_nulls_back_as_null_and_a_measured_NaN_stays_NaN()
    {
        var dir = Temp();
        try
        {
            var path = Path.Combine(dir, "result.json");
            File.WriteAllText(
                path,
                """
                {
                  "runDirectory": "runs/old",
                  "steps": 2,
                  "finalValLoss": null,
                  "bestValLoss": null,
                  "evals": [],
                  "trainLosses": [
                    2.5,
                    null
                  ],
                  "tokensPerSecond": null,
                  "millisecondsPerStep": null,
                  "optimizerStateBytes": 1024,
                  "lastCheckpoint": null,
                  "metricsPath": "runs/old/metrics.jsonl",
                  "interrupted": true
                }
                """
            );
            var old = PretrainResult.FromJsonFile(path);
            Assert.Equal(
                (2, (double?)null, (double?)null, (double?)null, (double?)null, 1024L, true),
                (
                    old.Steps,
                    old.FinalValLoss,
                    old.BestValLoss,
                    old.TokensPerSecond,
                    old.MillisecondsPerStep,
                    old.OptimizerStateBytes,
                    old.Interrupted
                )
            );
            Assert.Equal([2.5, double.NaN], old.TrainLosses);
            Assert.Empty(old.Evals);

            // Measured numbers: a NaN evaluation is a loss, not a missing one.
            var measured = old with
            {
                FinalValLoss = double.NaN,
                BestValLoss = double.NaN,
                Evals = [new EvalPoint(2, double.NaN)],
                TokensPerSecond = 1500.5,
                MillisecondsPerStep = double.PositiveInfinity,
            };
            var json = System.Text.Json.Nodes.JsonNode.Parse(measured.ToJson())!;
            Assert.Equal("NaN", json["finalValLoss"]!.GetValue<string>());
            Assert.Equal("NaN", json["evals"]![0]!["valLoss"]!.GetValue<string>());
            Assert.Equal("Infinity", json["millisecondsPerStep"]!.GetValue<string>());
            Assert.Equal(1500.5, json["tokensPerSecond"]!.GetValue<double>());
            Assert.Equal("NaN", json["trainLosses"]![1]!.GetValue<string>());
            File.WriteAllText(path, measured.ToJson());
            var back = PretrainResult.FromJsonFile(path);
            Assert.Equal(
                (double.NaN, double.NaN, 1500.5, double.PositiveInfinity),
                (
                    back.FinalValLoss!.Value,
                    back.BestValLoss!.Value,
                    back.TokensPerSecond!.Value,
                    back.MillisecondsPerStep!.Value
                )
            );
            Assert.Equal(measured.Evals, back.Evals);
            Assert.Equal(measured.TrainLosses, back.TrainLosses);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// Every version writes loss, tokens_per_s and ms on every metrics.jsonl line: a line without one is damage, not
    /// a missing measurement (it used to read as a NaN step), refused by its line as other damage is.
    [Fact]
    public void A_metrics_line_without_its_numbers_is_refused_as_damaged()
    {
        var dir = Temp();
        try
        {
            var run = Path.Combine(dir, "run");
            using var model = new TinyPositional(4);
            Own(Options(run, steps: 3), model).Run();
            Assert.Equal(3, TrainingRun.Open(run).History.Count);
            var metrics = Path.Combine(run, "metrics.jsonl");
            var lines = File.ReadAllLines(metrics);
            var line = System.Text.Json.Nodes.JsonNode.Parse(lines[1])!.AsObject();
            line.Remove("ms");
            File.WriteAllLines(metrics, [lines[0], line.ToJsonString(), lines[2]]);
            var e = Assert.Throws<DataInputException>(() => TrainingRun.Open(run));
            Assert.StartsWith($"{metrics}: line 2 is not a whole metrics line", e.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
