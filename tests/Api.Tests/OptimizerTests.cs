using BlockwiseLR.Core;
using BlockwiseLR.Models;
using BlockwiseLR.Optim;
using FsCheck;
using FsCheck.Fluent;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.PyBridge;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

/// Optimizers against PyTorch's AdamW and the official Adam-mini 1.1.1 (golden fixture), TorchSharp's built-in
/// AdamW, and the plain per-parameter references.
public class OptimizerTests(ITestOutputHelper output)
{
    static string Data(string relative) => Path.Combine(AppContext.BaseDirectory, "data", relative);

    /// Sets a parameter's gradient, in place where it already has one (a flat-buffer view).
    static void SetGrad(Parameter p, Tensor grad)
    {
        if (p.grad is { } existing)
            existing.copy_(grad);
        else
            p.grad = grad.clone();
    }

    [Theory]
    [InlineData("adamw", false)]
    [InlineData("adamw", true)]
    [InlineData("blockwise_adamw", false)]
    [InlineData("blockwise_adamw", true)]
    [InlineData("adam_mini", false)]
    [InlineData("adam_mini", true)]
    [InlineData("blockwise_adam_mini", false)]
    [InlineData("blockwise_adam_mini", true)]
    public void Matches_the_pytorch_and_official_adam_mini_trajectories(string variant, bool reference)
    {
        // The replay (golden gradients and LRs in, parameters compared after each of six steps) is the device
        // check's own, so `blr check-fixtures` on a GPU replays exactly what this test holds to 1e-6 on the CPU.
        var result = Reporting.FixtureCheck.Trajectory(
            Data("optim-golden.safetensors"),
            variant,
            ComputeDevice.Cpu,
            reference,
            bound: 1e-6
        );
        output.WriteLine(
            $"{variant} ({(reference ? "reference" : "flat")}): worst max |param - golden| over 6 steps = {result.MaxAbsDifference:E2}"
        );
        Assert.True(result.Passed, $"{variant}: max |param - golden| = {result.MaxAbsDifference:E2} > 1e-6");
    }

    /// The official lion.py and Moonlight's Muon (optim-golden-lion-muon.safetensors): 1e-6 as for the Adam family,
    /// muon_bf16 included (the reference's Newton-Schulz in bfloat16 on its CPU, ours on this one: the same operations
    /// in the same order round alike).
    [Theory]
    [InlineData("lion")]
    [InlineData("blockwise_lion")]
    [InlineData("muon")]
    [InlineData("blockwise_muon")]
    [InlineData("muon_bf16")]
    public void Matches_the_official_lion_and_moonlight_muon_trajectories(string variant)
    {
        var result = Reporting.FixtureCheck.Trajectory(
            Data("optim-golden-lion-muon.safetensors"),
            variant,
            ComputeDevice.Cpu,
            bound: 1e-6
        );
        output.WriteLine($"{variant}: worst max |param - golden| over 6 steps = {result.MaxAbsDifference:E2}");
        Assert.True(result.Passed, $"{variant}: max |param - golden| = {result.MaxAbsDifference:E2} > 1e-6");
    }

    /// The bf16 variant really runs Newton-Schulz in bfloat16: it lands as far from the float32 golden as the
    /// reference's own bf16 run does (6.7e-5), not within float32's 1e-6 of it.
    [Fact]
    public void Muon_in_bfloat16_is_not_float32()
    {
        var file = Data("optim-golden-lion-muon.safetensors");
        var fromFp32 = Reporting
            .FixtureCheck.Trajectory(file, "muon_bf16", ComputeDevice.Cpu, against: "muon")
            .MaxAbsDifference;
        output.WriteLine($"bf16 run against the fp32 golden: {fromFp32:E2}");
        Assert.InRange(fromFp32, 1e-5, 1e-3);
    }

