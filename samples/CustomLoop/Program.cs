// A small model of your own (TinyMixer, below) trained two ways with Blockwise AdamW, each block of parameters at its
// own peak LR (the paper's ratios), all decaying to one shared floor: first by the Trainer on tokens in memory (the
// README's "own-model" snippet is copied from the region below; ReadmeSnippetTests keeps them equal), then by a
// plain TorchSharp loop. Usage: dotnet run -- [steps]
// README: own-model begin
using BlockwiseLR;
using BlockwiseLR.Data;
using BlockwiseLR.Optim;
using TorchSharp;
using static TorchSharp.torch;

var steps = args.Length > 0 ? int.Parse(args[0]) : 60;
const int vocab = 16,
    width = 32,
    time = 12,
    batch = 8;

TorchRuntime.EnsureAvailable(); // one clear line if libtorch cannot load
manual_seed(0);

// None of TinyMixer's parameter names is one BlockwiseLR knows: say which block each one is.
var rules = BlockRules
    .Default.With("lookup.weight", Block.Embedding)
    .With("mixer.*", Block.FeedForward)
    .With("gain.*", Block.Norm)
    .With("readout.weight", Block.OutputHead);

// Tokens of your own, in memory: a stream that counts up modulo the vocabulary, now and then skipping one.
static int[] Counting(int length, int seed)
{
    var random = new Random(seed);
    var tokens = new int[length];
    for (var i = 1; i < length; i++)
        tokens[i] = (tokens[i - 1] + 1 + (random.Next(4) == 0 ? 1 : 0)) % vocab;
    return tokens;
}

using var ownModel = new TinyMixer(vocab, width); // any nn.Module<Tensor, Tensor>: (B, T) ids -> (B, T, vocab)
var trained = new Trainer(
    new PretrainOptions
    {
        Optimizer = new() { Kind = OptimizerKind.BlockwiseAdamW, Ratios = BlockRatios.Paper },
        Schedule = new() { Lr = 3e-3 },
        Training = new()
        {
            Steps = steps,
            BatchSize = batch,
            SeqLen = time,
        },
        Evaluation = new() { Every = 10, Windows = 4 },
        Run = new() { Out = Path.Combine(Path.GetTempPath(), "blockwiselr-own-model"), Overwrite = true },
    }
)
    .WithModel(ownModel, rules)
    .WithData(new InMemoryTokens("train", Counting(4000, 1)), new InMemoryTokens("val", Counting(400, 2)))
    .OnStep(report =>
    {
        if (report.ValLoss is { } val)
            Console.WriteLine(
                $"trainer step {report.Step, 3}: loss {report.Loss:F4}, val {val:F4}, "
                    + $"lr emb {report.LearningRates[Block.Embedding]:E2}, ffn {report.LearningRates[Block.FeedForward]:E2}"
            );
    })
    .Run();
Console.WriteLine($"trainer: final val loss {trained.FinalValLoss:F4}, run folder {trained.RunDirectory}");

// README: own-model end

// The same kind of model by a plain TorchSharp loop, with the optimizer and schedule as building blocks.
using var model = new TinyMixer(vocab, width);
var parameters = model.named_parameters().Select(p => (p.name, p.parameter)).ToList();
try
{
    _ = BlockRules.Default.WholeBlocks(parameters.Select(p => new ParameterShape(p.name, p.parameter.shape)));
}
catch (BlockPartitionException e)
{
    Console.WriteLine($"without rules: {e.Message}");
}

var settings = new AdamSettings
{
    Beta1 = 0.9,
    Beta2 = 0.95,
    Eps = 1e-8,
    WeightDecay = 0.1,
    DecayPolicy = WeightDecayPolicy.MatricesOnly,
};
using var optimizer = new BlockwiseAdamW(parameters, settings, rules);
var schedule = BlockSchedule.Create(
    LrSchedule.Cosine,
    baseLr: 3e-3,
    warmupSteps: steps / 10,
    totalSteps: steps,
    BlockRatios.Paper,
    tiedHead: false
);

// Data: sequences that count up modulo the vocabulary, so the next token is predictable.
var generator = new Generator(1);
for (var step = 0; step < steps; step++)
{
    using var scope = NewDisposeScope();
    var start = randint(0, vocab, [batch, 1], generator: generator);
    var tokens = (start + arange(time + 1)).remainder(vocab); // (B, T + 1)
    var (inputs, targets) = (tokens[.., ..^1], tokens[.., 1..]);
    optimizer.ZeroGrad();
    var logits = model.forward(inputs); // (B, T, vocab)
    var loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1));
    loss.backward();
    optimizer.Step(schedule); // each block's LR at this step: LrAt(block, steps done before it)
    if (step % 10 == 0 || step == steps - 1)
        Console.WriteLine(
            $"step {step + 1, 3}: loss {loss.item<float>():F4}, lr emb {schedule.LrAt(Block.Embedding, step):E2}, ffn {schedule.LrAt(Block.FeedForward, step):E2}, norm {schedule.LrAt(Block.Norm, step):E2}"
        );
}
return 0;

/// <summary>Embedding -> residual MLP with a learned gain -> readout. Returns (B, T, vocab) logits.</summary>
sealed class TinyMixer : nn.Module<Tensor, Tensor>
{
    readonly TorchSharp.Modules.Embedding lookup;
    readonly TorchSharp.Modules.Linear mixer,
        readout;
    readonly TorchSharp.Modules.LayerNorm gain;

    public TinyMixer(int vocab, int width)
        : base(nameof(TinyMixer))
    {
        lookup = nn.Embedding(vocab, width);
        mixer = nn.Linear(width, width);
        gain = nn.LayerNorm(width);
        readout = nn.Linear(width, vocab, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor tokens)
    {
        var x = lookup.forward(tokens);
        x = x + nn.functional.gelu(mixer.forward(x));
        // Each position also sees the running mean of the ones before it (causal, so the task is learnable).
        var counts = arange(1, tokens.shape[1] + 1, dtype: float32).view(1, -1, 1);
        return readout.forward(gain.forward(x.cumsum(1) / counts + x));
    }
}
