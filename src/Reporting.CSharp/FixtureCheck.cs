using BlockwiseLR.Core;
using BlockwiseLR.Models;
using static TorchSharp.torch;

namespace BlockwiseLR.Reporting;

/// <summary>One fixture model's logits and loss on a device and precision, against the Hugging Face
/// transformers outputs stored beside it (expected.safetensors: input_ids, logits, loss).</summary>
public sealed record FixtureResult(string Fixture, Precision Precision, double MaxAbsDifference, double RelativeL2, double Loss, double ExpectedLoss, bool Passed);

/// <summary>The GPU device check's fixture section: fp32 max |difference| &lt;= 1e-4, TF32 &lt;= 5e-3, bf16-mixed
/// relative L2 &lt;= 1%.</summary>
public static class FixtureCheck
{
    public static IReadOnlyList<FixtureResult> Run(string fixturesDirectory, ComputeDevice device)
    {
        var on = device.Use();
        var results = new List<FixtureResult>();
        foreach (var fixture in new[] { "hf-gpt2-tiny", "hf-llama-tiny" })
        {
            var folder = Path.Combine(fixturesDirectory, fixture);
            var expected = SafetensorsHeader.LoadTensors(Path.Combine(folder, "expected.safetensors"));
            foreach (var precision in new[] { Precision.Fp32, Precision.Tf32, Precision.Bf16Mixed })
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                using var model = HfFormat.Load(folder, on);
                model.eval();
                model.Precision = precision;
                Precisions.Apply(precision, on);
                var ids = expected["input_ids"].to(on);
                var logits = model.forward(ids).to(ScalarType.Float32).cpu();
                var reference = expected["logits"];
                var maxDiff = (logits - reference).abs().max().item<float>();
                var relative = ((logits - reference).norm() / reference.norm()).item<float>();
                var loss = LanguageModel.Loss(logits[.., ..^1], expected["input_ids"][.., 1..]).item<float>();
                var passed = precision switch
                {
                    Precision.Fp32 => maxDiff <= 1e-4,
                    Precision.Tf32 => maxDiff <= 5e-3,
                    _ => relative <= 0.01,
                };
                results.Add(new FixtureResult(fixture, precision, maxDiff, relative, loss, expected["loss"].item<float>(), passed));
            }
            foreach (var t in expected.Values) t.Dispose();
        }
        Precisions.Apply(Precision.Fp32, on);
        return results;
    }
}