    /// `blr inspect` counts Lion's and Muon's state from shapes (the core's memory rules); the hand count: gpt2-small
    /// (vocab 50304, tied, no biases) has token embedding 50304 x 768, position embedding 1024 x 768, 12 layers of
    /// Q, K, V, O (768 x 768 each) and c_fc, c_proj (768 x 3072 each), and 25 norms of 768. Lion keeps one fp32 m
    /// per parameter; Muon one momentum buffer per coordinate of the 72 hidden matrices and AdamW's m and v for the
    /// embeddings and norms. The optimizers' own buffers, laid out on the meta device, say the same.
    [Theory]
    [InlineData("lion")]
    [InlineData("muon")]
    public void Inspect_counts_lion_and_muon_state_on_gpt2_small_as_a_hand_count(string optimizer)
    {
        long embeddings = 50304L * 768 + 1024L * 768;
        long hidden = 12L * (4 * 768 * 768 + 2 * 768 * 3072);
        long norms = 25L * 768;
        var byHand = optimizer == "lion" ? 4 * (embeddings + hidden + norms) : 4 * hidden + 8 * (embeddings + norms);
        Assert.Equal(optimizer == "lion" ? 497_495_040L : 655_251_456L, byHand);

        var (code, text, error) = TestPaths.Run(["inspect", "--model", "gpt2-small", "--optimizer", optimizer]);
        Assert.True(code == 0, error);
        var total = text.Split('\n').First(l => l.StartsWith("total "));
        Assert.Equal(byHand, long.Parse(total.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2].Replace(",", "")));

