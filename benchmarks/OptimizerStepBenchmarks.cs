using BenchmarkDotNet.Attributes;
using BlockwiseLR;
using BlockwiseLR.Core;
using BlockwiseLR.Models;
using BlockwiseLR.Optim;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Benchmarks;

/// <summary>One optimizer step on gpt2-small-shaped parameters (124.4M fp32, bias-free, vocab 50304) with
/// gradients present: the flat-buffer BlockwiseAdamW, AdamMini, Lion and Muon (Newton-Schulz batched per shape, and
/// one matrix at a time) against TorchSharp's built-in AdamW, side by side in one run.</summary>
[SimpleJob(launchCount: 1, warmupCount: 2, iterationCount: 8, invocationCount: 1)]
[MemoryDiagnoser(false)]
public class OptimizerStepBenchmarks
{
    LanguageModel model = null!;
    BlockOptimizer? blockwise;
    optim.Optimizer? builtIn;

    [Params("cpu")]
    public string Device { get; set; } = "cpu";

    LanguageModel Model()
    {
        var device = ComputeDevice.Parse(Device).Use(); // the one resolver: CUDA loaded first when asked for
        var config = ModelConfigs.Create("gpt2-small");
        var m = LanguageModel.Create(config, device, seed: 1);
        var generator = new Generator(2);
        foreach (var p in m.parameters())
            p.grad = randn(p.shape, generator: generator).to(device);
        return m;
    }

    /// <summary>Elements per CPU chunk of the flat-buffer step (`--quick` tries several).</summary>
    public long Chunk { get; set; } = Chunking.DefaultCpuChunk;

    void Setup(string name, bool batched = true)
    {
        model = Model();
        var config = model.Config;
        blockwise = BlockOptimizer.Create(
            OptionNames.Parse<OptimizerKind>(name),
            model.named_parameters().Select(p => (p.name, p.parameter)),
            new AdamSettings(),
            ModelConfigModule.attention(config)
        );
        ((FlatBlockOptimizer)blockwise).CpuChunk = Chunk;
        if (blockwise is BlockwiseLR.Optim.Muon muon)
            muon.Batched = batched;
        // Flat buffers re-pointed the parameters and gradients: give the gradients values again.
        var generator = new Generator(2);
        using var noGrad = no_grad();
        foreach (var p in model.parameters())
            p.grad!.copy_(randn(p.shape, generator: generator));
    }

    [GlobalSetup(Target = nameof(BlockwiseAdamW))]
    public void SetupBlockwiseAdamW() => Setup("blockwise-adamw");

    [GlobalSetup(Target = nameof(AdamMini))]
    public void SetupAdamMini() => Setup("adam-mini");

    [GlobalSetup(Target = nameof(Lion))]
    public void SetupLion() => Setup("blockwise-lion");

    [GlobalSetup(Target = nameof(Muon))]
    public void SetupMuon() => Setup("blockwise-muon");

    [GlobalSetup(Target = nameof(MuonOneMatrixAtATime))]
    public void SetupMuonOneMatrixAtATime() => Setup("blockwise-muon", batched: false);

    [GlobalSetup(Target = nameof(TorchSharpAdamW))]
    public void SetupTorchSharpAdamW()
    {
        model = Model();
        builtIn = optim.AdamW(
            model.parameters(),
            lr: 6e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            amsgrad: false,
            maximize: false
        );
    }

    static readonly Func<Block, double> Lr = block => 6e-4;

    [Benchmark(Baseline = true)]
    public void TorchSharpAdamW()
    {
        builtIn!.step();
        Synchronize();
    }

    [Benchmark]
    public void BlockwiseAdamW()
    {
        blockwise!.Step(Lr);
        Synchronize();
    }

    [Benchmark]
    public void AdamMini()
    {
        blockwise!.Step(Lr);
        Synchronize();
    }

    [Benchmark]
    public void Lion()
    {
        blockwise!.Step(Lr);
        Synchronize();
    }

    [Benchmark]
    public void Muon()
    {
        blockwise!.Step(Lr);
        Synchronize();
    }

    [Benchmark]
    public void MuonOneMatrixAtATime()
    {
        blockwise!.Step(Lr);
        Synchronize();
    }

    void Synchronize()
    {
        if (Device == "cuda")
            cuda.synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        blockwise?.Dispose();
        model.Dispose();
    }
}
