using System.Diagnostics;
using BenchmarkDotNet.Running;
using BlockwiseLR.Benchmarks;

// `--quick [chunk...]`: a few timed steps per optimizer without BenchmarkDotNet, for tuning; otherwise BenchmarkDotNet.
if (args.Length > 0 && args[0] == "--quick")
{
    var chunks = args.Skip(1).Select(long.Parse).DefaultIfEmpty(BlockwiseLR.Optim.Chunking.DefaultCpuChunk).ToList();
    foreach (var chunk in chunks)
    {
        foreach (
            var (name, setup, step) in new (string, Action<OptimizerStepBenchmarks>, Action<OptimizerStepBenchmarks>)[]
            {
                ("TorchSharpAdamW", b => b.SetupTorchSharpAdamW(), b => b.TorchSharpAdamW()),
                ("BlockwiseAdamW", b => b.SetupBlockwiseAdamW(), b => b.BlockwiseAdamW()),
                ("AdamMini", b => b.SetupAdamMini(), b => b.AdamMini()),
                ("Lion", b => b.SetupLion(), b => b.Lion()),
                ("Muon", b => b.SetupMuon(), b => b.Muon()),
                ("MuonOneMatrixAtATime", b => b.SetupMuonOneMatrixAtATime(), b => b.MuonOneMatrixAtATime()),
            }
        )
        {
            if (chunk != chunks[0] && name == "TorchSharpAdamW")
                continue;
            var bench = new OptimizerStepBenchmarks { Chunk = chunk };
            setup(bench);
            step(bench);
            var times = Enumerable
                .Range(0, 5)
                .Select(_ =>
                {
                    var sw = Stopwatch.StartNew();
                    step(bench);
                    return sw.Elapsed.TotalMilliseconds;
                })
                .Order()
                .ToList();
            Console.WriteLine($"chunk {chunk, 9}  {name, -16} median {times[2], 8:F1} ms  (min {times[0]:F1})");
            bench.Cleanup();
        }
    }
    return;
}
if (args.Length > 0 && args[0] == "--overhead")
{
    TrainerMeasurements.Overhead(args.Length > 1 ? int.Parse(args[1]) : 60);
    return;
}
if (args.Length > 0 && args[0] == "--ratios")
{
    RatioComparison.Run(
        args.Length > 1 ? int.Parse(args[1]) : 150,
        args.Length > 2 ? double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : null
    );
    return;
}
if (args.Length > 0 && args[0] == "--sample")
{
    SamplingSpeed.Run();
    return;
}
if (args.Length > 0 && args[0] == "--data-parallel")
{
    TrainerMeasurements.DataParallel(args.Length > 1 ? int.Parse(args[1]) : 40);
    return;
}
if (args.Length > 0 && args[0] == "--study")
{
    Study.Run(args.Skip(1).ToList());
    return;
}
if (args.Length > 0 && args[0] == "--noise-cost")
{
    NoiseCost.Run(args.Length > 1 ? int.Parse(args[1]) : 60);
    return;
}
if (args.Length > 0 && args[0] == "--sweep")
{
    Sweep.Run(args.Skip(1).ToList());
    return;
}
if (args.Length > 0 && args[0] == "--bases")
{
    Bases.Run(args.Skip(1).ToList());
    return;
}

if (args.Length > 0 && args[0] == "--adam-mini-horizon")
{
    Study.AdamMiniHorizon(args.Length > 1 ? int.Parse(args[1]) : 400);
    return;
}
if (args.Length > 0 && args[0] == "--prepare-scale")
{
    PrepareScale.Run(
        args.Length > 1 ? args[1] : "/tmp/blr-prepare-scale",
        args.Length > 2 ? double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 8.5
    );
    return;
}
if (args.Length > 0 && args[0] == "--memory")
{
    TrainerMeasurements.Memory(args.Length > 1 ? int.Parse(args[1]) : 1000);
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(OptimizerStepBenchmarks).Assembly).Run(args);