        var measured = ModelInspection.ShardedStateBytes(
            ModelConfigs.Create("gpt2-small"),
            OptionNames.Parse<OptimizerKind>(optimizer),
            1,
            cuda: false
        );
        Assert.Equal(byHand, measured.Single());
    }

    public sealed record Trajectory(bool Llama, bool AdamMini, int Seed, int Steps, bool MatricesOnlyDecay, long Chunk);

    static readonly Gen<Trajectory> Trajectories =
        from llama in Gen.Elements(false, true)
        from mini in Gen.Elements(false, true)
        from seed in Gen.Choose(0, 100_000)
        from steps in Gen.Choose(1, 4)
        from matricesOnly in Gen.Elements(false, true)
        from chunk in Gen.Elements(0L, 7L, 1000L)
        select new Trajectory(llama, mini, seed, steps, matricesOnly, chunk);

    static ModelConfig SmallConfig(bool llama, bool bias) =>
        ModelConfigs.Create(
            llama ? "llama-tiny" : "gpt2-tiny",
            "layers=2",
            "width=16",
            "heads=4",
            llama ? "kv-heads=2" : "heads=4",
            "d-ff=24",
            "vocab=40",
            "context=8",
            $"bias={bias.ToString().ToLowerInvariant()}"
        );

    static List<(string Name, Parameter Parameter)> Named(LanguageModel model) =>
        model.named_parameters().Select(p => (p.name, p.parameter)).ToList();

    /// Runs both optimizers on two copies of one model with the same random gradients and per-block LRs;
    /// returns the largest parameter difference.
    static float Divergence(
        Trajectory c,
        Func<LanguageModel, BlockOptimizer> first,
        Func<LanguageModel, BlockOptimizer> second
    )
    {
        using var scope = NewDisposeScope();
        var config = SmallConfig(c.Llama, bias: c.Seed % 2 == 0);
        var (a, b) = (LanguageModel.Create(config, seed: c.Seed), LanguageModel.Create(config, seed: c.Seed));
        using var optA = first(a);
        using var optB = second(b);
        var generator = new Generator((ulong)c.Seed);
        var lrs = Enum.GetValues<Block>()
            .ToDictionary(block => block, _ => 1e-3 * (1 + rand(1, generator: generator).item<float>() * 9));
        for (var step = 0; step < c.Steps; step++)
        {
            foreach (var ((_, pa), (_, pb)) in Named(a).Zip(Named(b)))
            {
                var grad = randn(pa.shape, generator: generator);
                SetGrad(pa, grad);
                SetGrad(pb, grad);
            }
            optA.Step(block => lrs[block]);
            optB.Step(block => lrs[block]);
        }
        return Named(a).Zip(Named(b)).Max(x => (x.First.Parameter - x.Second.Parameter).abs().max().item<float>());
    }

    static AdamSettings SettingsFor(Trajectory c) =>
        new()
        {
            Beta1 = 0.9,
            Beta2 = 0.95,
            Eps = 1e-8,
            WeightDecay = 0.1,
            DecayPolicy = c.MatricesOnlyDecay ? WeightDecayPolicy.MatricesOnly : WeightDecayPolicy.AllParameters,
        };

    [Fact]
    public void Flat_buffers_match_the_per_parameter_reference()
    {
        TorchRuntime.EnsureAvailable();
        Prop.ForAll(Trajectories.ToArbitrary(), c =>
            {
                var name = c.AdamMini ? "adam-mini" : "adamw";
                var attention = SmallConfig(c.Llama, false) is var cfg ? ModelConfigModule.attention(cfg) : null;
                var diff = Divergence(
                    c,
                    m =>
                        BlockOptimizer.Create(
                            OptionNames.Parse<OptimizerKind>(name),
                            Named(m),
                            SettingsFor(c),
                            attention
                        )
                            is var fast
                        && fast is FlatBlockOptimizer flat
                            ? WithChunk(flat, c.Chunk)
                            : fast,
                    m =>
                        BlockOptimizer.Create(
                            OptionNames.Parse<OptimizerKind>(name),
                            Named(m),
                            SettingsFor(c),
                            attention,
                            reference: true
                        )
                );
                return diff <= 1e-6f;
            })
            .Check(Config.QuickThrowOnFailure.WithMaxTest(100));
    }

    static BlockOptimizer WithChunk(FlatBlockOptimizer optimizer, long chunk)
    {
        optimizer.CpuChunk = chunk;
        return optimizer;
    }

    /// Every tensor the norms, the clip and the update make lands in a scope of Optim.Temporaries, which reports
    /// its largest tensor and its total as it closes: on groups many chunks long, neither may exceed a few chunks.
    [Theory]
    [InlineData("adamw")]
    [InlineData("adam-mini")]
    public void A_step_on_groups_larger_than_the_chunk_makes_no_temporary_larger_than_the_chunk(string name)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        const long chunk = 1024;
        var config = ModelConfigs.Create(
            "llama-tiny",
            "layers=2",
            "width=64",
            "heads=4",
            "kv-heads=2",
            "d-ff=176",
            "vocab=256",
            "context=16"
        );
        using var model = LanguageModel.Create(config, seed: 3);
        var flat = (FlatBlockOptimizer)
            BlockOptimizer.Create(
                OptionNames.Parse<OptimizerKind>(name),
                Named(model),
                new AdamSettings
                {
                    Beta1 = 0.9,
                    Beta2 = 0.95,
                    Eps = 1e-8,
                    WeightDecay = 0.1,
                },
                ModelConfigModule.attention(config)
            );
        using var optimizer = WithChunk(flat, chunk);
        var generator = new Generator(5);
        foreach (var (_, p) in Named(model))
            SetGrad(p, randn(p.shape, generator: generator));
        var largestGroup = flat.Parameters.GroupBy(p => p.Block).Max(g => g.Sum(p => p.Numel));
        Assert.True(largestGroup >= 32 * chunk, $"the largest group has {largestGroup} elements: too few to tell");

        Optim.Temporaries.Watch();
        var (norms, _) = optimizer.NormsAnd(zeros(1, dtype: ScalarType.Float64));
        optimizer.ScaleGradients(0.5);
        optimizer.Step(_ => 1e-3);
        var (largest, together) = Optim.Temporaries.Seen;

        output.WriteLine(
            $"{name}: largest group {largestGroup} elements, chunk {chunk}; largest temporary {largest}, most in one scope {together}"
        );
        Assert.True(norms.Count > 0);
        Assert.InRange(largest, 1, chunk);
        Assert.InRange(together, 1, 8 * chunk);
    }

    [Fact]
    public void Uniform_ratios_are_exactly_torchsharp_adamw()
    {
        TorchRuntime.EnsureAvailable();
        Prop.ForAll(Trajectories.ToArbitrary(), c =>
            {
                // Everything is disposed here, in order: nothing of one case is left to a finalizer during the next.
                var config = SmallConfig(c.Llama, bias: true);
                using var a = LanguageModel.Create(config, seed: c.Seed);
                using var b = LanguageModel.Create(config, seed: c.Seed);
                var settings = SettingsFor(c) with { DecayPolicy = WeightDecayPolicy.AllParameters };
                using var blockwise = BlockOptimizer.Create(OptimizerKind.BlockwiseAdamW, Named(a), settings);
                using var scope = NewDisposeScope();
                using var builtIn = optim.AdamW(
                    b.parameters(),
                    lr: 1e-3,
                    beta1: 0.9,
                    beta2: 0.95,
                    eps: 1e-8,
                    weight_decay: 0.1,
                    amsgrad: false,
                    maximize: false
                );
                var schedule = BlockSchedule.Create(
                    LrSchedule.Cosine,
                    1e-3,
                    warmupSteps: 2,
                    totalSteps: 6,
                    BlockRatios.Uniform,
                    tiedHead: config.Tied
                );
                var generator = new Generator((ulong)c.Seed);
                for (var step = 0; step < c.Steps + 2; step++)
                {
                    foreach (var ((_, pa), (_, pb)) in Named(a).Zip(Named(b)))
                    {
                        var grad = randn(pa.shape, generator: generator);
                        SetGrad(pa, grad);
                        SetGrad(pb, grad);
                    }
                    var lr = schedule.LrAt(Block.Norm, step);
                    foreach (var group in builtIn.ParamGroups)
                        group.LearningRate = lr;
                    builtIn.step();
                    blockwise.Step(schedule);
                }
                return Named(a)
                    .Zip(Named(b))
                    .All(x => (x.First.Parameter - x.Second.Parameter).abs().max().item<float>() <= 1e-6f);
            })
            .Check(Config.QuickThrowOnFailure.WithMaxTest(100));
    }

    [Fact]
    public void Backward_accumulates_into_the_flat_gradient_buffers()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var model = LanguageModel.Create(SmallConfig(llama: true, bias: false), seed: 3);
        using var optimizer = BlockOptimizer.Create(OptimizerKind.AdamW, Named(model), new AdamSettings());
        var ids = randint(0, 40, [2, 8], dtype: int64, generator: new Generator(1));
        LanguageModel.Loss(model.forward(ids), ids).backward();
        var once = Named(model).Select(p => p.Parameter.grad!.clone()).ToList();
        Assert.Contains(once, g => g.abs().sum().item<float>() > 0);
        LanguageModel.Loss(model.forward(ids), ids).backward();
        Assert.All(Named(model).Zip(once), x =>
            Assert.True(x.First.Parameter.grad!.allclose(x.Second * 2, rtol: 1e-5, atol: 1e-7), x.First.Name)
        );
        optimizer.ZeroGrad(); // zeroes the flat buffers: only works if .grad still views them
        Assert.All(Named(model), p => Assert.Equal(0f, p.Parameter.grad!.abs().sum().item<float>()));
    }

    [Theory]
    [InlineData("gpt2-small")]
    [InlineData("llama-0.25b")]
    public void Adam_mini_keeps_at_most_half_of_adamw_state(string name)
    {
        TorchRuntime.EnsureAvailable();
        var config = ModelConfigs.Create(name);
        long Total(string optimizer)
        {
            using var model = LanguageModel.Create(config, META);
            using var opt = BlockOptimizer.Create(
                OptionNames.Parse<OptimizerKind>(optimizer),
                Named(model),
                new AdamSettings(),
                ModelConfigModule.attention(config)
            );
            // The real buffers against a count by hand (docs/method.md section 6): AdamW keeps m and v per coordinate;
            // Adam-mini m per coordinate and one v per head of Q and K, per row of V, O, FFN and embeddings, per norm.
            var p = opt.Parameters.Sum(x => x.Numel);
            var (l, d, f, h, kv, hd) = (
                (long)config.Layers,
                (long)config.Width,
                (long)config.FeedForward,
                (long)config.Heads,
                (long)config.KvHeads,
                (long)config.HeadDim
            );
            var vCount =
                config.Architecture == Architecture.Gpt2
                    ? l * (h + h + d + d + f + d + 2) + config.Vocab + config.Context + 1
                    : l * (h + kv + kv * hd + d + f + f + d + 2) + config.Vocab + config.Vocab + 1;
            Assert.Equal(optimizer == "adamw" ? 8 * p : 4 * p + 4 * vCount, opt.StateBytes.Values.Sum());
            return opt.StateBytes.Values.Sum();
        }
        var (adamw, mini) = (Total("adamw"), Total("adam-mini"));
        output.WriteLine($"{name}: AdamW {adamw:N0} bytes, Adam-mini {mini:N0} bytes, {100.0 * mini / adamw:F2}%");
        Assert.True(mini <= 0.505 * adamw, $"{mini} / {adamw}");
    }

    [Theory]
    [InlineData("adamw")]
    [InlineData("adam-mini")]
    public void Save_load_continue_is_bit_identical_to_an_uninterrupted_run(string name)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var config = SmallConfig(llama: true, bias: false);
        var attention = ModelConfigModule.attention(config);
        var settings = new AdamSettings { DecayPolicy = WeightDecayPolicy.MatricesOnly };
        var schedule = BlockSchedule.Create(LrSchedule.Cosine, 1e-3, 2, 8, BlockRatios.Paper, tiedHead: false);
        Tensor Grad(int step, Parameter p, int index) =>
            randn(p.shape, generator: new Generator((ulong)(1000 * step + index)));
        void Run(LanguageModel model, BlockOptimizer optimizer, int from, int to)
        {
            for (var step = from; step < to; step++)
            {
                var index = 0;
                foreach (var (_, p) in Named(model))
                    SetGrad(p, Grad(step, p, index++));
                optimizer.Step(schedule);
            }
        }
        var dir = Directory.CreateTempSubdirectory("blr-optim-").FullName;
        try
        {
            var uninterrupted = LanguageModel.Create(config, seed: 5);
            using (
                var optimizer = BlockOptimizer.Create(
                    OptionNames.Parse<OptimizerKind>(name),
                    Named(uninterrupted),
                    settings,
                    attention
                )
            )
                Run(uninterrupted, optimizer, 0, 6);

            var first = LanguageModel.Create(config, seed: 5);
            using (
                var optimizer = BlockOptimizer.Create(
                    OptionNames.Parse<OptimizerKind>(name),
                    Named(first),
                    settings,
                    attention
                )
            )
            {
                Run(first, optimizer, 0, 3);
                optimizer.Save(Path.Combine(dir, "optimizer.safetensors"));
                HfFormat.Save(first, dir);
            }
            var resumed = HfFormat.Load(dir);
            using (
                var optimizer = BlockOptimizer.Create(
                    OptionNames.Parse<OptimizerKind>(name),
                    Named(resumed),
                    settings,
                    attention
                )
            )
            {
                optimizer.Load(Path.Combine(dir, "optimizer.safetensors"));
                Assert.Equal(3, optimizer.StepCount);
                Run(resumed, optimizer, 3, 6);
            }
            Assert.All(Named(uninterrupted).Zip(Named(resumed)), x =>
                Assert.True(x.First.Parameter.eq(x.Second.Parameter).all().item<bool>(), x.First.Name)
            );
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Loading_another_optimizers_state_is_refused_with_the_entry_named()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var config = SmallConfig(llama: true, bias: false);
        var model = LanguageModel.Create(config, seed: 1);
        using var adamw = BlockOptimizer.Create(OptimizerKind.AdamW, Named(model), new AdamSettings());
        var state = adamw.StateDict();
        using var mini = BlockOptimizer.Create(
            OptimizerKind.AdamMini,
            Named(LanguageModel.Create(config, seed: 1)),
            new AdamSettings(),
            ModelConfigModule.attention(config)
        );
        var error = Assert.Throws<InvalidDataException>(() => mini.LoadStateDict(state, "state.safetensors"));
        Assert.StartsWith(
            "state.safetensors: exp_avg_sq/model.embed_tokens.weight is (40, 16), expected (40)",
            error.Message
        );
    }
}
