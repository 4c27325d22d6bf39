// A small model of your own, trained by a plain TorchSharp loop with Blockwise AdamW: each block of parameters
// gets its own peak LR (the paper's ratios), all decaying to one shared floor.
// Usage: dotnet run -- [steps]
using BlockwiseLR;
using BlockwiseLR.Core;
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
using var model = new TinyMixer(vocab, width);

// None of these names is one BlockwiseLR knows: say which block each parameter is.
var rules = BlockRules
    .Default.With("lookup.weight", Block.Embedding)
    .With("mixer.*", Block.FeedForward)
    .With("gain.*", Block.Norm)
    .With("readout.weight", Block.OutputHead);
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
    optimizer.Step(schedule); // each block's LR at this step
    if (step % 10 == 0 || step == steps - 1)
        Console.WriteLine(
            $"step {step, 3}: loss {loss.item<float>():F4}, lr emb {schedule.LrAt(Block.Embedding, step):E2}, ffn {schedule.LrAt(Block.FeedForward, step):E2}, norm {schedule.LrAt(Block.Norm, step):E2}"
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
