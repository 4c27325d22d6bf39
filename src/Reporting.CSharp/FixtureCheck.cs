using BlockwiseLR.Core;
using BlockwiseLR.Models;
using BlockwiseLR.Optim;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Reporting;

/// <summary>One fixture model's logits and loss on a device and precision, against the Hugging Face
/// transformers outputs stored beside it (expected.safetensors: input_ids, logits, loss).</summary>
public sealed record FixtureResult(
    string Fixture,
    Precision Precision,
    double MaxAbsDifference,
    double RelativeL2,
    double Loss,
    double ExpectedLoss,
    bool Passed
);

/// <summary>One optimizer variant's six golden steps (optim-golden.safetensors, from PyTorch's AdamW and the official
/// Adam-mini 1.1.1; optim-golden-lion-muon.safetensors, from the official lion.py and Moonlight's Muon) replayed on a
/// device: the largest |parameter - golden| over all steps and parameters.</summary>
public sealed record TrajectoryResult(
    string Variant,
    bool Reference,
    double MaxAbsDifference,
    double Bound,
    bool Passed
);

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
                results.Add(
                    new FixtureResult(
                        fixture,
                        precision,
                        maxDiff,
                        relative,
                        loss,
                        expected["loss"].item<float>(),
                        passed
                    )
                );
            }
            foreach (var t in expected.Values)
                t.Dispose();
        }
        Precisions.Apply(Precision.Fp32, on);
        return results;
    }

    /// <summary>The golden file's variants, in its order.</summary>
    public static IReadOnlyList<string> Variants { get; } =
    ["adamw", "blockwise_adamw", "adam_mini", "blockwise_adam_mini"];

    static readonly Dictionary<Block, string> BlockwiseGroups = new()
    {
        [Block.Embedding] = "emb",
        [Block.OutputHead] = "head",
        [Block.AttentionQK] = "qk",
        [Block.AttentionVO] = "vo",
        [Block.FeedForward] = "ffn",
        [Block.Norm] = "norm",
    };

    /// <summary>The variants of optim-golden-lion-muon.safetensors (the official lion.py and Moonlight's Muon), in
    /// its order.</summary>
    public static IReadOnlyList<string> LionMuonVariants { get; } =
    ["lion", "blockwise_lion", "muon", "blockwise_muon", "muon_bf16"];

    /// <summary>The device check's bound for a variant: 1e-5, and for muon_bf16 on CUDA 2e-4: on a CPU it matches the
    /// reference's bf16 run to 1e-8 (the same operations round alike), but cuBLAS's bf16 matmuls accumulate in another
    /// order, and bf16 runs that round differently part by up to the 6.7e-5 the reference's bf16 and fp32 runs
    /// differ by.</summary>
    public static double BoundOf(string variant, ComputeDevice device) =>
        variant == "muon_bf16" && device.IsCuda ? 2e-4 : 1e-5;

    /// <summary>The golden file a variant lives in.</summary>
    public static string GoldenFileOf(string variant) =>
        LionMuonVariants.Contains(variant) ? "optim-golden-lion-muon.safetensors" : "optim-golden.safetensors";

    /// <summary>Replays one variant: sets each step's golden gradients, steps with the golden LRs, and compares
    /// every parameter with the golden one after each step. AdamW and Adam-mini: betas 0.9/0.95, eps 1e-8, weight
    /// decay 0.1, Adam-mini with dim 64, 4 heads, 2 KV heads and its own decay rule by name; Lion: betas 0.95/0.98,
    /// weight decay 1.0; Muon: AdamW's numbers for its AdamW part, Newton-Schulz in float32 (bfloat16 for muon_bf16).
    /// <paramref name="reference"/> runs the plain per-parameter optimizer instead of the flat one (Adam family
    /// only); <paramref name="against"/> compares with another variant's golden parameters (e.g. a bf16 run against
    /// the float32 golden).</summary>
    public static TrajectoryResult Trajectory(
        string goldenFile,
        string variant,
        ComputeDevice device,
        bool reference = false,
        double bound = 1e-5,
        string? against = null
    )
    {
        var on = device.Use();
        using var scope = NewDisposeScope();
        var golden = SafetensorsHeader.LoadTensors(goldenFile);
        var names = golden.Keys.Where(k => k.StartsWith("init/")).Select(k => k[5..]).Order().ToList();
        var parameters = names.Select(n => (n, new Parameter(golden["init/" + n].to(on)))).ToList();
        var isMini = variant.Contains("mini");
        var kind =
            isMini ? OptimizerKind.AdamMini
            : variant.Contains("lion") ? OptimizerKind.Lion
            : variant.Contains("muon") ? OptimizerKind.Muon
            : OptimizerKind.AdamW;
        var settings = AdamSettings.Of(OptimizerKinds.Family(kind)) with
        {
            Eps = 1e-8,
            DecayPolicy = isMini ? WeightDecayPolicy.AdamMiniNames : WeightDecayPolicy.AllParameters,
            NewtonSchulz = variant.EndsWith("bf16") ? NewtonSchulzPrecision.BFloat16 : NewtonSchulzPrecision.Float32,
        };
        using var optimizer = BlockOptimizer.Create(
            kind,
            parameters,
            settings,
            new AttentionShape(64, 4, 2),
            reference: reference
        );
        var worst = 0.0;
        for (var t = 0; t < 6; t++)
        {
            foreach (var (name, p) in parameters)
            {
                var grad = golden[$"grad/{t}/{name}"].to(on);
                if (p.grad is { } existing)
                    existing.copy_(grad); // a flat-buffer view
                else
                    p.grad = grad.clone();
            }
            var step = t;
            double GroupLr(string group) => golden[$"lr/{variant}/{step}/{group}"].item<double>();
            optimizer.Step(block =>
                variant switch
                {
                    "adamw" or "lion" => GroupLr("all"),
                    "blockwise_adamw" or "blockwise_lion" => GroupLr(BlockwiseGroups[block]),
                    // Muon's groups are the blocks in every variant (Muon matrices and AdamW parameters apart).
                    "muon" or "blockwise_muon" or "muon_bf16" => GroupLr(BlockwiseGroups[block]),
                    // Adam-mini's groups are single parameters; every parameter of a block has its block's LR.
                    _ => optimizer
                        .Parameters.Where(p => p.Block == block)
                        .Select(p => GroupLr(p.Name.ToLowerInvariant()))
                        .Distinct()
                        .Single(),
                }
            );
            foreach (var (name, p) in parameters)
                worst = Math.Max(
                    worst,
                    (p.cpu() - golden[$"after/{against ?? variant}/{t}/{name}"]).abs().max().item<float>()
                );
        }
        return new TrajectoryResult(variant, reference, worst, bound, worst <= bound);
    }
}
