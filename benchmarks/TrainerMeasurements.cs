using System.Diagnostics;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Models;
using BlockwiseLR.Optim;
using BlockwiseLR.Training;
using static TorchSharp.torch;

namespace BlockwiseLR.Benchmarks;

/// <summary>Whole-run measurements that BenchmarkDotNet's per-call model does not fit: trainer overhead against a
/// bare loop, and process memory over a long tiny run.</summary>
static class TrainerMeasurements
{
    static string Data()
    {
        var directory = Path.Combine(Path.GetTempPath(), "blr-bench-gutenberg");
        if (!File.Exists(Path.Combine(directory, "manifest.json")))
            ShardPreparer.Run(
                new PrepareOptions
                {
                    Builtin = "gutenberg",
                    OutputDirectory = directory,
                    Overwrite = true,
                }
            );
        return directory;
    }

    static long Rss()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var self = Process.GetCurrentProcess();
        return self.WorkingSet64;
    }

    /// <summary>gpt2-tiny, 8 x 128 tokens, BlockwiseAdamW, 1 thread: Pretrainer's steady ms/step (metrics, clipping,
    /// LR schedule, sampler included) against a loop of forward, backward and optimizer step on the same
    /// batches.</summary>
    public static void Overhead(int steps)
    {
        set_num_threads(1);
        var data = Data();
        var run = Directory.CreateTempSubdirectory("blr-overhead-").FullName;
        var options = new PretrainOptions
        {
            Model = new() { Name = "gpt2-tiny" },
            Data = new() { Path = data },
            Training = new()
            {
                Steps = steps,
                BatchSize = 8,
                SeqLen = 128,
                Threads = 1,
            },
            Evaluation = new() { Every = 0, Windows = 1 },
            Run = new() { Out = run },
        };
        var trainer = Pretrainer.Run(options).MillisecondsPerStep!.Value; // a run of steps times them

        using var train = TokenDataset.Open(data, "train");
        var sampler = new BatchSampler(train, 128, options.Training.Seed);
        using var model = LanguageModel.Create(ModelConfigs.Create("gpt2-tiny"), seed: (long)options.Training.Seed);
        using var optimizer = BlockOptimizer.Create(
            OptimizerKind.BlockwiseAdamW,
            model.named_parameters().Select(p => (p.name, p.parameter)),
            new AdamSettings()
        );
        var times = new List<double>();
        for (var step = 0; step < steps; step++)
        {
            var clock = Stopwatch.StartNew();
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            var (x, y) = sampler.Next(8);
            LanguageModel.Loss(model.forward(x), y).backward();
            optimizer.Step(_ => 1e-3);
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        var bare = times.Skip(times.Count / 4).Average();
        Console.WriteLine(
            $"gpt2-tiny 8 x 128, 1 thread, {steps} steps: trainer {trainer:F1} ms/step, bare loop {bare:F1} ms/step, overhead {100 * (trainer / bare - 1):F1}%"
        );
        Directory.Delete(run, true);
    }

    /// <summary>RSS after warm-up and after a long run of tiny steps, with a GC before each reading.</summary>
    public static void Memory(int steps)
    {
        var run = Directory.CreateTempSubdirectory("blr-memory-").FullName;
        var options = new PretrainOptions
        {
            Model = new()
            {
                Name = "gpt2-tiny",
                Overrides = new()
                {
                    Layers = 1,
                    Width = 16,
                    Heads = 2,
                },
            },
            Data = new() { Path = Data() },
            Training = new()
            {
                Steps = steps + 1,
                BatchSize = 2,
                SeqLen = 8,
                Threads = 1,
            },
            Evaluation = new() { Every = 0, Windows = 2 },
            Run = new() { Out = run },
        };
        var readings = new List<(int Step, long Rss)>();
        Pretrainer.Run(
            options,
            new Synchronous(p =>
            {
                if (p.Step % (steps / 4) == 0 && p.Step <= steps)
                    readings.Add((p.Step, Rss()));
            })
        );
        Console.WriteLine(string.Join(", ", readings.Select(r => $"step {r.Step}: {r.Rss / 1048576.0:F1} MiB")));
        Console.WriteLine(
            $"RSS growth from step {readings[0].Step} to {readings[^1].Step}: {100.0 * (readings[^1].Rss - readings[0].Rss) / readings[0].Rss:F1}%"
        );
        Directory.Delete(run, true);
    }

    sealed class Synchronous(Action<TrainProgress> report) : IProgress<TrainProgress>
    {
        public void Report(TrainProgress value) => report(value);
    }

    /// <summary>Data parallelism on this machine's cores: gpt2-tiny, a global batch of 32 x 128 tokens in
    /// micro-batches of 16, as one process with 2 threads and as `blr train --nproc 2` (2 ranks x 1 thread under
    /// mpirun), with ZeRO-0 and ZeRO-1. Steady ms/step (the first quarter of the steps left out) and, at 2 ranks, the
    /// milliseconds per step spent in the gradient all-reduce (metrics.jsonl's comm_ms).</summary>
    public static void DataParallel(int steps)
    {
        var data = Data();
        var blr = Blr();
        (double Ms, double Comm) Train(int processes, int threads, int zero = 0)
        {
            var run = Directory.CreateTempSubdirectory("blr-dp-bench-").FullName;
            string[] args =
            [
                blr,
                "train",
                .. processes > 1 ? new[] { "--nproc", processes.ToString() } : [],
                "--data",
                data,
                "--model",
                "gpt2-tiny",
                "--steps",
                steps.ToString(),
                "--batch-size",
                "32",
                "--micro-batch-size",
                "16",
                "--seq-len",
                "128",
                "--eval-every",
                "0",
                "--eval-windows",
                "1",
                "--threads",
                threads.ToString(),
                "--zero",
                zero.ToString(),
                "--out",
                run,
            ];
            using var process = Process.Start(new ProcessStartInfo("dotnet", args) { RedirectStandardOutput = true })!;
            process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
                throw new InvalidOperationException($"blr train exited with {process.ExitCode}");
            var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl"))
                .Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!)
                .Skip(steps / 4)
                .ToList();
            Directory.Delete(run, true);
            return (
                lines.Average(l => l["ms"]!.GetValue<double>()),
                lines.Average(l => l["comm_ms"]?.GetValue<double>() ?? 0)
            );
        }
        var one = Train(1, 2);
        var two = Train(2, 1);
        var sharded = Train(2, 1, zero: 1);
        Console.WriteLine(
            $"gpt2-tiny, 32 x 128 tokens per step, micro-batch 16, {steps} steps (first {steps / 4} left out), {Environment.ProcessorCount} cores"
        );
        Console.WriteLine($"  1 process x 2 threads: {one.Ms, 8:F1} ms/step");
        Console.WriteLine(
            $"  2 processes x 1 thread: {two.Ms, 7:F1} ms/step, of which {two.Comm:F1} ms in the gradient all-reduce ({100 * two.Comm / two.Ms:F1}%)"
        );
        Console.WriteLine(
            $"  same, ZeRO-1:           {sharded.Ms, 7:F1} ms/step, of which {sharded.Comm:F1} ms in reduce-scatter + all-gather ({100 * sharded.Comm / sharded.Ms:F1}%)"
        );
    }

    internal static string Blr()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "src", "Cli.FSharp", "bin", "Release", "net10.0", "blr.dll");
            if (File.Exists(candidate))
                return candidate;
        }
        throw new FileNotFoundException("blr.dll is not built; run `dotnet fsi build.fsx build` first");
    }
}

