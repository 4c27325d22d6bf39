// Pre-trains gpt2-tiny with Blockwise AdamW (the paper's ratios) on the built-in Gutenberg corpus, tokenized with the
// built-in 4,000-piece tokenizer as `blr demo` does, then reads the results back. The README's C# snippets
// "basic-run" and "reading-results" are copied from the regions below (ReadmeSnippetTests keeps them equal).
// Usage: dotnet run -- [steps] [output folder]
// README: basic-run begin
using BlockwiseLR;

var steps = args.Length > 0 ? int.Parse(args[0]) : 50;
var output = args.Length > 1 ? args[1] : Path.Combine(Path.GetTempPath(), "blockwiselr-sample");

// Tokenize the built-in corpus (18 Project Gutenberg books) with the built-in 4,000-piece tokenizer; a second run
// finds the same dataset there and reuses it.
var data = Path.Combine(output, "data");
ShardPreparer.Run(
    new PrepareOptions
    {
        Builtin = "gutenberg",
        Tokenizer = "gutenberg-bpe4k",
        OutputDirectory = data,
    }
);

var options = new PretrainOptions
{
    Model = new()
    {
        Name = "gpt2-tiny",
        Overrides = new() { Layers = 2 }, // 2 layers, not 4
    },
    Data = new() { Path = data }, // the model's vocabulary follows the data's tokenizer
    Optimizer = new() { Kind = OptimizerKind.BlockwiseAdamW, Ratios = BlockRatios.Paper }, // Norm x1 ... Emb x10
    Schedule = new() { Kind = LrSchedule.Cosine, Lr = 1e-3 },
    Training = new()
    {
        Steps = steps,
        BatchSize = 4,
        SeqLen = 64,
        Device = ComputeDevice.Cpu,
    },
    Evaluation = new() { Every = Math.Max(1, steps / 2), Windows = 8 },
    Run = new() { Out = Path.Combine(output, "run"), Overwrite = true },
};
var result = Pretrainer.Run(
    options,
    new Progress<TrainProgress>(p =>
    {
        if (p.ValLoss is { } val)
            Console.WriteLine($"step {p.Step}/{p.Steps}: train loss {p.Loss:F3}, val loss {val:F3}");
    })
);

// README: basic-run end

// README: reading-results begin
// A value the run did not measure is null: the val losses of a run with no evaluation (one cancelled before its
// first), the speed of one that timed no step.
if (result.FinalValLoss is { } final)
    Console.WriteLine($"final val loss {final:F4} (best {result.BestValLoss:F4})");
Console.WriteLine($"{result.TokensPerSecond:N0} tokens/s, {result.MillisecondsPerStep:F1} ms/step");
foreach (var eval in result.Evals)
    Console.WriteLine($"  eval after {eval.Step} steps: {eval.ValLoss:F4}");
Console.WriteLine($"last train loss {result.TrainLosses[^1]:F4}, checkpoint {result.LastCheckpoint}");

// Every step as a typed record, numbered by steps done (1 to Steps, as evaluations and checkpoints are): its loss,
// and each block's LR, gradient norm and (under auto ratios) ratio, keyed by Block.
var last = result.History[^1];
Console.WriteLine(
    $"step {last.Step}: loss {last.Loss:F4}, qk LR {last.LearningRates[Block.AttentionQK]:E2}, "
        + $"qk grad norm {last.GradientNorms[Block.AttentionQK]:F3}"
);

// The same, read back from the run folder later without the model: the history (metrics.jsonl), the evaluations
// (evals.csv), the result (result.json) and the checkpoints' trainer state.
var run = TrainingRun.Open(result.RunDirectory);
Console.WriteLine(
    $"read back: {run.History.Count} steps, final val loss {run.Result!.FinalValLoss:F4}, "
        + $"latest checkpoint after {run.LatestState!.Step} steps"
);

// README: reading-results end
return 0;
