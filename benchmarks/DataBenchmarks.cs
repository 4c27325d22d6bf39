using BenchmarkDotNet.Attributes;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Models;
using BlockwiseLR.Optim;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Benchmarks;

/// <summary>Tokenization on the built-in corpus (3.16M GPT-2 tokens): the tokenizer alone on one thread, and
/// the whole of `blr prepare` (pieces, parallel tokenization, val choice, shards, manifest) on 1 and 2
/// threads.</summary>
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 5, invocationCount: 1)]
public class PrepareBenchmarks
{
    List<string> texts = null!;
    string output = null!;

    [GlobalSetup]
    public void Setup()
    {
        texts = Corpus.Builtin("gutenberg").Documents.Select(d => d.Text).ToList();
        output = Directory.CreateTempSubdirectory("blr-bench-").FullName;
    }

    [Benchmark(Baseline = true)]
    public long TokenizerAloneOneThread() => texts.Sum(t => (long)Gpt2Tokenizer.Instance.Encode(t).Count);

    [Benchmark]
    public long PrepareOneThread() => Prepare(1);

    [Benchmark]
    public long PrepareTwoThreads() => Prepare(2);

    long Prepare(int threads)
    {
        var result = ShardPreparer.Run(
            new PrepareOptions
            {
                Builtin = "gutenberg",
                OutputDirectory = output,
                Threads = threads,
                Overwrite = true,
            }
        );
        return result.TrainTokens + result.ValTokens;
    }

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(output, recursive: true);
}

/// <summary>Assembling one gpt2-tiny batch (16 x 256 tokens from memory-mapped shards) against one gpt2-tiny
/// training step on the CPU (forward, backward, BlockwiseAdamW step) with the same batch.</summary>
[SimpleJob(launchCount: 1, warmupCount: 2, iterationCount: 10)]
public class BatchBenchmarks
{
    string directory = null!;
    TokenDataset train = null!;
    BatchSampler sampler = null!;
    LanguageModel model = null!;
    BlockOptimizer optimizer = null!;
    Tensor inputs = null!,
        targets = null!;

    [GlobalSetup]
    public void Setup()
    {
        directory = Directory.CreateTempSubdirectory("blr-bench-").FullName;
        ShardPreparer.Run(new PrepareOptions { Builtin = "gutenberg", OutputDirectory = directory });
        train = TokenDataset.Open(directory, "train");
        sampler = new BatchSampler(train, 256, seed: 1);
        model = LanguageModel.Create(ModelConfigs.Create("gpt2-tiny"), seed: 1);
        optimizer = BlockOptimizer.Create(
            OptimizerKind.BlockwiseAdamW,
            model.named_parameters().Select(p => (p.name, p.parameter)),
            new AdamSettings()
        );
        (inputs, targets) = sampler.Next(16);
        inputs = inputs.DetachFromDisposeScope();
        targets = targets.DetachFromDisposeScope();
    }

    [Benchmark]
    public void AssembleBatch()
    {
        using var scope = NewDisposeScope();
        sampler.Next(16);
    }

    [Benchmark(Baseline = true)]
    public void Gpt2TinyTrainStep()
    {
        using var scope = NewDisposeScope();
        optimizer.ZeroGrad();
        LanguageModel.Loss(model.forward(inputs), targets).backward();
        optimizer.Step(_ => 6e-4);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        train.Dispose();
        Directory.Delete(directory, recursive: true);
    }
}