/// <summary>Issue 7's comparison: AdamW vs Blockwise AdamW with the paper's ratios vs auto ratios, on the built-in
/// corpus, two model sizes and two seeds each; val loss at equal steps as mean (min..max over seeds).</summary>
static class RatioComparison
{
    /// <param name="autoAlpha">with a value, only the auto variant runs, with this alpha.</param>
    public static void Run(int steps, double? autoAlpha = null)
    {
        var data = Path.Combine(Path.GetTempPath(), "blr-bench-gutenberg");
        if (!File.Exists(Path.Combine(data, "manifest.json")))
            ShardPreparer.Run(
                new PrepareOptions
                {
                    Builtin = "gutenberg",
                    OutputDirectory = data,
                    Overwrite = true,
                }
            );
        (string Name, string[] Overrides)[] sizes =
        [
            ("gpt2-tiny (4 x 128)", []),
            ("gpt2-tiny -s layers=2 width=64 heads=2", ["layers=2", "width=64", "heads=2"]),
        ];
        (string Name, string Optimizer, string Ratios)[] variants = autoAlpha is null
            ?
            [
                ("AdamW", "adamw", "uniform"),
                ("paper ratios", "blockwise-adamw", "paper"),
                ("auto", "blockwise-adamw", "auto"),
            ]
            : [(FormattableString.Invariant($"auto, alpha {autoAlpha}"), "blockwise-adamw", "auto")];
        ulong[] seeds = [1, 2];
        foreach (var (size, overrides) in sizes)
        {
            var results = new Dictionary<string, List<PretrainResult>>();
            foreach (var (name, optimizer, ratios) in variants)
                results[name] = seeds
                    .Select(seed =>
                    {
                        var run = Directory.CreateTempSubdirectory("blr-ratios-").FullName;
                        var result = Pretrainer.Run(
                            new PretrainOptions
                            {
                                Model = new() { Name = "gpt2-tiny", Overrides = ModelOverrides.Parse(overrides) },
                                Data = new() { Path = data },
                                Optimizer = new()
                                {
                                    Kind = OptionNames.Parse<OptimizerKind>(optimizer),
                                    Ratios =
                                        ratios == "auto"
                                            ? BlockRatios.Auto(
                                                AutoRatioSettings.Default with
                                                {
                                                    Alpha = autoAlpha ?? AutoRatioSettings.Default.Alpha,
                                                }
                                            )
                                            : BlockRatios.Parse(ratios),
                                },
                                Schedule = new() { Lr = 1e-3, WarmupSteps = steps / 10 },
                                Training = new()
                                {
                                    Steps = steps,
                                    BatchSize = 8,
                                    SeqLen = 64,
                                    Seed = seed,
                                },
                                Evaluation = new() { Every = steps / 6, Windows = 32 },
                                Run = new() { Out = run },
                            }
                        );
                        Directory.Delete(run, true);
                        return result;
                    })
                    .ToList();
            Console.WriteLine(
                $"\n{size}, {steps} steps of 8 x 64 tokens, base LR 1e-3, seeds {string.Join(", ", seeds)}: val loss mean (min..max)\n"
            );
            Console.WriteLine("| step | " + string.Join(" | ", variants.Select(v => v.Name)) + " |");
            Console.WriteLine("|---|" + string.Concat(variants.Select(_ => "---|")));
            foreach (var step in results[variants[0].Name][0].Evals.Select(e => e.Step))
                Console.WriteLine(
                    $"| {step} | "
                        + string.Join(
                            " | ",
                            variants.Select(v =>
                            {
                                var losses = results[v.Name]
                                    .Select(r => r.Evals.Single(e => e.Step == step).ValLoss)
                                    .ToList();
                                return FormattableString.Invariant(
                                    $"{losses.Average():F3} ({losses.Min():F3}..{losses.Max():F3})"
                                );
                            })
                        )
                        + " |"
                );
        }
    }
}

/// <summary>`--sample`: greedy generation of 100 and 1,000 tokens on gpt2-tiny with a 1,024-token context (random
/// weights: the speed does not depend on them), with the KV cache and with the full recompute per token.</summary>
static class SamplingSpeed
{
    public static void Run()
    {
        TorchRuntime.EnsureAvailable();
        set_num_threads(Environment.ProcessorCount);
        using var model = LanguageModel.Create(ModelConfigs.Create("gpt2-tiny", "context=1024"), seed: 1);
        long[] prompt = [50256];
        foreach (var cached in new[] { true, false })
        {
            TextGenerator.GenerateTokens(model, prompt, 5, 0, 0, 1.0, 1, 50257, cached); // warm-up
            var times = new Dictionary<int, double>();
            foreach (var count in new[] { 100, 1000 })
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                TextGenerator.GenerateTokens(model, prompt, count, 0, 0, 1.0, 1, 50257, cached);
                times[count] = clock.Elapsed.TotalSeconds;
            }
            Console.WriteLine(
                $"{(cached ? "KV cache" : "full recompute"), -15} 100 tokens {times[100], 7:F2} s   1000 tokens {times[1000], 7:F2} s   ratio {times[1000] / times[100]:F1}x"
            );
        }
    }
}
