// Pre-trains gpt2-tiny with Blockwise AdamW (the paper's ratios) on the built-in Gutenberg corpus.
// Usage: dotnet run -- [steps] [output folder]
using BlockwiseLR;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Training;

var steps = args.Length > 0 ? int.Parse(args[0]) : 50;
var output = args.Length > 1 ? args[1] : Path.Combine(Path.GetTempPath(), "blockwiselr-sample");

// Tokenize the built-in corpus into llm.c shards once (about a second).
var data = Path.Combine(output, "data");
if (!File.Exists(Path.Combine(data, "manifest.json")))
    ShardPreparer.Run(new PrepareOptions { Builtin = "gutenberg", OutputDirectory = data });

var options = new PretrainOptions
{
    Model = new()
    {
        Name = "gpt2-tiny",
        Overrides = new() { Layers = 2 },
    }, // a smaller gpt2-tiny: 2 layers, not 4
    Data = new() { Path = data },
    Optimizer = new() { Kind = OptimizerKind.BlockwiseAdamW, Ratios = BlockRatios.Paper }, // Norm x1, VO x4, FFN x6, QK x8, Emb x10
    Schedule = new() { Kind = LrSchedule.Cosine, Lr = 1e-3 },
    Training = new()
    {
        Steps = steps,
        BatchSize = 4,
        SeqLen = 64,
        Device = ComputeDevice.Cpu,
    },
    Evaluation = new() { Every = Math.Max(1, steps / 2), Windows = 8 },
    Run = new() { Out = Path.Combine(output, "run") },
};

try
{
    var result = Pretrainer.Run(
        options,
        new Progress<TrainProgress>(p =>
        {
            if (p.ValLoss is { } val)
                Console.WriteLine($"step {p.Step}/{p.Steps}: train loss {p.Loss:F3}, val loss {val:F3}");
        })
    );
    Console.WriteLine(
        $"final val loss {result.FinalValLoss:F4}, {result.TokensPerSecond:N0} tokens/s, checkpoint {result.LastCheckpoint}"
    );
}
catch (InvalidOptionException e)
{
    Console.Error.WriteLine($"option {e.Option}: {e.Problem}"); // e.g. "option Lr: must be a finite number > 0"
    return 2;
}
return 0;
