using System.Globalization;
using BlockwiseLR.Core;
using BlockwiseLR.Reporting;
using BlockwiseLR.Training;

namespace BlockwiseLR.Benchmarks;

/// <summary>
/// `--noise-cost [steps]`: what the default noise-aware auto ratios cost per step against auto without the noise
/// correction, on the demo's shape (gpt2-tiny, 8 x 128 tokens, the built-in corpus with gutenberg-bpe4k). With one
/// micro-batch the measured step runs its batch as two halves and reads the first half's squared norms per block.
/// Each variant trains the same steps in 8 rounds, interleaved (noise off, on, off, on, ...), and the steady-state
/// milliseconds per step (the trainer's: the first quarter of a run left out) are compared median to median and
/// best to best (on a shared VM the rounds vary by 10-20%, more than the effect).
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
        const int rounds = 8;
        for (var round = 0; round < rounds; round++)
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
                    // Every run trains its steps: each has its speed.
                    times[name].Add(result.MillisecondsPerStep!.Value);
                }
                finally
                {
                    Directory.Delete(run, true);
                }
            }
        Console.WriteLine(
            $"noise cost on the demo's shape (gpt2-tiny, 8 x 128 tokens, {steps} steps x {rounds} rounds, "
                + $"{Environment.ProcessorCount} cores):"
        );
        foreach (var (name, _) in variants)
            Console.WriteLine(
                string.Create(
                    CultureInfo.InvariantCulture,
                    $"  {name, -30} median {ResultFile.Median(times[name]), 6:F1}, best {times[name].Min(), 6:F1} ms/step (rounds: {string.Join(", ", times[name].Select(t => t.ToString("F1", CultureInfo.InvariantCulture)))})"
                )
            );
        string Cost(string with, string without) =>
            string.Create(
                CultureInfo.InvariantCulture,
                $"{ResultFile.Median(times[with]) / ResultFile.Median(times[without]) - 1:+0.0%;-0.0%} median to median, {times[with].Min() / times[without].Min() - 1:+0.0%;-0.0%} best to best"
            );
        Console.WriteLine(
            $"  noise-aware auto against auto without it: {Cost("auto, noise on (default)", "auto, noise off")}; "
                + $"the monitor at every step: {Cost("paper, --noise-scale-every 1", "paper, no monitor")}"
        );
    }
}
