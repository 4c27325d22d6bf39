using System.Globalization;
using BlockwiseLR.Core;
using BlockwiseLR.Reporting;
using BlockwiseLR.Training;

namespace BlockwiseLR.Benchmarks;

/// <summary>
/// `--noise-cost [steps]`: what the default noise-aware auto ratios cost per step against auto without the noise
/// correction, on the demo's shape (gpt2-tiny, 8 x 128 tokens, the built-in corpus with gutenberg-bpe4k). With one
/// micro-batch the measured step runs its batch as two halves and reads the first half's squared norms per block.
/// Each variant trains the same steps three times, interleaved (noise off, on, off, on, ...), and the steady-state
/// milliseconds per step (the trainer's: the first quarter of a run left out) are compared median to median.
/// Also the noise-scale monitor alone (`--noise-scale-every 1`, fixed paper ratios) against none.
/// </summary>
static class NoiseCost
{
    public static void Run(int steps)
    {
        var data = Study.Data("gutenberg");
        var demo = Comparison.DemoOptions("/tmp/blr-noise-cost", quick: false);
        PretrainOptions Variant(BlockRatios ratios, int noiseEvery) =>
            demo with
            {
                Data = new() { Path = data },
                Optimizer = demo.Optimizer with { Kind = OptimizerKind.BlockwiseAdamW, Ratios = ratios },
                Training = demo.Training with { Steps = steps },
                Evaluation = new() { Every = 0, Windows = 1 },
                Debug = new() { NoiseScaleEvery = noiseEvery },
            };
        var variants = new (string Name, PretrainOptions Options)[]
        {
            ("auto, noise off", Variant(BlockRatios.Auto(new AutoRatioSettings { Noise = false }), 0)),
            ("auto, noise on (default)", Variant(BlockRatios.Auto(), 0)),
            ("paper, no monitor", Variant(BlockRatios.Paper, 0)),
            ("paper, --noise-scale-every 1", Variant(BlockRatios.Paper, 1)),
        };
        var times = variants.ToDictionary(v => v.Name, _ => new List<double>());
        for (var round = 0; round < 3; round++)
            foreach (var (name, options) in variants)
            {
                var run = Directory.CreateTempSubdirectory("blr-noise-cost-").FullName;
                try
                {
                    var result = Pretrainer.Run(
                        options with
                        {
                            Run = new() { Out = run, Overwrite = true },
                        }
                    );
                    times[name].Add(result.MillisecondsPerStep);
                }
                finally
                {
                    Directory.Delete(run, true);
                }
            }
        static double Median(List<double> xs) => xs.Order().ElementAt(xs.Count / 2);
        Console.WriteLine(
            $"noise cost on the demo's shape (gpt2-tiny, 8 x 128 tokens, {steps} steps x 3 rounds, "
                + $"{Environment.ProcessorCount} cores):"
        );
        foreach (var (name, _) in variants)
            Console.WriteLine(
                string.Create(
                    CultureInfo.InvariantCulture,
                    $"  {name, -30} {Median(times[name]), 7:F1} ms/step (rounds: {string.Join(", ", times[name].Select(t => t.ToString("F1", CultureInfo.InvariantCulture)))})"
                )
            );
        var (off, on) = (Median(times["auto, noise off"]), Median(times["auto, noise on (default)"]));
        var (none, monitor) = (Median(times["paper, no monitor"]), Median(times["paper, --noise-scale-every 1"]));
        Console.WriteLine(
            string.Create(
                CultureInfo.InvariantCulture,
                $"  noise-aware auto costs {on / off - 1:+0.0%;-0.0%} per step against auto without it; the monitor at every step {monitor / none - 1:+0.0%;-0.0%}"
            )
        );
    }
}
